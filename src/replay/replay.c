#include "replay/replay.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/host_input.h"

#define MAX_BLOCK_DEVICES 64

struct replay {
    enum replay_mode mode;
    pthread_mutex_t lock;
    int fd;
    uint64_t ordinal;
    uint64_t events;
    struct replay_writer w;
    struct replay_reader r;
    struct replay_event next;
    uint64_t next_index;            /* next's place among the log's events */
    int next_state;                 /* 1: next holds an event; 0: the end; <0: a log error */
    struct { uint64_t index, ordinal, id; } passed;     /* the last snapshot event read */
    int failed;                     /* the first divergence or error, in fail */
    struct error fail;
    const void *blockdev[MAX_BLOCK_DEVICES];
    int nblockdev;
};

static const uint8_t kind_of[] = {
    [HOST_INPUT_CLOCK] = REPLAY_EV_CLOCK, [HOST_INPUT_ENTROPY] = REPLAY_EV_ENTROPY,
    [HOST_INPUT_CONSOLE] = REPLAY_EV_CONSOLE, [HOST_INPUT_NET] = REPLAY_EV_NET, [HOST_INPUT_BLOCK] = REPLAY_EV_BLOCK,
};

/* Called with the lock held. The first failure stays. */
static void failv(struct replay *rp, int code, const char *fmt, va_list ap)
{
    if (rp->failed) {
        return;
    }
    char msg[sizeof(rp->fail.msg)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    error_set(&rp->fail, code, "%s", msg);
    rp->failed = code;
}

static void __attribute__((format(printf, 3, 4))) failf(struct replay *rp, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(rp, code, fmt, ap);
    va_end(ap);
}

static uint32_t block_device_id(struct replay *rp, const void *dev)
{
    for (int i = 0; i < rp->nblockdev; i++) {
        if (rp->blockdev[i] == dev) {
            return (uint32_t)i;
        }
    }
    if (rp->nblockdev == MAX_BLOCK_DEVICES) {
        return MAX_BLOCK_DEVICES;
    }
    rp->blockdev[rp->nblockdev] = dev;
    return (uint32_t)rp->nblockdev++;
}

static struct replay *create(enum replay_mode mode, int fd)
{
    struct replay *rp = calloc(1, sizeof(*rp));
    if (!rp) {
        return NULL;
    }
    rp->mode = mode;
    rp->fd = fd;
    pthread_mutex_init(&rp->lock, NULL);
    return rp;
}

static void destroy(struct replay *rp)
{
    pthread_mutex_destroy(&rp->lock);
    if (rp->fd >= 0) {
        close(rp->fd);
    }
    free(rp);
}

/* ---- record ---- */

static void record_input(void *opaque, enum host_input_source src, const void *data, size_t len)
{
    struct replay *rp = opaque;
    struct replay_block b;
    pthread_mutex_lock(&rp->lock);
    if (src == HOST_INPUT_BLOCK) {
        const struct host_block_completion *c = data;
        b = (struct replay_block){ block_device_id(rp, c->device), c->head, c->len };
        data = &b;
        len = sizeof(b);
    }
    struct error err = { 0 };
    if (rp->failed || (size_t)src >= sizeof(kind_of)) {
        /* nothing more is logged after a failure */
    } else if (replay_writer_event(&rp->w, kind_of[src], rp->ordinal, data, (uint32_t)len, &err) < 0) {
        failf(rp, err.code, "%s", err.msg);
    } else {
        rp->events++;
    }
    pthread_mutex_unlock(&rp->lock);
}

int replay_record_begin(struct replay **out, int fd, const struct replay_header *h, struct error *err)
{
    struct replay *rp = create(REPLAY_RECORD, fd);
    if (!rp) {
        close(fd);
        return error_set(err, -ENOMEM, "replay: out of memory");
    }
    int ret = replay_writer_begin(&rp->w, fd, h, err);
    if (ret < 0) {
        replay_writer_free(&rp->w);
        destroy(rp);
        return ret;
    }
    host_input_set_observer(record_input, rp);
    *out = rp;
    return 0;
}

/* ---- replay ---- */

static uint64_t payload_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

/* Lock held. Snapshot events are not replayed: they say where time travel
 * may start (replay_skip_to_snapshot checks it passed the right one). */
static void load_next(struct replay *rp)
{
    struct error err = { 0 };
    for (;;) {
        rp->next_state = replay_reader_next(&rp->r, &rp->next, &err);
        if (rp->next_state != 1 || rp->next.kind != REPLAY_EV_SNAPSHOT) {
            break;
        }
        rp->passed.index = rp->r.events;
        rp->passed.ordinal = rp->next.ordinal;
        rp->passed.id = payload_u64(rp->next.data);
    }
    rp->next_index = rp->r.events;
    if (rp->next_state < 0) {
        failf(rp, rp->next_state, "%s", err.msg);
    }
}

/* Lock held: is the next event kind at the current ordinal? */
static bool next_is(struct replay *rp, uint8_t kind)
{
    return !rp->failed && rp->next_state == 1 && rp->next.kind == kind && rp->next.ordinal == rp->ordinal;
}

/* Lock held: nothing is left but how the run ended. */
static bool log_used_up(struct replay *rp)
{
    return !rp->failed && (rp->next_state == 0 || (rp->next_state == 1 && rp->next.kind == REPLAY_EV_STATUS));
}

/* Lock held: what the log has next, for a divergence message. */
static void describe_next(struct replay *rp, char *buf, size_t size)
{
    if (rp->next_state == 1) {
        snprintf(buf, size, "%s (%u bytes) at exit %" PRIu64, replay_event_kind_name(rp->next.kind), rp->next.len,
                 rp->next.ordinal);
    } else {
        snprintf(buf, size, "the end of the log");
    }
}

/* Lock held: the device asks for a kind the log does not have here. */
static void diverge_input(struct replay *rp, uint8_t kind, size_t len)
{
    char expected[160];
    describe_next(rp, expected, sizeof(expected));
    failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": expected %s, actual %s (%zu bytes)", rp->ordinal,
          expected, replay_event_kind_name(kind), len);
}

