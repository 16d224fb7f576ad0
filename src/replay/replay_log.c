#include "replay/replay_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include "replay/replay_exit_code.h"

#define MAGIC "COWRPLAY"
#define WBUF (1u << 20)
#define RBUF (1u << 16)
#define EVENT_HEAD 13           /* version 2: kind, u64 ordinal, u32 len */
#define LEN_VARINT_MAX 5         /* a payload length is at most 32 bits */
#define EVENT_HEAD_MAX (1 + REPLAY_VARINT_MAX + LEN_VARINT_MAX)     /* version 3: kind, step, len */
#define FILE_CHUNK (1u << 20)  /* reads of a disk image to hash: stays in cache, fewer syscalls than 64 KiB */
#define FILE_SEED 0x636f77

static const char *const kind_names[] = {
    [REPLAY_EV_CLOCK] = "clock", [REPLAY_EV_ENTROPY] = "entropy", [REPLAY_EV_CONSOLE] = "console input",
    [REPLAY_EV_NET] = "network frame", [REPLAY_EV_BLOCK] = "block completion", [REPLAY_EV_EXIT] = "exit",
    [REPLAY_EV_IRQ] = "interrupt", [REPLAY_EV_SNAPSHOT] = "snapshot", [REPLAY_EV_STATUS] = "exit status",
};

const char *replay_event_kind_name(unsigned kind)
{
    if (kind == REPLAY_EV_END) {
        return "end of log";
    }
    if (kind < sizeof(kind_names) / sizeof(kind_names[0]) && kind_names[kind]) {
        return kind_names[kind];
    }
    return "unknown";
}

uint64_t replay_hash(uint64_t seed, const void *data, size_t len)
{
    return XXH3_64bits_withSeed(data, len, seed);
}

