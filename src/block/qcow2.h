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
/* The dirty bit: refcounts may be stale after a crash under lazy refcounts. */
bool qcow2_is_dirty(const struct blockdev *bd);
/* Records a new backing file (NULL: none) in the header; the data is not touched. */
int qcow2_change_backing_file(struct blockdev *bd, const char *backing_file,
                              const char *backing_fmt, struct error *err);

/* Internal snapshots (qemu-img snapshot, savevm). Each operation is atomic
 * on disk (a kill leaves the image before or after it). The caller quiesces
 * guest I/O on bd first, as QEMU drains it: a request in flight during the
 * operation may land on either side of it. */
struct qcow2_snapshot_info {
    char id[128];               /* QEMU assigns "1", "2", ... */
    char *name;
    uint64_t vm_state_size;     /* bytes of VM state saved with it (0: disk only) */
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t disk_size;         /* virtual disk size when it was taken */
    int64_t icount;             /* -1 when not recorded */
};

/* What the VMM records with a snapshot; NULL for a disk-only snapshot. */
struct qcow2_snapshot_vm {
    uint64_t vm_state_size;
    uint64_t vm_clock_nsec;
    int64_t icount;
};

int qcow2_snapshot_list(struct blockdev *bd, struct qcow2_snapshot_info **list, int *count,
                        struct error *err);
void qcow2_snapshot_list_free(struct qcow2_snapshot_info *list, int count);
int qcow2_snapshot_create(struct blockdev *bd, const char *name, const struct qcow2_snapshot_vm *vm,
                          struct error *err);
/* id_or_name: matches an id first, then a name, as QEMU does. */
int qcow2_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err);
int qcow2_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err);
int qcow2_snapshot_rename(struct blockdev *bd, const char *id_or_name, const char *new_name,
                          struct error *err);
/* Makes a read-only image show a snapshot's disk instead of its active one
 * from now on (qemu-img convert -l); the file is not changed. */
int qcow2_snapshot_load_tmp(struct blockdev *bd, const char *id_or_name, struct error *err);
/* Reads the VM state saved with a snapshot (the snapshot's own area). */
int qcow2_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                void *buf, size_t len, struct error *err);

/* Consistency check and repair (qemu-img check). */
enum {
    QCOW2_FIX_LEAKS = 1u << 0,
    QCOW2_FIX_ERRORS = 1u << 1,
};

struct qcow2_check_result {
    int corruptions;            /* unfixed, after repair */
    int leaks;
    int check_errors;           /* I/O errors while checking */
    int corruptions_fixed;
    int leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters;    /* guest clusters of the disk */
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
};

/* Open the image with BDEV_CHECK (and read-only unless fix is set). */
int qcow2_check(struct blockdev *bd, unsigned fix, struct qcow2_check_result *res,
                struct error *err);

/* qemu-img amend: options that can change in place (compat, lazy_refcounts,
 * refcount_bits, size, backing_file, backing_fmt); unset fields stay as they are. */
struct qcow2_amend_opts {
    int version;                /* 0: keep */
    int lazy_refcounts;         /* -1: keep, 0/1 */
    int refcount_bits;          /* 0: keep */
};
int qcow2_amend(struct blockdev *bd, const struct qcow2_amend_opts *o, struct error *err);

#endif