static ssize_t feed_input(void *opaque, enum host_input_source src, void *buf, size_t len)
{
    struct replay *rp = opaque;
    ssize_t ret = -EIO;
    if ((size_t)src >= sizeof(kind_of)) {
        return -EINVAL;
    }
    uint8_t kind = kind_of[src];
    pthread_mutex_lock(&rp->lock);
    if (rp->failed) {
        goto out;
    }
    if (log_used_up(rp) && src != HOST_INPUT_CONSOLE && src != HOST_INPUT_NET) {
        /* The recorded run stopped here (a signal, a quit), before this
         * exit: the vCPU stops at it, so the guest never sees the value. */
        if (src != HOST_INPUT_BLOCK) {
            memset(buf, 0, len);
        }
        ret = src == HOST_INPUT_BLOCK ? 0 : (ssize_t)len;
        goto out;
    }
    if (!next_is(rp, kind)) {
        if (src == HOST_INPUT_CONSOLE || src == HOST_INPUT_NET) {
            ret = -EAGAIN;          /* polling: nothing arrived at this exit */
        } else {
            diverge_input(rp, kind, len);
        }
        goto out;
    }
    if (src == HOST_INPUT_BLOCK) {
        const struct host_block_completion *c = buf;
        struct replay_block want, got = { block_device_id(rp, c->device), c->head, c->len };
        memcpy(&want, rp->next.data, sizeof(want));
        if (memcmp(&want, &got, sizeof(want)) != 0) {
            failf(rp, -EPROTO,
                  "replay diverged at exit %" PRIu64 ": expected block completion of device %u head %u len %u, "
                  "actual device %u head %u len %u", rp->ordinal, want.device, want.head, want.len, got.device,
                  got.head, got.len);
            goto out;
        }
        ret = 0;
    } else {
        if (rp->next.len > len || (src == HOST_INPUT_CLOCK && rp->next.len != len)) {
            failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": expected %s of %u bytes, actual request of %zu",
                  rp->ordinal, replay_event_kind_name(kind), rp->next.len, len);
            goto out;
        }
        memcpy(buf, rp->next.data, rp->next.len);
        ret = rp->next.len;
    }
    rp->events++;
    load_next(rp);
