/* The qcow2 driver's operations beyond I/O. Users reach them through
 * blockdev.h (blockdev_create, blockdev_snapshot_*, blockdev_check, ...);
 * this header is for src/block and for white-box tests of the driver. */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "util/error.h"

/* Creates (or overwrites) filename as an empty qcow2 image. */
int qcow2_create(const char *filename, const struct blockdev_create_opts *o, struct error *err);
bool blockdev_is_qcow2(const struct blockdev *bd);
bool qcow2_is_dirty(const struct blockdev *bd);
int qcow2_change_backing_file(struct blockdev *bd, const char *backing_file,
                              const char *backing_fmt, struct error *err);

int qcow2_snapshot_list(struct blockdev *bd, struct blockdev_snapshot_info **list, int *count,
                        struct error *err);
int qcow2_snapshot_create(struct blockdev *bd, const char *name, const struct blockdev_snapshot_vm *vm,
                          struct error *err);
int qcow2_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err);
int qcow2_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err);
int qcow2_snapshot_rename(struct blockdev *bd, const char *id_or_name, const char *new_name,
                          struct error *err);
int qcow2_snapshot_load_tmp(struct blockdev *bd, const char *id_or_name, struct error *err);
int qcow2_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                void *buf, size_t len, struct error *err);

int qcow2_check(struct blockdev *bd, unsigned fix, struct blockdev_check_result *res,
                struct error *err);
int qcow2_amend(struct blockdev *bd, const struct blockdev_amend_opts *o, struct error *err);

#endif