uint64_t replay_hash_v2(uint64_t seed, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ull ^ (len * 0xff51afd7ed558ccdull);
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

replay_hash_fn *replay_hash_of(uint32_t version)
{
    return version >= 3 ? replay_hash : replay_hash_v2;
}

/* The header's and an event's check. */
static uint32_t check_of(uint32_t version, const void *p, size_t n)
{
    return version >= 3 ? (uint32_t)XXH3_64bits(p, n) : (uint32_t)crc32(0, p, (uInt)n);
}

static ssize_t read_retry(int fd, void *buf, size_t n)
{
    ssize_t k;
    while ((k = read(fd, buf, n)) < 0 && errno == EINTR) {
    }
    return k < 0 ? -errno : k;
}

/* Version 2 chained its byte-wise hash over each read of 64 KiB; version 3
 * streams XXH3 over large reads. */
static int hash_fd(int fd, uint32_t version, uint64_t *out)
{
    size_t chunk = version >= 3 ? FILE_CHUNK : RBUF;
    uint8_t *buf = malloc(chunk);
    XXH3_state_t *st = version >= 3 ? XXH3_createState() : NULL;
    if (!buf || (version >= 3 && !st)) {
        free(buf);
        XXH3_freeState(st);
        return -ENOMEM;
    }
    uint64_t h = FILE_SEED;
    if (st) {
        XXH3_64bits_reset_withSeed(st, FILE_SEED);
    }
    ssize_t n;
    while ((n = read_retry(fd, buf, chunk)) > 0) {
        if (st) {
            XXH3_64bits_update(st, buf, (size_t)n);
        } else {
            h = replay_hash_v2(h, buf, (size_t)n);
        }
    }
    *out = st ? XXH3_64bits_digest(st) : h;
    free(buf);
    XXH3_freeState(st);
    return n < 0 ? (int)n : 0;
}

int replay_hash_file(const char *path, uint32_t version, uint64_t *out, struct error *err)
{
    *out = 0;
    if (!path) {
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "replay: cannot open '%s'", path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int ret = hash_fd(fd, version, out);
    close(fd);
    if (ret == -ENOMEM) {
        return error_set(err, ret, "replay: out of memory");
    }
    return ret < 0 ? error_set_errno(err, ret, "replay: cannot read '%s'", path) : 0;
}

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

uint32_t replay_log_version_of(const char *path)
{
    uint8_t head[12];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, head, sizeof(head), 0);
    if (fd >= 0) {
        close(fd);
    }
    if (n != (ssize_t)sizeof(head) || memcmp(head, MAGIC, 8) != 0 || get_u32(head + 8) < 1 ||
        get_u32(head + 8) > REPLAY_LOG_VERSION) {
        return REPLAY_LOG_VERSION;
    }
    return get_u32(head + 8);
}

/* ---- writer ---- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0) {
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int flush(struct replay_writer *w, struct error *err)
{
    if (!w->failed && w->used) {
        w->failed = write_all(w->fd, w->buf, w->used);
    }
    w->used = 0;
    if (w->failed) {
        return error_set_errno(err, w->failed, "replay: cannot write the log");
    }
    return 0;
}

static int append(struct replay_writer *w, const void *data, size_t len, struct error *err)
{
    const uint8_t *p = data;
    while (len) {
        if (w->used == WBUF && flush(w, err) < 0) {
            return err ? err->code : -EIO;
        }
        size_t n = WBUF - w->used < len ? WBUF - w->used : len;
        memcpy(w->buf + w->used, p, n);
        w->used += n;
        w->bytes += n;
        p += n;
        len -= n;
    }
    return 0;
}

int replay_writer_begin(struct replay_writer *w, int fd, const struct replay_header *h, struct error *err)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    size_t name_len = strnlen(h->name, REPLAY_MAX_NAME + 1);
    if (name_len > REPLAY_MAX_NAME) {
        return error_set(err, -ENAMETOOLONG, "replay: the starting point's name is too long");
    }
    w->buf = malloc(WBUF);
    if (!w->buf) {
        return error_set(err, -ENOMEM, "replay: out of memory");
    }
    uint8_t head[8 + 4 + 4 + 24 + 2 + REPLAY_MAX_NAME + 4];
    memcpy(head, MAGIC, 8);
    put_u32(head + 8, REPLAY_LOG_VERSION);
    put_u32(head + 12, h->start);
    put_u64(head + 16, h->config_hash);
    put_u64(head + 24, h->kernel_hash);
    put_u64(head + 32, h->disk_hash);
    put_u16(head + 40, (uint16_t)name_len);
    memcpy(head + 42, h->name, name_len);
    put_u32(head + 42 + name_len, check_of(REPLAY_LOG_VERSION, head, 42 + name_len));
    return append(w, head, 46 + name_len, err);
}

int replay_writer_event(struct replay_writer *w, uint8_t kind, uint64_t ordinal, const void *data, uint32_t len,
                        struct error *err)
{
    if (len > REPLAY_MAX_PAYLOAD) {
        return error_set(err, -EFBIG, "replay: a %s event of %u bytes is too large", replay_event_kind_name(kind),
                         len);
    }
    if (ordinal < w->last_ordinal) {
        return error_set(err, -EINVAL, "replay: event at exit %llu after exit %llu", (unsigned long long)ordinal,
                         (unsigned long long)w->last_ordinal);
    }
    /* Built in place in the buffer, so its check runs once over contiguous
     * bytes and the payload is copied once. */
    if (kind == REPLAY_EV_EXIT && len != sizeof(struct replay_exit)) {
        return error_set(err, -EINVAL, "replay: an exit record of %u bytes", len);
    }
    bool exit = kind == REPLAY_EV_EXIT;
    size_t most = EVENT_HEAD_MAX + (exit ? REPLAY_EXIT_CODE_MAX : len) + 4;
    if (WBUF - w->used < most && flush(w, err) < 0) {
        return err ? err->code : -EIO;
    }
    uint8_t *p = w->buf + w->used, code[REPLAY_EXIT_CODE_MAX];
    size_t n = 1;
    p[0] = kind;
    n += replay_varint_put(p + n, ordinal - w->last_ordinal);
    if (exit) {
        struct replay_exit e;
        memcpy(&e, data, sizeof(e));
        len = (uint32_t)replay_exit_encode(&e, &w->last_rip, code);
        data = code;
    }
    n += replay_varint_put(p + n, len);
    if (len) {
        memcpy(p + n, data, len);
    }
    n += len;
    put_u32(p + n, check_of(REPLAY_LOG_VERSION, p, n));
    n += 4;
    w->used += n;
    w->bytes += n;
    w->last_ordinal = ordinal;
    w->events++;
    return 0;
}

