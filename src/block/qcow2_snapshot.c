/* Internal snapshots: the snapshot table. (Parsing and the snapshot
 * operations arrive with the snapshot work; until then images with snapshots
 * are handled through refcounts and COPIED flags alone.) */
#include "block/qcow2_int.h"

int qcow2_snapshots_load(struct qcow2 *s, struct error *err)
{
    return 0;
}

void qcow2_snapshots_free(struct qcow2 *s)
{
}
