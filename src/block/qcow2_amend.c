/* qemu-img amend for qcow2: changes made in place. */
#include <errno.h>

#include "block/qcow2_int.h"

int qcow2_amend(struct blockdev *bd, const struct qcow2_amend_opts *o, struct error *err)
{
    return error_set(err, -ENOTSUP, "qcow2 amend is not implemented yet");
}