int replay_writer_finish(struct replay_writer *w, struct error *err)
{
    uint8_t count[8];
    put_u64(count, w->events);
    int ret = replay_writer_event(w, REPLAY_EV_END, w->last_ordinal, count, 8, err);
    if (ret == 0) {
        ret = flush(w, err);
    }
    replay_writer_free(w);
    return ret;
}

void replay_writer_free(struct replay_writer *w)
{
    free(w->buf);
    w->buf = NULL;
}

/* ---- reader ---- */

/* Exactly n bytes, or an error naming what was cut short. */
static int take(struct replay_reader *r, void *out, size_t n, const char *what, struct error *err)
{
    uint8_t *o = out;
    while (n) {
        if (r->pos == r->have) {
            if (r->eof) {
                return error_set(err, -EPROTO, "replay log truncated at byte %llu (in %s)",
                                 (unsigned long long)r->offset, what);
            }
            ssize_t k = read(r->fd, r->buf, RBUF);
            if (k < 0 && errno == EINTR) {
                continue;
            }
            if (k < 0) {
                return error_set_errno(err, -errno, "replay: cannot read the log");
            }
            r->have = (size_t)k;
            r->pos = 0;
            r->eof = k == 0;
            continue;
        }
        size_t m = r->have - r->pos < n ? r->have - r->pos : n;
        memcpy(o, r->buf + r->pos, m);
        r->pos += m;
        r->offset += m;
        o += m;
        n -= m;
    }
    return 0;
}

int replay_reader_begin(struct replay_reader *r, int fd, struct replay_header *h, struct error *err)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->buf = malloc(RBUF);
    r->event = malloc(EVENT_HEAD_MAX + REPLAY_MAX_PAYLOAD);
    if (!r->buf || !r->event) {
        return error_set(err, -ENOMEM, "replay: out of memory");
    }
    uint8_t head[42 + REPLAY_MAX_NAME + 4];
    int ret = take(r, head, 42, "the header", err);
    if (ret < 0) {
        return ret;
    }
    if (memcmp(head, MAGIC, 8) != 0) {
        return error_set(err, -EPROTO, "not a cowvisor replay log (bad magic)");
    }
    memset(h, 0, sizeof(*h));
    h->version = get_u32(head + 8);
    if (h->version < 1 || h->version > REPLAY_LOG_VERSION) {
        return error_set(err, -EPROTO, "replay log version %u is not supported (this cowvisor reads 1 to %u)",
                         h->version, REPLAY_LOG_VERSION);
    }
    r->version = h->version;
    h->start = get_u32(head + 12);
    h->config_hash = get_u64(head + 16);
    h->kernel_hash = get_u64(head + 24);
    h->disk_hash = get_u64(head + 32);
    uint16_t n = get_u16(head + 40);
    if (n > REPLAY_MAX_NAME) {
        return error_set(err, -EPROTO, "replay log header: a name of %u bytes is too long", n);
    }
    if ((ret = take(r, head + 42, (size_t)n + 4, "the header", err)) < 0) {
        return ret;
    }
    if (get_u32(head + 42 + n) != check_of(h->version, head, 42u + n)) {
        return error_set(err, -EPROTO, "replay log header is corrupt (checksum mismatch)");
    }
    if (h->start > REPLAY_START_LOADVM) {
        return error_set(err, -EPROTO, "replay log header: unknown starting point %u", h->start);
    }
    memcpy(h->name, head + 42, n);
    h->name[n] = 0;
    if (memchr(h->name, 0, n)) {
        return error_set(err, -EPROTO, "replay log header: the name contains a NUL byte");
    }
    return 0;
}

