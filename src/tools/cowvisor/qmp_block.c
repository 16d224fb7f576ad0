/* Block queries: devices with their image chains (query-block), every
 * node (query-named-block-nodes), the guest's request counters
 * (query-blockstats) and block jobs, in QEMU 7.2's shapes; block_resize. A
 * machine disk is the device "diskN" (QEMU's -drive id=diskN) whose layers
 * are each a format node over a file node, named as QEMU names them
 * ("#blockNNN", qmp_disk_nodes.c). */
#include "qmp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "machine/block_nodes.h"

#define MAX_LAYERS 16
const struct qmp_arg qmp_named_block_nodes_args[] = { { "flat", JSON_TRUE, true }, { NULL, 0, false } };
const struct qmp_arg qmp_blockstats_args[] = { { "query-nodes", JSON_TRUE, true }, { NULL, 0, false } };

/* ImageInfo of layer l and, unless flat, its backing chain. */
static json_t *image_info(const struct disk_layer *l, int n, bool flat)
{
    json_t *img = json_pack("{s:I,s:s,s:s,s:b}", "virtual-size", (json_int_t)l->size, "filename", l->filename,
                            "format", l->format, "dirty-flag", 0);
    struct stat st;
    if (stat(l->filename, &st) == 0) {
        json_object_set_new(img, "actual-size", json_integer((json_int_t)st.st_blocks * 512));
    }
    if (l->cluster_size) {
        json_object_set_new(img, "cluster-size", json_integer(l->cluster_size));
    }
    char *specific = l->bd ? blockdev_format_specific_json(l->bd) : NULL;
    json_t *spec = specific ? json_loads(specific, 0, NULL) : NULL;
    if (spec) {
        json_object_set_new(img, "format-specific", json_pack("{s:s,s:o}", "type", l->format, "data", spec));
    }
    free(specific);
    if (l->backing_filename) {
        json_object_set_new(img, "backing-filename", json_string(l->backing_filename));
        if (n > 1) {
            json_object_set_new(img, "full-backing-filename", json_string(l[1].filename));
            json_object_set_new(img, "backing-filename-format", json_string(l[1].format));
            if (!flat) {
                json_object_set_new(img, "backing-image", image_info(l + 1, n - 1, false));
            }
        }
    }
    return img;
}

/* The node's detect-zeroes as QAPI names it (a file node without an image
 * of its own here: off). */
static const char *detect_zeroes_name(struct blockdev *bd)
{
    static const char *const names[] = { [BDEV_DETECT_ZEROES_OFF] = "off", [BDEV_DETECT_ZEROES_ON] = "on",
                                         [BDEV_DETECT_ZEROES_UNMAP] = "unmap" };
    return bd ? names[blockdev_detect_zeroes(bd)] : "off";
}

/* BlockDeviceInfo of one node: layer k of a chain of n layers. */
static json_t *device_info(const struct disk_layer *layers, int n, int k, const char *name, bool ro, bool flat)
{
    const struct disk_layer *l = &layers[k];
    /* QEMU counts the depth only where it lists the chain (not flat), and
     * names the backing node's file, not the name the header records. */
    json_t *o = json_pack("{s:s,s:s,s:b,s:s,s:i,s:b,s:s}", "file", l->filename, "node-name", name, "ro",
                          ro || k > 0, "drv", l->format, "backing_file_depth", flat ? 0 : n - k - 1, "encrypted",
                          0, "detect_zeroes", detect_zeroes_name(l->bd));
    if (l->backing_filename) {
        json_object_set_new(o, "backing_file", json_string(k + 1 < n ? layers[k + 1].filename : l->backing_filename));
    }
    /* No I/O throttling: QEMU reports the limits as 0. */
    static const char *const limits[] = { "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr" };
    for (size_t j = 0; j < sizeof(limits) / sizeof(limits[0]); j++) {
        json_object_set_new(o, limits[j], json_integer(0));
    }
    json_t *bitmaps = qmp_dirty_bitmaps_info(l->bd);
    if (bitmaps) {
        json_object_set_new(o, "dirty-bitmaps", bitmaps);
    }
    json_object_set_new(o, "image", image_info(l, n - k, flat));
    json_object_set_new(o, "write_threshold", json_integer(0));
    json_object_set_new(o, "cache", json_pack("{s:b,s:b,s:b}", "no-flush", 0, "direct", 0, "writeback", 1));
    return o;
}

