/* blockdev-add and blockdev-del: QMP's side of the machine's table of
 * named block nodes (machine/block_nodes.h), with QEMU 7.2's errors. */
#include "qmp_int.h"

#include "machine/block_nodes.h"
#include "qmp_json_u64.h"

const struct qmp_arg qmp_blockdev_del_args[] = { { "node-name", JSON_STRING, false }, { NULL, 0, false } };

void qmp_blockdev_add(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    qmp_json_unmark_u64(args);      /* the block layer checks each option's type */
    const char *name = json_string_value(json_object_get(args, "node-name"));
    /* Disks' devices and nodes share one namespace, as in QEMU. */
    if (name && qmp_find_disk(s, name) >= 0) {
        qmp_fail(r, QMP_GENERIC, "node-name=%s is conflicting with a device id", name);
        return;
    }
    struct error err = { 0 };
    if (block_nodes_add(machine_block_nodes(s->m), args, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

void qmp_blockdev_del(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_blockdev_del_args, r)) {
        return;
    }
    struct error err = { 0 };
    if (block_nodes_del(machine_block_nodes(s->m), json_string_value(json_object_get(args, "node-name")), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}