static int corrupt_size(uint64_t at, unsigned kind, uint32_t len, struct error *err)
{
    return error_set(err, -EPROTO, "replay log corrupt at byte %llu: a %s event of %u bytes", (unsigned long long)at,
                     replay_event_kind_name(kind), len);
}

static int checksum_mismatch(uint64_t at, struct error *err)
{
    return error_set(err, -EPROTO, "replay log corrupt at byte %llu (event checksum mismatch)", (unsigned long long)at);
}

/* Version 2's event at byte at: fixed head, payload as stored. */
static int next_v2(struct replay_reader *r, struct replay_event *ev, uint64_t at, struct error *err)
{
    uint8_t *head = r->event, tail[4];
    int ret = take(r, head, EVENT_HEAD, "an event", err);
    if (ret < 0) {
        return ret;
    }
    ev->kind = head[0];
    ev->ordinal = get_u64(head + 1);
    ev->len = get_u32(head + 9);
    ev->data = r->event + EVENT_HEAD;
    if (ev->len > REPLAY_MAX_PAYLOAD) {
        return error_set(err, -EPROTO, "replay log corrupt at byte %llu: an event of %u bytes",
                         (unsigned long long)at, ev->len);
    }
    if ((ret = take(r, ev->data, ev->len, "an event", err)) < 0 || (ret = take(r, tail, 4, "an event", err)) < 0) {
        return ret;
    }
    return get_u32(tail) == check_of(r->version, r->event, EVENT_HEAD + ev->len) ? 0 : checksum_mismatch(at, err);
}

/* A varint of at most max bytes of the event being read, kept in r->event
 * at *n for its check. Longer (padded) ones are refused: they would run past
 * the event buffer, whose head has room for canonical numbers only. */