static json_t *qdev_path(int disk)
{
    char path[64];
    snprintf(path, sizeof(path), "/machine/peripheral-anon/device[%d]/virtio-backend", disk);
    return json_string(path);
}

static json_t *node_info(const struct block_node *node, bool flat);

static json_t *backend_path(const char *device_path)
{
    char path[MACHINE_QOM_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/virtio-backend", device_path);
    return json_string(path);
}

/* device_add'ed disks: over a blockdev-add node, so no device name
 * ("device": ""), as QEMU lists them. */
static void append_hotplugged(struct qmp_server *s, json_t *list)
{
    struct machine_hotplugged_disk hot[QMP_MAX_HOTPLUGGED];
    int n = machine_hotplugged_disks(s->m, hot, QMP_MAX_HOTPLUGGED);
    for (int k = 0; k < n; k++) {
        const struct block_node *node = machine_block_node_find(s->m, hot[k].node);
        json_t *o = json_pack("{s:s,s:s,s:o,s:b,s:b,s:s}", "io-status", "ok", "device", "", "qdev",
                              backend_path(hot[k].path), "locked", 0, "removable", 0, "type", "unknown");
        if (node && node->node.bd) {
            json_object_set_new(o, "inserted", node_info(node, false));
        }
        json_array_append_new(list, o);
    }
}

void qmp_query_block(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < machine_disk_count(s->m); i++) {
        struct disk_layer layers[MAX_LAYERS];
        const struct disk_node_name *names[MAX_LAYERS];
        bool ro;
        int n = qmp_disk_layers(s, i, layers, names, MAX_LAYERS, &ro);
        if (n < 0) {
            continue;           /* ejected */
        }
        char name[16];
        snprintf(name, sizeof(name), "disk%d", i);
        json_t *o = json_pack("{s:s,s:s,s:o,s:b,s:b,s:s}", "io-status", "ok", "device", name, "qdev", qdev_path(i),
                              "locked", 0, "removable", 0, "type", "unknown");
        if (n > 0) {            /* none only when memory ran out in an image switch */
            json_object_set_new(o, "inserted", device_info(layers, n, 0, qmp_disk_node_name(names[0]), ro, false));
        }
        json_array_append_new(list, o);
    }
    append_hotplugged(s, list);
    r->ret = list;
}

/* The image chain of a blockdev-add node: its image, then the backing
 * layers it opened. */
static int node_layers(const struct block_node *node, struct disk_layer layers[MAX_LAYERS])
{
    int n = 0;
    for (struct blockdev *bd = node->node.bd; bd && n < MAX_LAYERS; bd = blockdev_backing(bd)) {
        layers[n++] = (struct disk_layer){ blockdev_filename(bd), blockdev_format(bd), blockdev_backing_filename(bd),
                                           blockdev_size(bd), blockdev_cluster_size(bd), bd };
    }
    return n;
}

static json_t *node_cache(const struct block_node *node)
{
    return json_pack("{s:b,s:b,s:b}", "no-flush", node->node.no_flush, "direct", node->node.direct, "writeback", 1);
}

/* BlockDeviceInfo of a blockdev-add node (with an image: not a backup's
 * target, whose image the job has). */
static json_t *node_info(const struct block_node *node, bool flat)
{
    struct disk_layer layers[MAX_LAYERS];
    int n = node_layers(node, layers);
    json_t *o = device_info(layers, n, 0, node->name, blockdev_is_read_only(node->node.bd), flat);
    /* A protocol node (file, nbd) is raw over its file here: QEMU names its driver. */
    json_object_set_new(o, "drv", json_string(node->node.driver));
    json_object_set_new(json_object_get(o, "image"), "format", json_string(node->node.driver));
    json_object_set_new(o, "cache", node_cache(node));
    return o;
}

/* A protocol node QEMU names itself ("#blockNNN"): the host file (or
 * export) of one of the node's images, its size the file's. */
