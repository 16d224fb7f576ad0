#include <errno.h>
#include <stdlib.h>

#include "block/cluster_tally.h"

struct cluster_repeat {
    uint64_t key;       /* cluster + 1 */
    uint64_t count;
};

int cluster_tally_init(struct cluster_tally *t, uint64_t n_chunks, uint32_t chunk_bits)
{
    *t = (struct cluster_tally){ .chunk_bits = chunk_bits, .n_chunks = n_chunks };
    if (n_chunks && !(t->seen = calloc(n_chunks, sizeof(*t->seen)))) {
        return -ENOMEM;
    }
    return 0;
}

void cluster_tally_free(struct cluster_tally *t)
{
    for (uint64_t i = 0; t->seen && i < t->n_chunks; i++) {
        free(t->seen[i]);
    }
    free(t->seen);
    free(t->repeats);
    *t = (struct cluster_tally){ 0 };
}

static size_t slot_of(const struct cluster_tally *t, uint64_t key)
{
    /* Fibonacci hashing: neighbouring clusters spread over the table. */
    return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 17) & (t->cap_repeats - 1);
}

static struct cluster_repeat *find_slot(struct cluster_tally *t, uint64_t key)
{
    size_t i = slot_of(t, key);
    while (t->repeats[i].key && t->repeats[i].key != key) {
        i = (i + 1) & (t->cap_repeats - 1);
    }
    return &t->repeats[i];
}

/* Kept at most half full, so a probe ends soon. */
static int grow_repeats(struct cluster_tally *t)
{
    size_t cap = t->cap_repeats ? t->cap_repeats * 2 : 64;
    struct cluster_repeat *old = t->repeats;
    size_t old_cap = t->cap_repeats;
    t->repeats = calloc(cap, sizeof(*t->repeats));
    if (!t->repeats) {
        t->repeats = old;
        return -ENOMEM;
    }
    t->cap_repeats = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key) {
            *find_slot(t, old[i].key) = old[i];
        }
    }
    free(old);
    return 0;
}

static uint64_t meet_again(struct cluster_tally *t, uint64_t c)
{
    if (2 * (t->n_repeats + 1) > t->cap_repeats && grow_repeats(t) < 0) {
        return 0;
    }
    struct cluster_repeat *r = find_slot(t, c + 1);
    if (!r->key) {
        *r = (struct cluster_repeat){ .key = c + 1, .count = 1 };
        t->n_repeats++;
    }
    return ++r->count;
}

uint64_t cluster_tally_meet(struct cluster_tally *t, uint64_t c)
{
    uint64_t chunk = c >> t->chunk_bits, bit = c & ((1ULL << t->chunk_bits) - 1);
    if (!t->seen[chunk]) {
        t->seen[chunk] = calloc(((1ULL << t->chunk_bits) + 7) / 8, 1);
        if (!t->seen[chunk]) {
            return 0;
        }
    }
    uint8_t *byte = &t->seen[chunk][bit / 8], mask = (uint8_t)(1u << (bit % 8));
    if (!(*byte & mask)) {
        *byte |= mask;
        return 1;
    }
    return meet_again(t, c);
}
