/* TEMPORARY: stand-ins until the qcow2 driver lands on main; this file is
 * deleted when main is merged. They fail cleanly instead of doing anything. */
#include <errno.h>
#include <string.h>

#include "block/qcow2.h"

int qcow2_change_backing_file(struct blockdev *bd, const char *backing_file,
                              const char *backing_fmt, struct error *err);

void qcow2_create_opts_init(struct qcow2_create_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->cluster_size = 65536;
    o->version = 3;
    o->refcount_bits = 16;
}

int qcow2_create(const char *filename, const struct qcow2_create_opts *o, struct error *err)
{
    return error_set(err, -ENOTSUP, "The qcow2 driver is not available yet");
}

bool blockdev_is_qcow2(const struct blockdev *bd)
{
    return false;
}

int qcow2_change_backing_file(struct blockdev *bd, const char *backing_file,
                              const char *backing_fmt, struct error *err)
{
    return error_set(err, -ENOTSUP, "The qcow2 driver is not available yet");
}
