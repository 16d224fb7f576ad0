#include "machine/disk_qcow2.h"

int disk_snapshot_list(struct blockdev *bd, struct qcow2_snapshot_info **list, int *count, struct error *err)
{
    return qcow2_snapshot_list(bd, list, count, err);
}

void disk_snapshot_list_free(struct qcow2_snapshot_info *list, int count)
{
    qcow2_snapshot_list_free(list, count);
}

int disk_snapshot_create(struct blockdev *bd, const char *name, uint64_t vm_state_size, uint64_t vm_clock_ns,
                         struct error *err)
{
    struct qcow2_snapshot_vm vm = { vm_state_size, vm_clock_ns, -1 };
    return qcow2_snapshot_create(bd, name, vm_state_size ? &vm : NULL, err);
}

int disk_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return qcow2_snapshot_apply(bd, id_or_name, err);
}

int disk_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return qcow2_snapshot_delete(bd, id_or_name, err);
}

int disk_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos, void *buf, size_t len,
                               struct error *err)
{
    return qcow2_snapshot_vmstate_read(bd, id_or_name, pos, buf, len, err);
}

int disk_create_overlay(const char *file, uint64_t size, const char *backing, const char *backing_format,
                        struct error *err)
{
    struct qcow2_create_opts o;
    qcow2_create_opts_init(&o);
    o.size = size;
    o.backing_file = backing;
    o.backing_format = backing_format;
    return qcow2_create(file, &o, err);
}
