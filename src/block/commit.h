/* Commit: fold what the upper layers of a backing chain define into a lower
 * layer (qemu-img commit). Written on the blockdev API only. */
#ifndef BLOCK_COMMIT_H
#define BLOCK_COMMIT_H

#include <stdbool.h>

#include "block/blockdev.h"
#include "util/error.h"
#include "util/progress.h"

/* Copies into base every range that a layer above it in top's chain defines
 * (data or zeros), growing base when it is shorter than top. top is open with
 * its chain; base is one of its backing layers (found with
 * block_chain_find). progress may be NULL. */
int block_commit(struct blockdev *top, const struct blockdev *base, struct progress *progress,
                 struct error *err);


/* The layer of bd's chain (bd itself excluded) that is the file name, or
 * NULL; *depth is set to its depth. A relative name is relative to bd's
 * directory (as qemu-img commit -b reads it); files are compared by identity. */
const struct blockdev *block_chain_find(const struct blockdev *bd, const char *filename,
                                        int *depth);

#endif
