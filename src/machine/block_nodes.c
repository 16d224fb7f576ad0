/* The table of named block nodes (block_nodes.h). A node's users are
 * counted where QEMU counts them, so blockdev-del refuses with QEMU's
 * words: a device ("Node x is in use"), a node using it as its backing
 * child (the op blocker's "is busy"), a job or a parent through "file"
 * (a reference more: "Block device x is in use"). */
#include "machine/block_nodes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_job.h"
#include "machine/image_swap.h"

struct block_node *machine_block_node_find(struct machine *m, const char *name)
{
    struct block_node_table *t = machine_block_nodes(m);
    for (int i = 0; t && i < t->count; i++) {
        if (!strcmp(t->nodes[i]->name, name)) {
            return t->nodes[i];
        }
    }
    return NULL;
}

static int find_index(struct block_node_table *t, const char *name)
{
    for (int i = 0; i < t->count; i++) {
        if (!strcmp(t->nodes[i]->name, name)) {
            return i;
        }
    }
    return -1;
}

static json_t *options_of(void *opaque, const char *name)
{
    struct block_node_table *t = opaque;
    int i = find_index(t, name);
    return i < 0 ? NULL : t->nodes[i]->options;
}

static struct blockdev *image_of(void *opaque, const char *name)
{
    struct block_node_table *t = opaque;
    int i = find_index(t, name);
    return i < 0 ? NULL : t->nodes[i]->node.bd;
}

/* The parent that uses name as its child (key "file" or "backing"), if any. */
static struct block_node *parent_of(struct block_node_table *t, const char *name, bool backing)
{
    for (int i = 0; i < t->count; i++) {
        const char *child = backing ? t->nodes[i]->node.backing_child : t->nodes[i]->node.file_child;
        if (!strcmp(child, name)) {
            return t->nodes[i];
        }
    }
    return NULL;
}

/* A parent that writes name as its file child: read-only parents share
 * writes, so any of several parents may be the writer. */
static const struct block_node *writable_file_parent(struct block_node_table *t, const char *name)
{
    for (int i = 0; i < t->count; i++) {
        if (!strcmp(t->nodes[i]->node.file_child, name) && !t->nodes[i]->node.read_only) {
            return t->nodes[i];
        }
    }
    return NULL;
}

int block_nodes_check_writer(struct block_node_table *t, const struct block_node *n, const char *user,
                             const char *role, struct error *err)
{
    const struct block_node *p = writable_file_parent(t, n->name);
    if (p) {
        return error_set(err, -EPERM, "Permission conflict on node '%s': permissions '%s' are both required by "
                         "node '%s' (uses node '%s' as 'file' child) and unshared by %s (uses node '%s' as '%s' "
                         "child).", n->name, strcmp(role, "file") ? "write" : "write, resize", p->name, n->name,
                         user, n->name, role);
    }
    if (n->device[0]) {
        return error_set(err, -EPERM, "Permission conflict on node '%s': permissions 'write' are both required by "
                         "block device '%s/virtio-backend' (uses node '%s' as 'root' child) "
                         "and unshared by %s (uses node '%s' as '%s' child).", n->name, n->device, n->name, user,
                         n->name, role);
    }
    return 0;
}

int block_nodes_check_backup_target(struct block_node_table *t, const struct block_node *n, struct error *err)
{
    const struct block_node *p = writable_file_parent(t, n->name);
    if (!p || strcmp(p->node.driver, "qcow2")) {
        return 0;       /* raw over a file shares resizing it */
    }
    /* QEMU names the job's filter node as it names every node it makes. */
    return error_set(err, -EPERM, "Could not create node: Permission conflict on node '%s': permissions 'resize' are "
                     "both required by node '%s' (uses node '%s' as 'file' child) and unshared by node '#block%03u' "
                     "(uses node '%s' as 'target' child).", n->name, p->name, n->name, t->implicit_names++, n->name);
}