out:
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

int replay_replay_begin(struct replay **out, int fd, const struct replay_header *expect, struct error *err)
{
    struct replay *rp = create(REPLAY_REPLAY, fd);
    if (!rp) {
        close(fd);
        return error_set(err, -ENOMEM, "replay: out of memory");
    }
    struct replay_header h;
    int ret = replay_reader_begin(&rp->r, fd, &h, err);
    if (ret == 0 && (h.start != expect->start || strcmp(h.name, expect->name) != 0)) {
        static const char *const starts[] = { "boot", "--restore", "--loadvm" };
        ret = error_set(err, -EINVAL, "the replay log starts from %s%s%s, this run from %s%s%s", starts[h.start],
                        h.name[0] ? " " : "", h.name, starts[expect->start < 3 ? expect->start : 0],
                        expect->name[0] ? " " : "", expect->name);
    } else if (ret == 0 && h.config_hash != expect->config_hash) {
        ret = error_set(err, -EINVAL, "the replay log was recorded with another configuration "
                        "(hash %016" PRIx64 ", this one %016" PRIx64 ")", h.config_hash, expect->config_hash);
    } else if (ret == 0 && h.kernel_hash != expect->kernel_hash) {
        ret = error_set(err, -EINVAL, "the replay log was recorded with another kernel or firmware "
                        "(hash %016" PRIx64 ", this one %016" PRIx64 ")", h.kernel_hash, expect->kernel_hash);
    } else if (ret == 0 && h.disk_hash != expect->disk_hash) {
        ret = error_set(err, -EINVAL, "the replay log was recorded with other disk contents "
                        "(hash %016" PRIx64 ", these %016" PRIx64 ")", h.disk_hash, expect->disk_hash);
    }
    if (ret < 0) {
        replay_reader_free(&rp->r);
        destroy(rp);
        return ret;
    }
    load_next(rp);
    if (rp->failed) {
        ret = error_set(err, rp->failed, "%s", rp->fail.msg);
        replay_reader_free(&rp->r);
        destroy(rp);
        return ret;
    }
    host_input_set_feeder(feed_input, rp);
    *out = rp;
    return 0;
}

/* ---- both ---- */

enum replay_mode replay_mode(const struct replay *rp)
{
    return rp ? rp->mode : REPLAY_OFF;
}

uint64_t replay_ordinal(struct replay *rp)
{
    pthread_mutex_lock(&rp->lock);
    uint64_t n = rp->ordinal;
    pthread_mutex_unlock(&rp->lock);
    return n;
}

uint64_t replay_events(struct replay *rp)
{
    pthread_mutex_lock(&rp->lock);
    uint64_t n = rp->events;
    pthread_mutex_unlock(&rp->lock);
    return n;
}

/* Lock held. */
static void advance(struct replay *rp)
{
    if (rp->mode == REPLAY_REPLAY && !rp->failed && rp->next_state == 1 && rp->next.kind != REPLAY_EV_STATUS &&
        rp->next.ordinal <= rp->ordinal) {
        failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": expected %s (%u bytes), actual none",
              rp->ordinal, replay_event_kind_name(rp->next.kind), rp->next.len);
    }
    rp->ordinal++;
}

void replay_advance(struct replay *rp)
{
    pthread_mutex_lock(&rp->lock);
    advance(rp);
    pthread_mutex_unlock(&rp->lock);
}

