/* QEMU's qcow2 overlap checks: before metadata or guest data goes to the
 * image file, the range is checked against the metadata structures the
 * user chose (overlap-check=none|constant|cached|all, and one flag per
 * structure); a write that would land on one is refused and the image
 * marked corrupt. The bits and templates are QEMU's (block/qcow2.h). */
#ifndef BLOCK_OVERLAP_CHECK_H
#define BLOCK_OVERLAP_CHECK_H

#include "util/error.h"
#include "util/options.h"

enum {
    BDEV_OL_MAIN_HEADER      = 1u << 0,
    BDEV_OL_ACTIVE_L1        = 1u << 1,
    BDEV_OL_ACTIVE_L2        = 1u << 2,
    BDEV_OL_REFCOUNT_TABLE   = 1u << 3,
    BDEV_OL_REFCOUNT_BLOCK   = 1u << 4,
    BDEV_OL_SNAPSHOT_TABLE   = 1u << 5,
    BDEV_OL_INACTIVE_L1      = 1u << 6,
    BDEV_OL_INACTIVE_L2      = 1u << 7,     /* reads every snapshot's L1 table per write */
    BDEV_OL_BITMAP_DIRECTORY = 1u << 8,
    BDEV_OL_COUNT            = 9,
};
/* Checks needing no table scan. */
#define BDEV_OL_CONSTANT (BDEV_OL_MAIN_HEADER | BDEV_OL_ACTIVE_L1 | BDEV_OL_REFCOUNT_TABLE | \
                          BDEV_OL_SNAPSHOT_TABLE | BDEV_OL_BITMAP_DIRECTORY)
/* Checks against tables kept in memory: QEMU's default. */
#define BDEV_OL_CACHED (BDEV_OL_CONSTANT | BDEV_OL_ACTIVE_L2 | BDEV_OL_REFCOUNT_BLOCK | \
                        BDEV_OL_INACTIVE_L1)
#define BDEV_OL_ALL (BDEV_OL_CACHED | BDEV_OL_INACTIVE_L2)

/* Reads the overlap-check options under prefix ("overlap-check",
 * "overlap-check.template", "overlap-check.<structure>=on|off") into the
 * set of checks (BDEV_OL_CACHED when none is given). Bad values fail with
 * QEMU's words. */
int blockdev_overlap_checks_parse(struct options *opts, const char *prefix, unsigned *checks,
                                  struct error *err);
/* QEMU's name of one structure ("inactive L2 table"), as its corruption
 * message says it. */
const char *blockdev_overlap_name(unsigned bit);

#endif
