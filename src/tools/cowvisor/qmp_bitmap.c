/* Dirty bitmap commands in QEMU 7.2's shapes: block-dirty-bitmap-add,
 * -remove, -clear, -enable, -disable, -merge on a node (a machine disk's
 * device "diskN" for its top, a layer's node "#blockNNN", or a blockdev-add node), and the "dirty-bitmaps" list of
 * query-block's nodes. Persistent bitmaps reach the image when the disk
 * closes (quit); enabled ones record the guest's writes meanwhile. */
#include "qmp_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/blockdev.h"
#include "machine/block_nodes.h"
#include "machine/machine.h"

#define MAX_LAYERS 16

/* QEMU's two lookups word a missing node differently: bdrv_lookup_bs
 * (add) and block_dirty_bitmap_lookup (the others). */
enum lookup { LOOKUP_DEVICE, LOOKUP_NODE };

/* The open layer a node name designates, or NULL after failing r. */
static struct blockdev *find_node(struct qmp_server *s, const char *node, enum lookup how,
                                  struct qmp_reply *r)
{
    int depth, i = qmp_find_disk_node(s, node, &depth);
    if (i >= 0) {
        struct disk_layer layers[MAX_LAYERS];
        bool ro;
        if (qmp_disk_layers(s, i, layers, NULL, MAX_LAYERS, &ro) > depth && layers[depth].bd) {
            return layers[depth].bd;
        }
    }
    struct block_node *added = machine_block_node_find(s->m, node);
    if (added && added->node.bd) {
        return added->node.bd;
    }
    qmp_fail(r, QMP_GENERIC, how == LOOKUP_NODE ? "Node '%s' not found"
             : "Cannot find device='%s' nor node-name='%s'", node, node);
    return NULL;
}

struct blockdev *qmp_bitmap_node(struct qmp_server *s, const char *node, struct qmp_reply *r)
{
    return find_node(s, node, LOOKUP_NODE, r);
}

/* QMP's desc carries the error without the hint lines QEMU's CLI prints. */
static void fail_with(struct qmp_reply *r, const struct error *err)
{
    const char *nl = strchr(err->msg, '\n');
    qmp_fail(r, QMP_GENERIC, "%.*s", nl ? (int)(nl - err->msg) : (int)strlen(err->msg), err->msg);
}

static const char *arg_str(json_t *args, const char *key)
{
    return json_string_value(json_object_get(args, key));
}

const struct qmp_arg qmp_bitmap_add_args[] = {
    { "node", JSON_STRING, false }, { "name", JSON_STRING, false },
    { "granularity", JSON_INTEGER, true }, { "persistent", JSON_TRUE, true },
    { "disabled", JSON_TRUE, true }, { NULL, 0, false },
};

void qmp_bitmap_add(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_bitmap_add_args, r)) {
        return;
    }
    const char *name = arg_str(args, "name");
    if (!*name) {
        qmp_fail(r, QMP_GENERIC, "Bitmap name cannot be empty");
        return;
    }
    struct blockdev *bd = find_node(s, arg_str(args, "node"), LOOKUP_DEVICE, r);
    if (!bd) {
        return;
    }
    json_t *g = json_object_get(args, "granularity");
    json_int_t granularity = g ? json_integer_value(g) : 0;
    if (g && (granularity < 512 || granularity > UINT32_MAX || (granularity & (granularity - 1)))) {
        qmp_fail(r, QMP_GENERIC, "Granularity must be power of 2 and at least 512");
        return;
    }
    struct blockdev_bitmap_add_opts o = {
        .granularity = (uint32_t)granularity,
        .persistent = json_is_true(json_object_get(args, "persistent")),
        .disabled = json_is_true(json_object_get(args, "disabled")),
    };
    struct error err = { 0 };
    if (blockdev_bitmap_add(bd, name, &o, &err) < 0) {
        fail_with(r, &err);
    }
}

const struct qmp_arg qmp_bitmap_args[] = {
    { "node", JSON_STRING, false }, { "name", JSON_STRING, false }, { NULL, 0, false },
};

enum bitmap_op { OP_REMOVE, OP_CLEAR, OP_ENABLE, OP_DISABLE };