static void format_exit(char *buf, size_t size, const struct replay_exit *e)
{
    snprintf(buf, size, "reason %u rip 0x%" PRIx64 " regs %016" PRIx64 " addr 0x%" PRIx64 " value 0x%" PRIx64
             " size %u", e->reason, e->rip, e->reg_hash, e->addr, e->value, e->size);
}

/* Lock held: record logs e, replay compares it. */
static void check_exit(struct replay *rp, const struct replay_exit *e)
{
    struct error werr = { 0 };
    if (rp->failed) {
        /* reported below */
    } else if (rp->mode == REPLAY_RECORD) {
        struct replay_exit x = *e;
        if (replay_writer_event(&rp->w, REPLAY_EV_EXIT, rp->ordinal, &x, sizeof(x), &werr) < 0) {
            failf(rp, werr.code, "%s", werr.msg);
        } else {
            rp->events++;
        }
    } else if (!next_is(rp, REPLAY_EV_EXIT)) {
        char expected[160], actual[200];
        describe_next(rp, expected, sizeof(expected));
        format_exit(actual, sizeof(actual), e);
        failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": expected %s, actual exit %s", rp->ordinal,
              expected, actual);
    } else {
        struct replay_exit want;
        memcpy(&want, rp->next.data, sizeof(want));
        if (memcmp(&want, e, sizeof(want)) != 0) {
            char expected[200], actual[200];
            format_exit(expected, sizeof(expected), &want);
            format_exit(actual, sizeof(actual), e);
            failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": expected %s, actual %s", rp->ordinal, expected,
                  actual);
        } else {
            rp->events++;
            load_next(rp);
        }
    }
}