static json_t *file_node_info(json_t *cache, const char *name, const char *driver, const char *filename, bool ro)
{
    struct stat st = { 0 };
    stat(filename, &st);
    /* QEMU counts a file's length in whole sectors. */
    uint64_t size = ((uint64_t)st.st_size + 511) & ~511ull;
    struct disk_layer l = { filename, driver, NULL, size, 0, NULL };
    json_t *o = device_info(&l, 1, 0, name, ro, true);
    json_object_set_new(o, "cache", cache);
    return o;
}

/* The protocol node of an inline "file" object. */
static json_t *implicit_file_info(const struct block_node *node)
{
    json_t *file = json_object_get(node->options, "file");
    const char *driver = json_string_value(json_object_get(file, "driver"));
    const char *filename = json_string_value(json_object_get(file, "filename"));
    return file_node_info(node_cache(node), node->implicit_file, driver ? driver : "file",
                          filename ? filename : blockdev_filename(node->node.bd),
                          blockdev_is_read_only(node->node.bd));
}

/* The backing layers the node's image opened, deepest first (QEMU's newest
 * first), each its format node then its file's node: read-only. */
static void append_backing_layers(const struct block_node *node, json_t *list, bool flat)
{
    struct disk_layer layers[MAX_LAYERS];
    int n = node_layers(node, layers);
    for (int k = node->backing_layers; k >= 1; k--) {
        if (k >= n) {
            continue;   /* the chain is shorter than when it was added */
        }
        json_t *o = device_info(layers, n, k, node->backing[k - 1].format, true, flat);
        json_object_set_new(o, "cache", node_cache(node));
        json_array_append_new(list, o);
        json_array_append_new(list, file_node_info(node_cache(node), node->backing[k - 1].file, "file",
                                                   layers[k].filename, true));
    }
}

/* blockdev-add's nodes, newest first as QEMU lists them: each node's
 * backing layers (opened after it), the node, then the file node it
 * created (made just before it). */
static void append_added_nodes(struct qmp_server *s, json_t *list, bool flat)
{
    struct block_node_table *t = machine_block_nodes(s->m);
    for (int i = t->count - 1; i >= 0; i--) {
        const struct block_node *node = t->nodes[i];
        if (!node->node.bd) {
            continue;           /* a backup's target: the job has its image */
        }
        append_backing_layers(node, list, flat);
        json_array_append_new(list, node_info(node, flat));
        if (node->implicit_file[0]) {
            json_array_append_new(list, implicit_file_info(node));
        }
    }
}

/* Every machine disk's layers, and the order QEMU opened their nodes in. */
struct disk_nodes {
    struct disk_layer layers[MACHINE_MAX_DISKS][MAX_LAYERS];
    const struct disk_node_name *names[MACHINE_MAX_DISKS][MAX_LAYERS];
    int n[MACHINE_MAX_DISKS];
    bool ro[MACHINE_MAX_DISKS];
    struct disk_node_at {
        int disk, k;
        unsigned seq;
    } order[MACHINE_MAX_DISKS * MAX_LAYERS];
    int count;
};

static int by_seq(const void *a, const void *b)
{
    unsigned x = ((const struct disk_node_at *)a)->seq, y = ((const struct disk_node_at *)b)->seq;
    return x < y ? -1 : x > y;
}

static void disk_nodes(struct qmp_server *s, struct disk_nodes *d)
{
    d->count = 0;
    for (int i = 0; i < machine_disk_count(s->m) && i < MACHINE_MAX_DISKS; i++) {
        d->n[i] = qmp_disk_layers(s, i, d->layers[i], d->names[i], MAX_LAYERS, &d->ro[i]);
        for (int k = 0; k < d->n[i]; k++) {
            if (d->names[i][k]) {
                d->order[d->count++] = (struct disk_node_at){ i, k, d->names[i][k]->seq };
            }
        }
    }
    qsort(d->order, (size_t)d->count, sizeof(d->order[0]), by_seq);
}

static json_t *default_cache(void)
{
    return json_pack("{s:b,s:b,s:b}", "no-flush", 0, "direct", 0, "writeback", 1);
}