static void bitmap_op(struct qmp_server *s, json_t *args, struct qmp_reply *r, enum bitmap_op op)
{
    if (!qmp_check_args(args, qmp_bitmap_args, r)) {
        return;
    }
    struct blockdev *bd = find_node(s, arg_str(args, "node"), LOOKUP_NODE, r);
    if (!bd) {
        return;
    }
    const char *name = arg_str(args, "name");
    struct error err = { 0 };
    int ret = op == OP_REMOVE ? blockdev_bitmap_remove(bd, name, &err)
            : op == OP_CLEAR ? blockdev_bitmap_clear(bd, name, &err)
            : blockdev_bitmap_enable(bd, name, op == OP_ENABLE, &err);
    if (ret < 0) {
        fail_with(r, &err);
    }
}

void qmp_bitmap_remove(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    bitmap_op(s, args, r, OP_REMOVE);
}

void qmp_bitmap_clear(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    bitmap_op(s, args, r, OP_CLEAR);
}

void qmp_bitmap_enable(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    bitmap_op(s, args, r, OP_ENABLE);
}

void qmp_bitmap_disable(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    bitmap_op(s, args, r, OP_DISABLE);
}

const struct qmp_arg qmp_bitmap_merge_args[] = {
    { "node", JSON_STRING, false }, { "target", JSON_STRING, false },
    { "bitmaps", JSON_ARRAY, false }, { NULL, 0, false },
};

/* One source: a bitmap name on the target's node, or {"node", "name"}. */
static int merge_one(struct qmp_server *s, struct blockdev *bd, const char *target, json_t *src,
                     struct qmp_reply *r)
{
    struct blockdev *src_bd = bd;
    const char *name = json_string_value(src);
    if (json_is_object(src)) {
        const char *node = json_string_value(json_object_get(src, "node"));
        name = json_string_value(json_object_get(src, "name"));
        if (!node || !name) {
            qmp_fail(r, QMP_GENERIC, "Parameter 'bitmaps' expects a bitmap name or "
                     "{\"node\": ..., \"name\": ...}");
            return -1;
        }
        if (!(src_bd = find_node(s, node, LOOKUP_NODE, r))) {
            return -1;
        }
    } else if (!name) {
        qmp_fail(r, QMP_GENERIC, "Invalid parameter type for 'bitmaps', expected: "
                 "BlockDirtyBitmapOrStr");
        return -1;
    }
    struct error err = { 0 };
    if (blockdev_bitmap_merge(bd, target, src_bd, name, &err) < 0) {
        fail_with(r, &err);
        return -1;
    }
    return 0;
}

void qmp_bitmap_merge(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_bitmap_merge_args, r)) {
        return;
    }
    struct blockdev *bd = find_node(s, arg_str(args, "node"), LOOKUP_NODE, r);
    if (!bd) {
        return;
    }
    const char *target = arg_str(args, "target");
    /* QEMU looks the target up before the sources. */
    uint64_t len = 1;
    bool dirty;
    struct error err = { 0 };
    if (blockdev_bitmap_status(bd, target, 0, &len, &dirty, &err) == -ENOENT) {
        fail_with(r, &err);
        return;
    }
    size_t i;
    json_t *src;
    json_array_foreach(json_object_get(args, "bitmaps"), i, src) {
        if (merge_one(s, bd, target, src, r) < 0) {
            return;
        }
    }
}

json_t *qmp_dirty_bitmaps_info(struct blockdev *bd)
{
    struct blockdev_bitmap_info *list;
    int n;
    if (!bd || blockdev_bitmap_list(bd, &list, &n, NULL) < 0 || n == 0) {
        return NULL;
    }
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s,s:I,s:I,s:b,s:b,s:b}", "name", list[i].name, "count",
                              (json_int_t)list[i].count, "granularity",
                              (json_int_t)list[i].granularity, "recording", list[i].recording,
                              "busy", list[i].busy, "persistent", list[i].persistent);
        if (list[i].inconsistent) {
            json_object_set_new(o, "inconsistent", json_true());
        }
        json_array_append_new(a, o);
    }
    blockdev_bitmap_list_free(list, n);
    return a;
}
