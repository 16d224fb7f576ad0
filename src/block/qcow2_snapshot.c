/* Internal snapshots: the snapshot table. Placeholder until the snapshot
 * work lands: images with snapshots are read and written correctly through
 * refcounts and COPIED flags, but the table is not parsed yet. */
#include <errno.h>

#include "block/qcow2_int.h"

int qcow2_snapshots_load(struct qcow2 *s, struct error *err)
{
    return 0;
}

void qcow2_snapshots_free(struct qcow2 *s)
{
}

static int not_yet(struct error *err)
{
    return error_set(err, -ENOTSUP, "Internal snapshots are not implemented yet");
}

int qcow2_snapshot_list(struct blockdev *bd, struct qcow2_snapshot_info **list, int *count,
                        struct error *err)
{
    return not_yet(err);
}

void qcow2_snapshot_list_free(struct qcow2_snapshot_info *list, int count)
{
}

int qcow2_snapshot_create(struct blockdev *bd, const char *name, const struct qcow2_snapshot_vm *vm,
                          struct error *err)
{
    return not_yet(err);
}

int qcow2_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return not_yet(err);
}

int qcow2_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return not_yet(err);
}

int qcow2_snapshot_rename(struct blockdev *bd, const char *id_or_name, const char *new_name,
                          struct error *err)
{
    return not_yet(err);
}

int qcow2_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                void *buf, size_t len, struct error *err)
{
    return not_yet(err);
}