void qmp_query_named_block_nodes(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_named_block_nodes_args, r)) {
        return;
    }
    bool flat = json_is_true(json_object_get(args, "flat"));
    json_t *list = json_array();
    append_added_nodes(s, list, flat);
    struct disk_nodes d;
    disk_nodes(s, &d);
    for (int j = d.count - 1; j >= 0; j--) {    /* newest first */
        int i = d.order[j].disk, k = d.order[j].k;
        bool ro = d.ro[i] || k > 0;
        json_array_append_new(list, device_info(d.layers[i], d.n[i], k, d.names[i][k]->format, ro, flat));
        json_array_append_new(list, file_node_info(default_cache(), d.names[i][k]->file, "file",
                                                   d.layers[i][k].filename, ro));
    }
    r->ret = list;
}

/* BlockDeviceStats: a device's counters (st), or a node's below or
 * without a device (st NULL): zeros, accounting off, as QEMU reports a
 * node without its BlockBackend. */
static json_t *stats_json(const struct machine_disk_stats *device, uint64_t wr_highest_offset)
{
    static const struct machine_disk_stats none = { .idle_ns = -1 };
    const struct machine_disk_stats *st = device ? device : &none;
    json_t *o = json_object();
    const struct {
        const char *key;
        uint64_t v;
    } counters[] = {
        { "rd_bytes", st->rd_bytes }, { "wr_bytes", st->wr_bytes }, { "unmap_bytes", 0 },
        { "rd_operations", st->rd_ops }, { "wr_operations", st->wr_ops },
        { "flush_operations", st->flush_ops }, { "unmap_operations", st->unmap_ops },
        { "rd_total_time_ns", st->rd_total_ns }, { "wr_total_time_ns", st->wr_total_ns },
        { "flush_total_time_ns", st->flush_total_ns }, { "unmap_total_time_ns", st->unmap_total_ns },
        { "wr_highest_offset", wr_highest_offset }, { "rd_merged", 0 }, { "wr_merged", 0 }, { "unmap_merged", 0 },
        { "failed_rd_operations", st->failed_rd_ops }, { "failed_wr_operations", st->failed_wr_ops },
        { "failed_flush_operations", st->failed_flush_ops }, { "failed_unmap_operations", st->failed_unmap_ops },
        { "invalid_rd_operations", 0 }, { "invalid_wr_operations", 0 }, { "invalid_flush_operations", 0 },
        { "invalid_unmap_operations", 0 },
    };
    for (size_t j = 0; j < sizeof(counters) / sizeof(counters[0]); j++) {
        json_object_set_new(o, counters[j].key, json_integer((json_int_t)counters[j].v));
    }
    if (st->idle_ns >= 0) {
        json_object_set_new(o, "idle_time_ns", json_integer(st->idle_ns));
    }
    json_object_set_new(o, "account_invalid", json_boolean(device != NULL));
    json_object_set_new(o, "account_failed", json_boolean(device != NULL));
    json_object_set_new(o, "timed_stats", json_array());
    return o;
}

/* The highest offset written to a machine disk's layer or node's image. */
static uint64_t wr_highest(const struct blockdev *bd)
{
    return bd ? blockdev_wr_highest_offset(bd) : 0;
}

/* BlockStats of a node without a device (no request counted there, as in
 * QEMU: zeros but the highest offset written to the node). A file node
 * (the host file under bd, the image stored in it) has file-posix's
 * discard counters too. */
static json_t *plain_node_stats(const char *name, const char *driver, const struct blockdev *bd)
{
    if (strcmp(driver, "file") && strcmp(driver, "host_device")) {
        return json_pack("{s:s,s:o}", "node-name", name, "stats", stats_json(NULL, wr_highest(bd)));
    }
    struct blockdev_file_stats d = { 0 };
    if (bd) {
        blockdev_file_stats(bd, &d);
    }
    return json_pack("{s:s,s:o,s:{s:s,s:I,s:I,s:I}}", "node-name", name,
                     "stats", stats_json(NULL, d.wr_highest_offset), "driver-specific", "driver", driver,
                     "discard-nb-ok", (json_int_t)d.nb_ok, "discard-nb-failed", (json_int_t)d.nb_failed,
                     "discard-bytes-ok", (json_int_t)d.bytes_ok);
}

