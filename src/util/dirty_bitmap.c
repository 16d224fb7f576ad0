/* The in-memory dirty bitmap: a flat array of 64-bit words, bit n of word
 * n / 64 for granule n. Disks of a few TiB at 64 KiB granules need a few MiB,
 * so a flat array is enough; runs are found a word at a time. */
#include "util/dirty_bitmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct dirty_bitmap {
    uint64_t size;
    uint32_t gran_bits;
    uint64_t nbits;
    uint64_t *words;
};

static uint64_t words_for(uint64_t nbits) { return (nbits + 63) / 64; }

static uint64_t bits_for(uint64_t size, uint32_t gran_bits)
{
    return (size >> gran_bits) + ((size & ((1ULL << gran_bits) - 1)) != 0);
}

struct dirty_bitmap *dirty_bitmap_new(uint64_t size, uint32_t granularity)
{
    struct dirty_bitmap *b = calloc(1, sizeof(*b));
    if (!b) {
        return NULL;
    }
    b->gran_bits = (uint32_t)__builtin_ctz(granularity);
    b->size = size;
    b->nbits = bits_for(size, b->gran_bits);
    b->words = calloc(words_for(b->nbits) + 1, 8);
    if (!b->words) {
        free(b);
        return NULL;
    }
    return b;
}

void dirty_bitmap_free(struct dirty_bitmap *b)
{
    if (b) {
        free(b->words);
        free(b);
    }
}

uint64_t dirty_bitmap_size(const struct dirty_bitmap *b) { return b->size; }
const uint64_t *dirty_bitmap_words(const struct dirty_bitmap *b) { return b->words; }
uint32_t dirty_bitmap_granularity(const struct dirty_bitmap *b) { return 1u << b->gran_bits; }

static bool bit_get(const struct dirty_bitmap *b, uint64_t n)
{
    return (b->words[n / 64] >> (n % 64)) & 1;
}

/* Sets or clears bits [first, end). */
static void bits_fill(struct dirty_bitmap *b, uint64_t first, uint64_t end, bool value)
{
    while (first < end) {
        uint64_t w = first / 64;
        uint32_t lo = first % 64;
        uint32_t n = end - first < 64 - lo ? (uint32_t)(end - first) : 64 - lo;
        uint64_t mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << lo;
        b->words[w] = value ? b->words[w] | mask : b->words[w] & ~mask;
        first += n;
    }
}

uint64_t dirty_bitmap_count(const struct dirty_bitmap *b)
{
    uint64_t bits = 0;
    for (uint64_t w = 0; w < words_for(b->nbits); w++) {
        bits += (uint64_t)__builtin_popcountll(b->words[w]);
    }
    uint64_t bytes = bits << b->gran_bits;
    /* The last granule may cover less than a whole granularity. */
    if (b->nbits && bit_get(b, b->nbits - 1)) {
        bytes -= (b->nbits << b->gran_bits) - b->size;
    }
    return bytes;
}

void dirty_bitmap_set(struct dirty_bitmap *b, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= b->size) {
        return;
    }
    uint64_t end = len > b->size - off ? b->size : off + len;
    bits_fill(b, off >> b->gran_bits, bits_for(end, b->gran_bits), true);
}

void dirty_bitmap_reset(struct dirty_bitmap *b, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= b->size) {
        return;
    }
    uint64_t end = len > b->size - off ? b->size : off + len;
    uint64_t first = bits_for(off, b->gran_bits);
    uint64_t last = end == b->size ? b->nbits : end >> b->gran_bits;
    if (first < last) {
        bits_fill(b, first, last, false);
    }
}

void dirty_bitmap_clear(struct dirty_bitmap *b)
{
    memset(b->words, 0, words_for(b->nbits) * 8);
}

bool dirty_bitmap_get(const struct dirty_bitmap *b, uint64_t off)
{
    return off < b->size && bit_get(b, off >> b->gran_bits);
}

/* First bit at or after n whose value is `value`, or nbits. */
static uint64_t find_bit(const struct dirty_bitmap *b, uint64_t n, bool value)
{
    while (n < b->nbits) {
        uint64_t w = b->words[n / 64];
        if (!value) {
            w = ~w;
        }
        w >>= n % 64;
        if (w) {
            n += (uint64_t)__builtin_ctzll(w);
            return n < b->nbits ? n : b->nbits;
        }
        n = (n / 64 + 1) * 64;
    }
    return b->nbits;
}