static int take_varint(struct replay_reader *r, size_t *n, uint64_t *v, unsigned max, uint64_t at,
                       struct error *err)
{
    uint64_t x = 0;
    for (unsigned i = 0, shift = 0; i < max; i++, shift += 7) {
        uint8_t *b = r->event + *n;
        if (r->pos < r->have) {         /* most bytes: no call */
            *b = r->buf[r->pos++];
            r->offset++;
        } else {
            int ret = take(r, b, 1, "an event", err);
            if (ret < 0) {
                return ret;
            }
        }
        (*n)++;
        if (shift == 63 && *b > 1) {
            break;                      /* bits past the 64th */
        }
        x |= (uint64_t)(*b & 0x7f) << shift;
        if (!(*b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return error_set(err, -EPROTO, "replay log corrupt at byte %llu: a number longer than %u bytes or of "
                     "more than 64 bits", (unsigned long long)at, max);
}

/* Version 3's event at byte at: the ordinal as a step, an exit's record coded. */
static int next_v3(struct replay_reader *r, struct replay_event *ev, uint64_t at, struct error *err)
{
    uint64_t step = 0, len = 0;
    uint8_t tail[4];
    size_t n = 1;
    int ret = take(r, r->event, 1, "an event", err);
    if (ret < 0 || (ret = take_varint(r, &n, &step, REPLAY_VARINT_MAX, at, err)) < 0 ||
        (ret = take_varint(r, &n, &len, LEN_VARINT_MAX, at, err)) < 0) {
        return ret;
    }
    if (len > REPLAY_MAX_PAYLOAD) {
        return error_set(err, -EPROTO, "replay log corrupt at byte %llu: an event of %llu bytes",
                         (unsigned long long)at, (unsigned long long)len);
    }
    ev->kind = r->event[0];
    ev->ordinal = r->last_ordinal + step;
    ev->len = (uint32_t)len;
    ev->data = r->event + n;
    if ((ret = take(r, ev->data, ev->len, "an event", err)) < 0 || (ret = take(r, tail, 4, "an event", err)) < 0) {
        return ret;
    }
    if (get_u32(tail) != check_of(r->version, r->event, n + ev->len)) {
        return checksum_mismatch(at, err);
    }
    if (ev->kind == REPLAY_EV_EXIT) {
        if (replay_exit_decode(ev->data, ev->len, &r->last_rip, &r->exit) < 0) {
            return corrupt_size(at, ev->kind, ev->len, err);
        }
        ev->data = (uint8_t *)&r->exit;
        ev->len = sizeof(r->exit);
    }
    return 0;
}

int replay_reader_next(struct replay_reader *r, struct replay_event *ev, struct error *err)
{
    if (r->ended) {
        return 0;
    }
    uint64_t at = r->offset;
    int ret = r->version >= 3 ? next_v3(r, ev, at, err) : next_v2(r, ev, at, err);
    if (ret < 0) {
        return ret;
    }
    if (ev->ordinal < r->last_ordinal) {
        return error_set(err, -EPROTO, "replay log corrupt at byte %llu: exit %llu after exit %llu",
                         (unsigned long long)at, (unsigned long long)ev->ordinal,
                         (unsigned long long)r->last_ordinal);
    }
    static const uint32_t fixed[] = {
        [REPLAY_EV_CLOCK] = 8, [REPLAY_EV_BLOCK] = sizeof(struct replay_block),
        [REPLAY_EV_EXIT] = sizeof(struct replay_exit), [REPLAY_EV_IRQ] = 4,
    };
    switch (ev->kind) {
    case REPLAY_EV_ENTROPY: case REPLAY_EV_CONSOLE: case REPLAY_EV_NET:
        break;
    case REPLAY_EV_SNAPSHOT: case REPLAY_EV_STATUS:
        if (r->version < 2) {
            return error_set(err, -EPROTO, "replay log corrupt at byte %llu: a %s event in a version 1 log",
                             (unsigned long long)at, replay_event_kind_name(ev->kind));
        }
        if (ev->len < 8 - 4 * (ev->kind == REPLAY_EV_STATUS) || ev->len > 8 + REPLAY_MAX_NAME) {
            return corrupt_size(at, ev->kind, ev->len, err);
        }
        break;
    case REPLAY_EV_CLOCK: case REPLAY_EV_BLOCK: case REPLAY_EV_EXIT: case REPLAY_EV_IRQ:
        if (ev->len != fixed[ev->kind]) {
            return corrupt_size(at, ev->kind, ev->len, err);
        }
        break;
    case REPLAY_EV_END: {
        uint8_t extra;
        if (ev->len != 8 || get_u64(ev->data) != r->events) {
            return error_set(err, -EPROTO, "replay log corrupt at byte %llu: the end record does not count %llu events",
                             (unsigned long long)at, (unsigned long long)r->events);
        }
        if (take(r, &extra, 1, "", NULL) == 0) {
            return error_set(err, -EPROTO, "replay log has bytes after its end record (at byte %llu)",
                             (unsigned long long)(r->offset - 1));
        }
        r->ended = true;
        return 0;
    }
    default:
        return error_set(err, -EPROTO, "replay log corrupt at byte %llu: unknown event kind %u",
                         (unsigned long long)at, ev->kind);
    }
    r->last_ordinal = ev->ordinal;
    r->events++;
    return 1;
}

void replay_reader_free(struct replay_reader *r)
{
    free(r->buf);
    free(r->event);
    r->buf = r->event = NULL;
}
