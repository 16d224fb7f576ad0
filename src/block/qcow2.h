/* qcow2 operations beyond the blockdev API, for the tools and the VMM:
 * creating images, snapshots, check and repair, commit and rebase.
 * Image I/O itself goes through blockdev.h. */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "util/error.h"

enum qcow2_compression {
    QCOW2_COMPRESSION_ZLIB = 0,
    QCOW2_COMPRESSION_ZSTD = 1,
};

struct qcow2_create_opts {
    uint64_t size;                  /* virtual size; 0 with a backing file: take its size */
    uint32_t cluster_size;          /* 512 .. 2 MiB, a power of two; default 64 KiB */
    int version;                    /* 2 (compat=0.10) or 3 (compat=1.1, default) */
    int refcount_bits;              /* 1, 2, 4, ..., 64; default 16 */
    bool lazy_refcounts;
    bool extended_l2;
    enum qcow2_compression compression;
    enum blockdev_prealloc prealloc;
    const char *backing_file;       /* NULL for none */
    const char *backing_format;     /* NULL: not recorded */
};

void qcow2_create_opts_init(struct qcow2_create_opts *o);
/* Creates (or overwrites) filename as an empty qcow2 image. */
int qcow2_create(const char *filename, const struct qcow2_create_opts *o, struct error *err);
bool blockdev_is_qcow2(const struct blockdev *bd);
/* Records a new backing file (NULL: none) in the header; the data is not touched. */
int qcow2_change_backing_file(struct blockdev *bd, const char *backing_file,
                              const char *backing_fmt, struct error *err);

#endif