static json_t *added_node_stats(struct block_node_table *t, const struct block_node *n);

/* BlockStats of the node a blockdev-add node stores its data in (QEMU's
 * "parent"): its inline file (named "#blockNNN") or the node it names as
 * "file"; NULL: none (a protocol node). */
static json_t *file_child_stats(struct block_node_table *t, const struct block_node *n)
{
    if (n->implicit_file[0]) {
        const char *driver = json_string_value(json_object_get(json_object_get(n->options, "file"), "driver"));
        return plain_node_stats(n->implicit_file, driver ? driver : "file", n->node.bd);
    }
    for (int i = 0; n->node.file_child[0] && i < t->count; i++) {
        if (!strcmp(t->nodes[i]->name, n->node.file_child)) {
            return added_node_stats(t, t->nodes[i]);
        }
    }
    return NULL;
}

/* A blockdev-add node's BlockStats at node level (query-nodes, and below a device). */
static json_t *added_node_stats(struct block_node_table *t, const struct block_node *n)
{
    json_t *o = plain_node_stats(n->name, n->node.driver, n->node.bd);
    json_t *parent = file_child_stats(t, n);
    if (parent) {
        json_object_set_new(o, "parent", parent);
    }
    return o;
}

/* Backing layer k (1: the nearest) of a node's image: its format node
 * with its file's node as "parent"; at device level (blk_level) the
 * layers below as "backing", as QEMU nests them. NULL: no such layer. */
static json_t *backing_layer_stats(const struct block_node *n, int k, bool blk_level)
{
    struct disk_layer layers[MAX_LAYERS];
    int count = node_layers(n, layers);
    if (k > n->backing_layers || k >= count) {
        return NULL;
    }
    json_t *o = plain_node_stats(n->backing[k - 1].format, layers[k].format, layers[k].bd);
    json_object_set_new(o, "parent", plain_node_stats(n->backing[k - 1].file, "file", layers[k].bd));
    json_t *below = blk_level ? backing_layer_stats(n, k + 1, true) : NULL;
    if (below) {
        json_object_set_new(o, "backing", below);
    }
    return o;
}

/* query-nodes: every blockdev-add node in the order QEMU made them (an
 * inline file just before its parent, the backing layers after it, each
 * layer's file before its format node). */
static void append_added_node_stats(struct qmp_server *s, json_t *list)
{
    struct block_node_table *t = machine_block_nodes(s->m);
    for (int i = 0; i < t->count; i++) {
        const struct block_node *n = t->nodes[i];
        json_t *node = added_node_stats(t, n);
        json_t *parent = json_object_get(node, "parent");
        if (n->implicit_file[0] && parent) {
            json_array_append(list, parent);
        }
        json_array_append_new(list, node);
        json_t *layer;
        for (int k = 1; (layer = backing_layer_stats(n, k, false)); k++) {
            json_array_append(list, json_object_get(layer, "parent"));
            json_array_append_new(list, layer);
        }
    }
}

/* Layer k of a machine disk: its format node's BlockStats (the device's
 * counters in st at the top of a device-level entry) with its file's node
 * as "parent"; at device level the layers below nested as "backing". */
static json_t *disk_layer_stats(const struct disk_nodes *d, int i, int k, const struct machine_disk_stats *st,
                                bool blk_level)
{
    const struct disk_layer *l = &d->layers[i][k];
    const struct disk_node_name *name = d->names[i][k];
    json_t *o = json_pack("{s:s,s:o}", "node-name", name ? name->format : "", "stats",
                          stats_json(st, wr_highest(l->bd)));
    json_object_set_new(o, "parent", plain_node_stats(name ? name->file : "", "file", l->bd));
    if (blk_level && k + 1 < d->n[i]) {
        json_object_set_new(o, "backing", disk_layer_stats(d, i, k + 1, NULL, true));
    }
    return o;
}

