/* The ranges an image's top layer defines itself (an overlay's own
 * clusters: allocated at depth 0 of its chain), in order, each run as
 * long as possible. What a backup with sync=top copies, what the
 * overlay-only migration sends, and what must be absent from an overlay
 * that is to receive one. */
#ifndef BLOCK_BLOCKDEV_TOP_RANGES_H
#define BLOCK_BLOCKDEV_TOP_RANGES_H

#include <stdint.h>

#include "util/error.h"

struct blockdev;

struct blockdev_top_ranges {
    struct blockdev *bd;
    uint64_t off, size;     /* where the walk stands; the image's size */
};

void blockdev_top_ranges_init(struct blockdev_top_ranges *it, struct blockdev *bd);
/* 1: the next range is [*off, *off + *len); 0: no more; <0 with err. */
int blockdev_top_ranges_next(struct blockdev_top_ranges *it, uint64_t *off, uint64_t *len, struct error *err);

#endif