uint64_t dirty_bitmap_run(const struct dirty_bitmap *b, uint64_t off, uint64_t max_len, bool *dirty)
{
    if (off >= b->size) {
        *dirty = false;
        return 0;
    }
    uint64_t n = off >> b->gran_bits;
    *dirty = bit_get(b, n);
    uint64_t change = find_bit(b, n, !*dirty);
    uint64_t end = change >= b->nbits ? b->size : change << b->gran_bits;
    uint64_t run = end - off;
    return run < max_len ? run : max_len;
}

int64_t dirty_bitmap_next_dirty(const struct dirty_bitmap *b, uint64_t off)
{
    if (off >= b->size) {
        return -1;
    }
    uint64_t n = find_bit(b, off >> b->gran_bits, true);
    if (n >= b->nbits) {
        return -1;
    }
    uint64_t pos = n << b->gran_bits;
    return (int64_t)(pos > off ? pos : off);
}

int dirty_bitmap_resize(struct dirty_bitmap *b, uint64_t size)
{
    uint64_t nbits = bits_for(size, b->gran_bits);
    uint64_t old_words = words_for(b->nbits), new_words = words_for(nbits);
    if (new_words != old_words) {
        uint64_t *w = realloc(b->words, (new_words + 1) * 8);
        if (!w) {
            return -ENOMEM;
        }
        b->words = w;
        if (new_words > old_words) {
            memset(w + old_words, 0, (new_words - old_words + 1) * 8);
        }
    }
    /* Bits past the new end are cleared, so growing again finds them clean. */
    if (nbits < b->nbits) {
        bits_fill(b, nbits, new_words * 64, false);
    } else {
        bits_fill(b, b->nbits, nbits, false);
    }
    b->nbits = nbits;
    b->size = size;
    return 0;
}

void dirty_bitmap_merge(struct dirty_bitmap *dst, const struct dirty_bitmap *src)
{
    if (dst->gran_bits == src->gran_bits && dst->nbits == src->nbits) {
        for (uint64_t w = 0; w < words_for(dst->nbits); w++) {
            dst->words[w] |= src->words[w];
        }
        return;
    }
    uint64_t n = find_bit(src, 0, true);
    while (n < src->nbits) {
        uint64_t end = find_bit(src, n, false);
        dirty_bitmap_set(dst, n << src->gran_bits, (end - n) << src->gran_bits);
        n = find_bit(src, end, true);
    }
}

uint64_t dirty_bitmap_serialized_size(const struct dirty_bitmap *b)
{
    return words_for(b->nbits) * 8;
}

void dirty_bitmap_serialize(const struct dirty_bitmap *b, uint64_t byte_off, void *buf, size_t len)
{
    uint8_t *out = buf;
    uint64_t total = dirty_bitmap_serialized_size(b);
    for (size_t i = 0; i < len; i++) {
        uint64_t pos = byte_off + i;
        out[i] = pos < total ? (uint8_t)(b->words[pos / 8] >> (8 * (pos % 8))) : 0;
    }
}

/* The mask of the bits of word w that lie inside the disk. */
static uint64_t valid_mask(const struct dirty_bitmap *b, uint64_t w)
{
    uint64_t first = w * 64;
    if (first >= b->nbits) {
        return 0;
    }
    return b->nbits - first >= 64 ? ~0ULL : (1ULL << (b->nbits - first)) - 1;
}

void dirty_bitmap_deserialize(struct dirty_bitmap *b, uint64_t byte_off, const void *buf, size_t len)
{
    const uint8_t *in = buf;
    uint64_t total = dirty_bitmap_serialized_size(b);
    for (size_t i = 0; i < len && byte_off + i < total; i++) {
        uint64_t pos = byte_off + i;
        uint32_t shift = 8 * (pos % 8);
        uint64_t w = pos / 8;
        uint64_t v = (b->words[w] & ~(0xffULL << shift)) | ((uint64_t)in[i] << shift);
        b->words[w] = v & valid_mask(b, w);
    }
}

void dirty_bitmap_deserialize_ones(struct dirty_bitmap *b, uint64_t byte_off, uint64_t len)
{
    uint64_t first = byte_off * 8;
    uint64_t end = first + len * 8 < b->nbits ? first + len * 8 : b->nbits;
    if (first < end) {
        bits_fill(b, first, end, true);
    }
}