/* query-nodes: every machine disk's node in the order QEMU opened them
 * (a layer's file, then its format node), then blockdev-add's. */
static void append_disk_node_stats(const struct disk_nodes *d, json_t *list)
{
    for (int j = 0; j < d->count; j++) {
        json_t *o = disk_layer_stats(d, d->order[j].disk, d->order[j].k, NULL, false);
        json_array_append(list, json_object_get(o, "parent"));
        json_array_append_new(list, o);
    }
}

/* The guest's requests are counted per device: its entry has them; every
 * node with query-nodes reports zeros, as in QEMU (node level). */
void qmp_query_blockstats(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_blockstats_args, r)) {
        return;
    }
    bool nodes = json_is_true(json_object_get(args, "query-nodes"));
    json_t *list = json_array();
    struct disk_nodes d;
    disk_nodes(s, &d);
    if (nodes) {
        append_disk_node_stats(&d, list);
        append_added_node_stats(s, list);
        r->ret = list;
        return;
    }
    for (int i = 0; i < machine_disk_count(s->m) && i < MACHINE_MAX_DISKS; i++) {
        struct machine_disk_stats st = { .idle_ns = -1 };
        if (d.n[i] <= 0 || machine_disk_stats(s->m, i, &st) < 0) {
            continue;           /* ejected (or no image: memory ran out in a switch) */
        }
        json_t *o = disk_layer_stats(&d, i, 0, &st, true);
        char name[16];
        snprintf(name, sizeof(name), "disk%d", i);
        json_object_set_new(o, "device", json_string(name));
        json_object_set_new(o, "qdev", qdev_path(i));
        json_array_append_new(list, o);
    }
    struct machine_hotplugged_disk hot[QMP_MAX_HOTPLUGGED];
    int n = machine_hotplugged_disks(s->m, hot, QMP_MAX_HOTPLUGGED);
    for (int k = 0; k < n; k++) {
        const struct block_node *node = machine_block_node_find(s->m, hot[k].node);
        json_t *o = json_pack("{s:s,s:s,s:o,s:o}", "device", "", "node-name", hot[k].node, "qdev",
                              backend_path(hot[k].path), "stats",
                              stats_json(&hot[k].stats, wr_highest(node ? node->node.bd : NULL)));
        json_t *parent = node ? file_child_stats(machine_block_nodes(s->m), node) : NULL;
        if (parent) {
            json_object_set_new(o, "parent", parent);
        }
        json_t *backing = node ? backing_layer_stats(node, 1, true) : NULL;
        if (backing) {
            json_object_set_new(o, "backing", backing);
        }
        json_array_append_new(list, o);
    }
    r->ret = list;
}

const struct qmp_arg qmp_block_resize_args[] = {
    { "device", JSON_STRING, true }, { "node-name", JSON_STRING, true }, { "size", JSON_INTEGER, false },
    { NULL, 0, false },
};

/* block_resize: the image grows (or shrinks) and the guest's virtio-blk
 * driver learns the new capacity from a config-change interrupt. */
void qmp_block_resize(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_block_resize_args, r)) {
        return;
    }
    const char *dev = json_string_value(json_object_get(args, "device"));
    const char *node = json_string_value(json_object_get(args, "node-name"));
    json_int_t size = json_integer_value(json_object_get(args, "size"));
    if (size < 0) {
        qmp_fail(r, QMP_GENERIC, "Parameter 'size' expects a >0 size");
        return;
    }
    /* Backing nodes are read-only: only a disk's top node can be resized. */
    int depth = 0, node_depth = 0;
    int i = dev ? qmp_find_disk(s, dev) : node ? qmp_find_disk_node(s, node, &depth) : -1;
    if (i < 0 || depth > 0 || (dev && node && (qmp_find_disk_node(s, node, &node_depth) != i || node_depth > 0))) {
        qmp_fail(r, QMP_GENERIC, "Cannot find device=\"%s\" nor node-name=\"%s\"", dev ? dev : "", node ? node : "");
        return;
    }
    if (qmp_disk_has_block_job(s, i, r)) {
        return;
    }
    struct error err = { 0 };
    if (machine_disk_resize(s->m, i, (uint64_t)size, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}
