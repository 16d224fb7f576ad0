/* Consistency check and repair. Placeholder until the check work lands. */
#include <errno.h>

#include "block/qcow2_int.h"

int qcow2_repair_dirty(struct qcow2 *s, struct error *err)
{
    return error_set(err, -ENOTSUP, "The image has the dirty bit set (lazy refcounts after a "
                     "crash) and cannot be repaired yet; open it read-only");
}

int qcow2_check(struct blockdev *bd, unsigned fix, struct qcow2_check_result *res,
                struct error *err)
{
    return error_set(err, -ENOTSUP, "qcow2 check is not implemented yet");
}

int qcow2_amend(struct blockdev *bd, const struct qcow2_amend_opts *o, struct error *err)
{
    return error_set(err, -ENOTSUP, "qcow2 amend is not implemented yet");
}
