/* Rebase: give an overlay another backing file without changing what it
 * reads (qemu-img rebase's safe mode). Written on the blockdev API only. */
#ifndef BLOCK_REBASE_H
#define BLOCK_REBASE_H

#include "block/blockdev.h"
#include "util/error.h"
#include "util/progress.h"

/* overlay is open read-write with its current (old) backing chain. Copies
 * into overlay every range it does not define itself where the old chain
 * and new_backing read differently, so that the overlay reads the same
 * after its backing file becomes new_backing (NULL: no backing file, which
 * reads as zeros). Changing the name in the header is the caller's step. */
int block_rebase_copy(struct blockdev *overlay, struct blockdev *new_backing,
                      struct progress *progress, struct error *err);

#endif
