/* Mutations of a migration stream: fuzz_stream.h. */
#include "fuzz_stream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "state/vmstate_stream.h"
#include "util/bswap.h"

#define MAX_SECTIONS 256

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

void fuzz_seed_from_env(void)
{
    const char *seed = getenv("FUZZ_SEED");
    if (seed) {
        rng_state = strtoull(seed, NULL, 0) | 1;
    }
}

int fuzz_mutations(int def)
{
    const char *count = getenv("FUZZ_MUTATIONS");
    return count ? atoi(count) : def;
}

uint64_t fuzz_rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? rng_state % n : 0;
}

uint64_t fuzz_edge(uint64_t ram)
{
    const uint64_t edges[] = {
        0, 1, 2, 4, 7, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0x7fff, 0x8000, 0xffff, 0x10000,
        0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull, ram - 4096, ram, ram + 4096,
        0x7fffffffffffffffull, 0x8000000000000000ull, 0xfffffffffffff000ull, 0xffffffffffffffffull,
    };
    return edges[fuzz_rnd(sizeof(edges) / sizeof(edges[0]))];
}

struct bytes fuzz_read_memfd(int fd, int64_t len)
{
    assert_true(len > 0);
    struct bytes s = { malloc((size_t)len), (size_t)len };
    assert_non_null(s.data);
    assert_int_equal(pread(fd, s.data, s.len, 0), (ssize_t)len);
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
    struct section s[MAX_SECTIONS];
    int n;
};

static void parse(const struct bytes *b, struct stream *st)
{
    size_t at = VMSTATE_HEADER_SIZE;
    st->n = 0;
    while (at < b->len) {
        assert_true(st->n < MAX_SECTIONS - 1);
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

/* One field of a payload set to an edge value, in a width of 1, 2, 4 or 8. */
static void set_edge(struct section *s, uint64_t ram)
{
    unsigned width = 1u << fuzz_rnd(4);
    if (s->size < width) {
        return;
    }
    size_t at = (size_t)fuzz_rnd(s->size - width + 1);
    if (fuzz_rnd(2)) {
        at &= ~(size_t)(width - 1);     /* where the writers put their fields, mostly */
    }
    uint64_t v = fuzz_edge(ram);
    for (unsigned i = 0; i < width; i++) {
        s->payload[at + i] = (uint8_t)(v >> (8 * i));
    }
}

static void resize(struct section *s, bool header_too)
{
    size_t size = s->size ? (size_t)fuzz_rnd(s->size * 2 + 8) : (size_t)fuzz_rnd(16);
    s->payload = realloc(s->payload, size + 1);
    for (size_t i = s->size; i < size; i++) {
        s->payload[i] = (uint8_t)fuzz_rnd(256);
    }
    s->size = size;
    if (header_too) {
        s->len = size;
    }
}

/* A section dropped, repeated or moved. */
static void move(struct stream *st, int k)
{
    int other = (int)fuzz_rnd((uint64_t)st->n - 1);
    struct section tmp = st->s[k];
    st->s[k] = st->s[other];
    st->s[other] = tmp;
    if (fuzz_rnd(2) && st->n < MAX_SECTIONS) {
        memmove(&st->s[k + 1], &st->s[k], (size_t)(st->n - k) * sizeof(st->s[0]));
        st->s[k].payload = malloc(st->s[k + 1].size + 1);
        memcpy(st->s[k].payload, st->s[k + 1].payload, st->s[k + 1].size);
        st->n++;
    }
}

/* Raw: bytes flipped past the checksums, or the stream cut. */
static void raw(struct bytes *out, char *what, size_t what_len)
{
    if (fuzz_rnd(2)) {
        out->len = (size_t)fuzz_rnd(out->len);
        snprintf(what, what_len, "cut at byte %zu", out->len);
    } else {
        size_t at = (size_t)fuzz_rnd(out->len);
        out->data[at] ^= (uint8_t)(1 + fuzz_rnd(255));
        snprintf(what, what_len, "raw byte %zu changed", at);
    }
}

/* The section to change: never the end; prefer's half the time. */
static int pick(const struct stream *st, const char *prefer)
{
    int k = (int)fuzz_rnd((uint64_t)st->n - 1);
    if (prefer && fuzz_rnd(2)) {
        int hits[MAX_SECTIONS], n = 0;
        for (int i = 0; i < st->n - 1; i++) {
            if (strncmp(st->s[i].name, prefer, strlen(prefer)) == 0) {
                hits[n++] = i;
            }
        }
        k = n ? hits[fuzz_rnd((uint64_t)n)] : k;
    }
    return k;
}

struct bytes fuzz_mutate(const struct bytes *valid, uint64_t ram, const char *prefer, char *what, size_t what_len)
{
    struct stream *st = malloc(sizeof(*st));
    assert_non_null(st);
    parse(valid, st);
    assert_true(st->n >= 2);
    int k = pick(st, prefer);
    struct section *s = &st->s[k];
    unsigned kind = (unsigned)fuzz_rnd(9);
    snprintf(what, what_len, "kind %u on section %d '%.32s'", kind, k, s->name);
    switch (kind) {
    case 0:
    case 1:
        for (uint64_t i = 1 + fuzz_rnd(4); i-- && s->size;) {
            s->payload[fuzz_rnd(s->size)] ^= (uint8_t)(1u << fuzz_rnd(8));
        }
        break;
    case 2:
    case 3:
        set_edge(s, ram);
        break;
    case 4:
        resize(s, true);        /* a shorter or longer payload, as its header says */
        break;
    case 5:
        s->version = (uint32_t)fuzz_edge(ram) & 0xff;
        break;
    case 6:
        move(st, k);
        break;
    case 7:
        resize(s, false);       /* its header lies about its length */
        break;
    default:
        break;
    }
    struct bytes out = serialize(valid, st);
    stream_free(st);
    free(st);
    if (kind == 8) {
        raw(&out, what, what_len);
    }
    return out;
}
