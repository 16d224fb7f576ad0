/* Consistency check and repair. */
#include <errno.h>

#include "block/qcow2_int.h"

int qcow2_repair_dirty(struct qcow2 *s, struct error *err)
{
    return error_set(err, -ENOTSUP, "The image has the dirty bit set (lazy refcounts after a "
                     "crash) and cannot be repaired yet; open it read-only");
}