/* A writable node over a named file child: nobody else may write that. */
static int check_file_child(struct block_node_table *t, json_t *args, const char *name, struct error *err)
{
    const char *file = json_string_value(json_object_get(args, "file"));
    int i = file ? find_index(t, file) : -1;
    if (i < 0 || json_is_true(json_object_get(args, "read-only"))) {
        return 0;
    }
    char user[BLOCKDEV_NODE_NAME_MAX + 16];
    snprintf(user, sizeof(user), "node '%s'", name);
    return block_nodes_check_writer(t, t->nodes[i], user, "file", err);
}

static void name_implicit(struct block_node_table *t, char name[BLOCKDEV_NODE_NAME_MAX])
{
    snprintf(name, BLOCKDEV_NODE_NAME_MAX, "#block%03u", t->implicit_names++);
}

/* The names QEMU gives the nodes a blockdev-add creates without one, in
 * the order it creates them: an inline "file" object's node, then for
 * each backing layer the image's header names (when "backing" is not
 * given) its file's node and its format node. */
static void name_implicit_nodes(struct block_node_table *t, struct block_node *n, json_t *args)
{
    json_t *file = json_object_get(args, "file");
    if (json_is_object(file) && !json_object_get(file, "node-name")) {
        name_implicit(t, n->implicit_file);
    }
    if (json_object_get(args, "backing")) {
        return;     /* a node named, or none (null) */
    }
    struct blockdev *bd = n->node.bd ? blockdev_backing(n->node.bd) : NULL;
    for (; bd && n->backing_layers < BLOCK_NODE_BACKING_MAX; bd = blockdev_backing(bd)) {
        struct block_node_layer_names *l = &n->backing[n->backing_layers++];
        name_implicit(t, l->file);
        name_implicit(t, l->format);
    }
}

