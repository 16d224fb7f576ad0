/* A hostile migration stream against the destination's loader: a valid
 * stream from a bare machine (configuration, setup, page batches with data
 * and zero pages, the device state) is mutated with a fixed seed and fed
 * to migration_dest over a socket. Most mutations keep the sections'
 * checksums right (the loader parses a section's payload before its
 * checksum arrives, and a hostile source computes checksums anyway): flipped
 * bits, fields set to edge values (lengths, counts, page addresses past
 * RAM), payloads cut short or grown, section versions changed, sections
 * dropped, repeated or swapped; the rest flip raw bytes or cut the stream.
 * Each run must end (with an error naming what was wrong, or having loaded
 * a stream that is still valid), without a crash or a sanitizer report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "../machine/bare_machine.h"
#include "machine/machine_state.h"
#include "migration/migration.h"
#include "migration/migration_wire.h"
#include "util/bswap.h"

#define MEMORY (8ull << 20)
#define MUTATIONS 200      /* FUZZ_MUTATIONS and FUZZ_SEED for longer runs by hand */

static const struct machine_config config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

struct bytes {
    uint8_t *data;
    size_t len;
};

/* ---- the valid stream ---- */

static void fill(struct machine *m)
{
    uint8_t *p = guest_memory_ptr(&m->vm.mem, 0x100000, 16 * 4096);
    for (int i = 0; i < 16 * 4096; i++) {
        p[i] = (uint8_t)(i * 13 + 5);
    }
    uart_write(&m->uart, 7, 1, 0x5a);
    cmos_rtc_write(&m->rtc, 0, 1, 0x40);
}

/* Pages 0x100000.. (data) and 0x120000.. (zero), in two batches. */
static void write_pages(struct machine *m, struct vmstate_writer *w)
{
    struct mig_batch *b = malloc(sizeof(*b));
    struct error err = { 0 };
    assert_non_null(b);
    for (uint64_t base = 0x100000; base <= 0x120000; base += 0x20000) {
        mig_batch_reset(b);
        for (int i = 0; i < 16; i++) {
            mig_batch_add(b, &m->vm.mem, base + (uint64_t)i * 4096);
        }
        assert_true(mig_batch_write(b, w, &err) > 0);
    }
    free(b);
}