int replay_exit(struct replay *rp, const struct replay_exit *e, struct error *err)
{
    pthread_mutex_lock(&rp->lock);
    check_exit(rp, e);
    int ret = rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : 0;
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

int replay_next_exit(struct replay *rp, const struct replay_exit *e, struct error *err)
{
    pthread_mutex_lock(&rp->lock);      /* once per exit: this is the hot path */
    advance(rp);
    check_exit(rp, e);
    int ret = rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : 0;
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

bool replay_pending(struct replay *rp, enum replay_event_kind kind)
{
    if (rp->mode != REPLAY_REPLAY) {
        return false;       /* the mode never changes: no lock */
    }
    pthread_mutex_lock(&rp->lock);
    bool yes = rp->mode == REPLAY_REPLAY && next_is(rp, (uint8_t)kind);
    pthread_mutex_unlock(&rp->lock);
    return yes;
}

bool replay_log_ended(struct replay *rp)
{
    if (rp->mode != REPLAY_REPLAY) {
        return false;
    }
    pthread_mutex_lock(&rp->lock);
    bool yes = rp->mode == REPLAY_REPLAY && log_used_up(rp);
    pthread_mutex_unlock(&rp->lock);
    return yes;
}

int replay_irq(struct replay *rp, uint32_t line, struct error *err)
{
    pthread_mutex_lock(&rp->lock);
    struct error werr = { 0 };
    uint8_t le[4] = { (uint8_t)line, (uint8_t)(line >> 8), (uint8_t)(line >> 16), (uint8_t)(line >> 24) };
    if (rp->failed) {
        /* reported below */
    } else if (rp->mode == REPLAY_RECORD) {
        if (replay_writer_event(&rp->w, REPLAY_EV_IRQ, rp->ordinal, le, 4, &werr) < 0) {
            failf(rp, werr.code, "%s", werr.msg);
        } else {
            rp->events++;
        }
    } else if (!next_is(rp, REPLAY_EV_IRQ) || memcmp(rp->next.data, le, 4) != 0) {
        char expected[160];
        describe_next(rp, expected, sizeof(expected));
        failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": expected %s, actual interrupt %u", rp->ordinal,
              expected, line);
    } else {
        rp->events++;
        load_next(rp);
    }
    int ret = rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : 0;
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

void replay_name_block_device(struct replay *rp, const void *device)
{
    pthread_mutex_lock(&rp->lock);
    block_device_id(rp, device);
    pthread_mutex_unlock(&rp->lock);
}

/* Record, lock held: an event the engine does not count as an input. */
static int note(struct replay *rp, uint8_t kind, const void *data, uint32_t len, struct error *err)
{
    struct error werr = { 0 };
    if (rp->mode != REPLAY_RECORD) {
        return error_set(err, -EINVAL, "replay: a %s is noted only while recording", replay_event_kind_name(kind));
    }
    if (!rp->failed && replay_writer_event(&rp->w, kind, rp->ordinal, data, len, &werr) < 0) {
        failf(rp, werr.code, "%s", werr.msg);
    }
    return rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : 0;
}

int replay_note_snapshot(struct replay *rp, uint64_t id, const char *name, struct error *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > REPLAY_MAX_NAME) {
        return error_set(err, -ENAMETOOLONG, "replay: a snapshot name of %zu bytes", n);
    }
    uint8_t buf[8 + REPLAY_MAX_NAME];
    for (int i = 0; i < 8; i++) {
        buf[i] = (uint8_t)(id >> (8 * i));
    }
    memcpy(buf + 8, name, n);
    pthread_mutex_lock(&rp->lock);
    int ret = note(rp, REPLAY_EV_SNAPSHOT, buf, (uint32_t)(8 + n), err);
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

int replay_find_snapshot(int fd, uint64_t before, struct replay_snapshot_ref *out, struct error *err)
{
    struct replay_reader r;
    struct replay_header h;
    struct replay_event ev;
    int found = 0;
    int ret = replay_reader_begin(&r, fd, &h, err);
    while (ret >= 0 && (ret = replay_reader_next(&r, &ev, err)) == 1 && ev.ordinal < before) {
        if (ev.kind != REPLAY_EV_SNAPSHOT) {
            continue;
        }
        size_t n = ev.len - 8;
        if (memchr(ev.data + 8, 0, n) || n == 0) {
            ret = error_set(err, -EPROTO, "replay log: the snapshot event at exit %llu has a bad name",
                            (unsigned long long)ev.ordinal);
            break;
        }
        out->ordinal = ev.ordinal;
        out->id = payload_u64(ev.data);
        out->index = r.events;
        memcpy(out->name, ev.data + 8, n);
        out->name[n] = 0;
        found = 1;
    }
    replay_reader_free(&r);
    return ret < 0 ? ret : found;
}

int replay_skip_to_snapshot(struct replay *rp, const struct replay_snapshot_ref *ref, struct error *err)
{
    pthread_mutex_lock(&rp->lock);
    int ret = 0;
    if (rp->mode != REPLAY_REPLAY || rp->ordinal != 0) {
        ret = error_set(err, -EINVAL, "replay: time travel starts a replay, before its first exit");
    }
    while (ret == 0 && !rp->failed && rp->next_state == 1 && rp->next_index < ref->index) {
        rp->events++;       /* the snapshot holds what these inputs did */
        load_next(rp);
    }
    if (ret == 0 && rp->failed) {
        ret = error_set(err, rp->failed, "%s", rp->fail.msg);
    } else if (ret == 0 && (rp->passed.index != ref->index || rp->passed.ordinal != ref->ordinal ||
                            rp->passed.id != ref->id)) {
        ret = error_set(err, -EPROTO, "replay log: no snapshot event at exit %llu where the log's index has one",
                        (unsigned long long)ref->ordinal);
    } else if (ret == 0) {
        rp->ordinal = ref->ordinal;
    }
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

void replay_fail(struct replay *rp, int code, const char *msg)
{
    pthread_mutex_lock(&rp->lock);
    failf(rp, code, "%s", msg);
    pthread_mutex_unlock(&rp->lock);
}

int replay_rewind(struct replay *rp, struct error *err)
{
    pthread_mutex_lock(&rp->lock);
    int ret = 0;
    struct replay_header h;
    if (rp->mode != REPLAY_REPLAY) {
        ret = error_set(err, -EINVAL, "replay: only a replay rewinds");
    } else if (lseek(rp->fd, 0, SEEK_SET) < 0) {
        ret = error_set_errno(err, -errno, "replay log: cannot read it again");
    }
    if (ret == 0) {
        replay_reader_free(&rp->r);
        ret = replay_reader_begin(&rp->r, rp->fd, &h, err);
    }
    if (ret == 0) {
        /* The log was checked against this machine when the replay began. */
        rp->ordinal = rp->events = 0;
        rp->passed.index = rp->passed.ordinal = rp->passed.id = 0;
        rp->failed = 0;
        memset(&rp->fail, 0, sizeof(rp->fail));
        load_next(rp);
        ret = rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : 0;
    } else if (rp->mode == REPLAY_REPLAY) {
        failf(rp, ret, "%s", err->msg);     /* no log to go on with */
    }
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

int replay_note_status(struct replay *rp, int status, const char *msg, struct error *err)
{
    uint8_t buf[4 + REPLAY_MAX_NAME];
    size_t n = status < 0 && msg ? strnlen(msg, REPLAY_MAX_NAME) : 0;
    for (int i = 0; i < 4; i++) {
        buf[i] = (uint8_t)((uint32_t)status >> (8 * i));
    }
    memcpy(buf + 4, msg ? msg : "", n);
    pthread_mutex_lock(&rp->lock);
    int ret = note(rp, REPLAY_EV_STATUS, buf, (uint32_t)(4 + n), err);
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

int replay_take_status(struct replay *rp, int *status, char *msg, size_t size)
{
    pthread_mutex_lock(&rp->lock);
    int found = rp->mode == REPLAY_REPLAY && !rp->failed && rp->next_state == 1 &&
                rp->next.kind == REPLAY_EV_STATUS;
    if (found) {
        const uint8_t *p = rp->next.data;
        *status = (int)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        size_t n = rp->next.len - 4 < size - 1 ? rp->next.len - 4 : size - 1;
        memcpy(msg, p + 4, n);
        msg[n] = 0;
        load_next(rp);
    }
    pthread_mutex_unlock(&rp->lock);
    return found;
}

int replay_status(struct replay *rp, struct error *err)
{
    pthread_mutex_lock(&rp->lock);
    int ret = rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : 0;
    pthread_mutex_unlock(&rp->lock);
    return ret;
}

int64_t replay_end(struct replay *rp, struct error *err)
{
    if (rp->mode == REPLAY_RECORD) {
        host_input_set_observer(NULL, NULL);
    } else {
        host_input_set_feeder(NULL, NULL);
    }
    pthread_mutex_lock(&rp->lock);
    int64_t ret;
    if (rp->mode == REPLAY_RECORD) {
        struct error werr = { 0 };
        if (replay_writer_finish(&rp->w, &werr) < 0) {
            failf(rp, werr.code, "%s", werr.msg);
        }
    } else {
        if (!rp->failed && rp->next_state == 1) {
            failf(rp, -EPROTO, "replay diverged at exit %" PRIu64 ": the run ended, the log expected %s (%u bytes) "
                  "at exit %" PRIu64, rp->ordinal, replay_event_kind_name(rp->next.kind), rp->next.len,
                  rp->next.ordinal);
        }
        replay_reader_free(&rp->r);
    }
    ret = rp->failed ? error_set(err, rp->failed, "%s", rp->fail.msg) : (int64_t)rp->events;
    pthread_mutex_unlock(&rp->lock);
    destroy(rp);
    return ret;
}