int block_nodes_add(struct block_node_table *t, json_t *args, struct error *err)
{
    const char *name = json_string_value(json_object_get(args, "node-name"));
    if (name && find_index(t, name) >= 0) {
        return error_set(err, -EEXIST, "Duplicate nodes with node-name='%s'", name);
    }
    if (t->count == BLOCK_NODES_MAX) {
        return error_set(err, -ENOSPC, "Too many block nodes (cowvisor keeps %d)", BLOCK_NODES_MAX);
    }
    struct block_node *n = calloc(1, sizeof(*n));
    if (!n) {
        return error_set(err, -ENOMEM, "Out of memory");
    }
    struct blockdev_add_children children = { options_of, image_of, t };
    int ret = blockdev_add_open(args, &children, &n->node, err);
    if (ret == 0 && (ret = check_file_child(t, args, name, err)) < 0) {
        blockdev_close(n->node.bd);
    }
    if (ret < 0) {
        free(n);
        return ret;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    name_implicit_nodes(t, n, args);
    n->options = json_deep_copy(args);
    t->nodes[t->count++] = n;
    return 0;
}

struct blockdev *block_node_take_image(struct block_node *n)
{
    struct blockdev *bd = n->node.bd;
    n->node.bd = NULL;
    return bd;
}

int block_nodes_reopen(struct block_node_table *t, struct block_node *n, struct error *err)
{
    struct blockdev_add_children children = { options_of, image_of, t };
    struct blockdev_added again;
    int ret = blockdev_add_open(n->options, &children, &again, err);
    if (ret == 0) {
        n->node = again;
    }
    return ret;
}


static void node_free(struct block_node *n)
{
    blockdev_close(n->node.bd);
    json_decref(n->options);
    free(n);
}

int block_nodes_del(struct block_node_table *t, const char *name, struct error *err)
{
    int i = find_index(t, name);
    if (i < 0) {
        return error_set(err, -ENOENT, "Failed to find node with node-name='%s'", name);
    }
    struct block_node *n = t->nodes[i], *parent;
    if (n->device[0]) {
        return error_set(err, -EBUSY, "Node %s is in use", name);
    }
    if ((parent = parent_of(t, name, true))) {
        return error_set(err, -EBUSY, "Node '%s' is busy: node is used as backing hd of '%s'", name, parent->name);
    }
    if (n->job_target[0]) {
        return error_set(err, -EBUSY, "Node '%s' is busy: block device is in use by block job: %s", name,
                         n->job_target);
    }
    if (n->jobs || parent_of(t, name, false)) {
        return error_set(err, -EBUSY, "Block device %s is in use", name);
    }
    node_free(n);
    memmove(&t->nodes[i], &t->nodes[i + 1], (size_t)(t->count - i - 1) * sizeof(t->nodes[0]));
    t->count--;
    return 0;
}

void block_nodes_close_all(struct block_node_table *t)
{
    /* Parents were added after their children: newest first. */
    while (t->count > 0) {
        node_free(t->nodes[--t->count]);
    }
}

int block_node_attach(struct block_node_table *t, struct block_node *n, const char *device, struct error *err)
{
    if (n->device[0]) {
        return error_set(err, -EBUSY, "Node '%s' is already in use by '%s'", n->name, n->device);
    }
    char user[160];
    snprintf(user, sizeof(user), "block device '%s/virtio-backend'", device);
    int conflict = n->node.read_only ? 0 : block_nodes_check_writer(t, n, user, "root", err);
    if (conflict < 0) {
        return conflict;
    }
    snprintf(n->device, sizeof(n->device), "%s", device);
    return 0;
}

void block_node_detach(struct block_node *n)
{
    n->device[0] = 0;
    n->drain_begin = n->drain_end = NULL;
    n->drain_opaque = NULL;
}

static struct blockdev *job_top(void *opaque)
{
    struct block_node *n = opaque;
    return n->node.bd;
}

static void job_drain_begin(void *opaque)
{
    struct block_node *n = opaque;
    if (n->drain_begin) {
        n->drain_begin(n->drain_opaque);
    }
}

static void job_drain_end(void *opaque)
{
    struct block_node *n = opaque;
    if (n->drain_end) {
        n->drain_end(n->drain_opaque);
    }
}

/* After a job's switch the node's options describe its new image, so that
 * reopening the node (after a backup used it as its target) opens that
 * image: the members every driver takes kept, the format's own dropped, a
 * new file inline. Its chain comes from the image's header now: a
 * "backing" given by name no longer applies. */
static void record_image(struct block_node *n, const char *old_file)
{
    static const char *const kept[] = { "node-name", "discard", "cache", "read-only", "auto-read-only",
                                        "force-share", "detect-zeroes" };
    const char *file = blockdev_filename(n->node.bd);
    json_object_del(n->options, "backing");
    n->node.backing_child[0] = 0;
    if (!strcmp(file, old_file)) {
        return;         /* a stream's rewritten top: the same file */
    }
    json_t *opts = json_pack("{s:s,s:{s:s,s:s}}", "driver", blockdev_format(n->node.bd), "file", "driver", "file",
                             "filename", file);
    for (size_t i = 0; opts && i < sizeof(kept) / sizeof(kept[0]); i++) {
        json_t *v = json_object_get(n->options, kept[i]);
        if (v) {
            json_object_set(opts, kept[i], v);
        }
    }
    if (opts) {
        json_decref(n->options);
        n->options = opts;
        snprintf(n->node.driver, sizeof(n->node.driver), "%s", blockdev_format(n->node.bd));
        n->node.file_child[0] = 0;
    }
}

/* The node's image becomes filename (an active commit's base, a stream's
 * rewritten top); a device attached sees it through the node. */
static int job_replace(void *opaque, const char *filename, const char *format, struct error *err)
{
    struct block_node *n = opaque;
    unsigned flags = (blockdev_is_read_only(n->node.bd) ? BDEV_READ_ONLY : 0) |
                     (n->node.file_child[0] || n->node.backing_child[0] ? BDEV_REOPEN : 0);
    char *old_file = strdup(blockdev_filename(n->node.bd));
    if (!old_file) {
        return error_set(err, -ENOMEM, "Out of memory");
    }
    int ret = image_swap(&n->node.bd, filename, format, flags, err);
    if (ret == 0) {
        record_image(n, old_file);
    }
    free(old_file);
    return ret;
}

void block_node_job_host(struct block_node *n, struct block_job_host *out)
{
    *out = (struct block_job_host){ .top = job_top, .drain_begin = job_drain_begin, .drain_end = job_drain_end,
                                    .replace = job_replace, .opaque = n };
}