static struct bytes valid_stream(struct machine *m)
{
    struct error err = { 0 };
    struct vmstate_writer w;
    int fd = memfd_create("stream", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(vmstate_writer_begin(&w, vmstate_pipe_io(&fd), &err), 0);
    assert_int_equal(machine_state_save_config(m, &w, &err), 0);
    assert_int_equal(mig_setup_write(&w, &m->vm.mem, 0, &err), 0);
    write_pages(m, &w);
    assert_int_equal(machine_state_save(m, &w, &err), 0);
    int64_t len = vmstate_writer_finish(&w, &err);
    assert_true(len > 0);
    vmstate_writer_free(&w);
    struct bytes s = { malloc((size_t)len), (size_t)len };
    assert_int_equal(pread(fd, s.data, s.len, 0), (ssize_t)len);
    close(fd);
    return s;
}

/* ---- sections, to mutate and write back with right checksums ---- */

struct section {
    char name[VMSTATE_NAME_LEN];
    uint32_t version;
    uint64_t len;           /* the length its header claims */
    uint8_t *payload;
    size_t size;            /* the bytes it really carries */
};

struct stream {
    struct section s[64];
    int n;
};

static void parse(const struct bytes *b, struct stream *st)
{
    size_t at = VMSTATE_HEADER_SIZE;
    st->n = 0;
    while (at < b->len) {
        assert_true(st->n < 64);
        struct section *s = &st->s[st->n++];
        memcpy(s->name, b->data + at, VMSTATE_NAME_LEN);
        s->version = ld_le32(b->data + at + 32);
        s->len = s->size = ld_le64(b->data + at + 36);
        s->payload = malloc(s->size + 1);
        memcpy(s->payload, b->data + at + VMSTATE_SECTION_HEADER_SIZE, s->size);
        at += VMSTATE_SECTION_HEADER_SIZE + s->size + 4;
    }
    assert_int_equal(at, b->len);
}

static void stream_free(struct stream *st)
{
    for (int i = 0; i < st->n; i++) {
        free(st->s[i].payload);
    }
}

static void put(struct bytes *out, const void *p, size_t len)
{
    out->data = realloc(out->data, out->len + len);
    memcpy(out->data + out->len, p, len);
    out->len += len;
}

static struct bytes serialize(const struct bytes *valid, const struct stream *st)
{
    struct bytes out = { NULL, 0 };
    put(&out, valid->data, VMSTATE_HEADER_SIZE);
    for (int i = 0; i < st->n; i++) {
        const struct section *s = &st->s[i];
        uint8_t h[VMSTATE_SECTION_HEADER_SIZE], c[4];
        memcpy(h, s->name, VMSTATE_NAME_LEN);
        st_le32(h + 32, s->version);
        st_le64(h + 36, s->len);
        st_le32(h + 44, (uint32_t)crc32(0, h, 44));
        put(&out, h, sizeof(h));
        put(&out, s->payload, s->size);
        st_le32(c, (uint32_t)crc32(0, s->payload, (uInt)s->size));
        put(&out, c, 4);
    }
    return out;
}

/* ---- mutations ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? rng_state % n : 0;
}

static const uint64_t edges[] = {
    0, 1, 2, 4, 7, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0x7fff, 0x8000, 0xffff, 0x10000,
    0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull, MEMORY - 4096, MEMORY, MEMORY + 4096,
    0x7fffffffffffffffull, 0x8000000000000000ull, 0xfffffffffffff000ull, 0xffffffffffffffffull,
};

/* One field of a payload set to an edge value, in a width of 1, 2, 4 or 8. */
static void set_edge(struct section *s)
{
    unsigned width = 1u << rnd(4);
    if (s->size < width) {
        return;
    }
    size_t at = (size_t)rnd(s->size - width + 1);
    if (rnd(2)) {
        at &= ~(size_t)(width - 1);     /* where the writers put their fields, mostly */
    }
    uint64_t v = edges[rnd(sizeof(edges) / sizeof(edges[0]))];
    for (unsigned i = 0; i < width; i++) {
        s->payload[at + i] = (uint8_t)(v >> (8 * i));
    }
}

static void resize(struct section *s, bool header_too)
{
    size_t size = s->size ? (size_t)rnd(s->size * 2 + 8) : (size_t)rnd(16);
    s->payload = realloc(s->payload, size + 1);
    for (size_t i = s->size; i < size; i++) {
        s->payload[i] = (uint8_t)rnd(256);
    }
    s->size = size;
    if (header_too) {
        s->len = size;
    }
}

/* What the stream becomes; what was done, for the failure message. */
static struct bytes mutate(const struct bytes *valid, char *what, size_t what_len)
{
    struct stream st;
    parse(valid, &st);
    int k = (int)rnd((uint64_t)st.n - 1);       /* never the end section */
    struct section *s = &st.s[k];
    unsigned kind = (unsigned)rnd(9);
    snprintf(what, what_len, "kind %u on section %d '%.32s'", kind, k, s->name);
    switch (kind) {
    case 0:
    case 1:
        for (uint64_t i = 1 + rnd(4); i-- && s->size;) {
            s->payload[rnd(s->size)] ^= (uint8_t)(1u << rnd(8));
        }
        break;
    case 2:
    case 3:
        set_edge(s);
        break;
    case 4:
        resize(s, true);        /* a shorter or longer payload, as its header says */
        break;
    case 5:
        s->version = (uint32_t)edges[rnd(8)];
        break;
    case 6: {                   /* a section dropped, repeated or moved */
        int other = (int)rnd((uint64_t)st.n - 1);
        struct section tmp = st.s[k];
        st.s[k] = st.s[other];
        st.s[other] = tmp;
        if (rnd(2) && st.n < 64) {
            memmove(&st.s[k + 1], &st.s[k], (size_t)(st.n - k) * sizeof(st.s[0]));
            st.s[k].payload = malloc(st.s[k + 1].size + 1);
            memcpy(st.s[k].payload, st.s[k + 1].payload, st.s[k + 1].size);
            st.n++;
        }
        break;
    }
    case 7:
        resize(s, false);       /* its header lies about its length */
        break;
    default: {                  /* raw: bytes flipped past the checksums, or the stream cut */
        struct bytes out = serialize(valid, &st);
        stream_free(&st);
        if (rnd(2)) {
            out.len = (size_t)rnd(out.len);
            snprintf(what, what_len, "cut at byte %zu", out.len);
        } else {
            size_t at = (size_t)rnd(out.len);
            out.data[at] ^= (uint8_t)(1 + rnd(255));
            snprintf(what, what_len, "raw byte %zu changed", at);
        }
        return out;
    }
    }
    struct bytes out = serialize(valid, &st);
    stream_free(&st);
    return out;
}

/* ---- feeding the destination ---- */

/* The stream to a destination loading into m; its result, err filled. */
static int feed(struct machine *m, const struct bytes *b, struct error *err)
{
    int fds[2];
    struct migration_dest *d;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    assert_int_equal(migration_dest_start(&d, m, fds[1], NULL, err), 0);
    size_t done = 0;
    while (done < b->len) {
        ssize_t n = send(fds[0], b->data + done, b->len - done, MSG_NOSIGNAL);
        if (n <= 0) {
            break;              /* the destination gave up */
        }
        done += (size_t)n;
    }
    shutdown(fds[0], SHUT_WR);
    int ret = migration_dest_wait(d, err);
    migration_dest_free(d);
    close(fds[0]);
    return ret;
}

static void test_valid_stream_loads(void **state)
{
    struct machine *a = bare_machine(&config), *b = bare_machine(&config);
    struct error err = { 0 };
    fill(a);
    struct bytes s = valid_stream(a);
    if (feed(b, &s, &err) < 0) {
        fail_msg("the valid stream failed: %s", err.msg);
    }
    assert_memory_equal(guest_memory_ptr(&a->vm.mem, 0x100000, 16 * 4096),
                        guest_memory_ptr(&b->vm.mem, 0x100000, 16 * 4096), 16 * 4096);
    free(s.data);
    bare_destroy(a);
    bare_destroy(b);
}

static void test_mutated_streams(void **state)
{
    struct machine *a = bare_machine(&config), *b = bare_machine(&config);
    const char *count = getenv("FUZZ_MUTATIONS"), *seed = getenv("FUZZ_SEED");
    int mutations = count ? atoi(count) : MUTATIONS;
    if (seed) {
        rng_state = strtoull(seed, NULL, 0) | 1;
    }
    fill(a);
    struct bytes valid = valid_stream(a);
    int refused = 0;
    for (int i = 0; i < mutations; i++) {
        char what[96];
        struct error err = { 0 };
        struct bytes s = mutate(&valid, what, sizeof(what));
        int ret = feed(b, &s, &err);
        if (ret < 0 && !err.msg[0]) {
            fail_msg("mutation %d (%s) failed with no message", i, what);
        }
        refused += ret < 0;
        free(s.data);
    }
    print_message("%d mutated streams: %d refused, %d loaded\n", mutations, refused, mutations - refused);
    assert_true(refused > mutations / 3);
    free(valid.data);
    bare_destroy(a);
    bare_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_stream_loads),
        cmocka_unit_test(test_mutated_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
