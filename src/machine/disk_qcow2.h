/* The machine's only calls into the qcow2 driver: internal snapshots with
 * their VM-state areas, and new overlays. They move behind blockdev.h
 * (the block-API part of issue #11); until then they stay here, in one
 * place, and nothing else in the machine includes block/qcow2.h. */
#ifndef MACHINE_DISK_QCOW2_H
#define MACHINE_DISK_QCOW2_H

#include <stdint.h>

#include "block/blockdev.h"
#include "block/qcow2.h"

int disk_snapshot_list(struct blockdev *bd, struct qcow2_snapshot_info **list, int *count, struct error *err);
void disk_snapshot_list_free(struct qcow2_snapshot_info *list, int count);
/* vm_state_size 0: a disk-only snapshot. */
int disk_snapshot_create(struct blockdev *bd, const char *name, uint64_t vm_state_size, uint64_t vm_clock_ns,
                         struct error *err);
int disk_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err);
int disk_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err);
int disk_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos, void *buf, size_t len,
                               struct error *err);
/* A new qcow2 image at file, as large as and backed by the image backing. */
int disk_create_overlay(const char *file, uint64_t size, const char *backing, const char *backing_format,
                        struct error *err);

#endif
