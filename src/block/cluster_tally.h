/* How many times each host cluster was met, in memory that grows with the
 * clusters met rather than with the references: a bit per cluster met
 * (in chunks allocated when first touched) and a count only for clusters
 * met more than once. A snapshot create's refcount room check walks every
 * L2 entry of the active tables; a hostile image whose L1 entries all name
 * one full L2 table has millions of references to a handful of clusters. */
#ifndef COWVISOR_BLOCK_CLUSTER_TALLY_H
#define COWVISOR_BLOCK_CLUSTER_TALLY_H

#include <stddef.h>
#include <stdint.h>

struct cluster_repeat;

struct cluster_tally {
    uint32_t chunk_bits;                /* log2(clusters per chunk of the bitmap) */
    uint64_t n_chunks;
    uint8_t **seen;                     /* n_chunks bitmaps, NULL until a cluster in it is met */
    struct cluster_repeat *repeats;     /* open addressing, key 0 free */
    size_t n_repeats, cap_repeats;
};

/* Clusters 0 to (n_chunks << chunk_bits) - 1 can be met; -ENOMEM. */
int cluster_tally_init(struct cluster_tally *t, uint64_t n_chunks, uint32_t chunk_bits);
/* Meets cluster c: the times it was met, this one included; 0 for want of memory. */
uint64_t cluster_tally_meet(struct cluster_tally *t, uint64_t c);
void cluster_tally_free(struct cluster_tally *t);

#endif
