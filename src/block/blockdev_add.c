/* blockdev-add: QEMU's BlockdevOptions checked member by member in QAPI's
 * words, named children replaced by the options their nodes were added
 * with, then flattened to the dotted options every program's open path
 * takes (blockdev_open_spec). A child named by node name is opened again
 * over the same file (BDEV_REOPEN: this process's own lock is no
 * conflict); its node stays in the caller's table as the parent's child. */
#include "block/blockdev_add.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Members every driver takes (BlockdevOptionsBase). */
static const char *const base_members[] = {
    "driver", "node-name", "discard", "cache", "read-only", "auto-read-only", "force-share", "detect-zeroes", NULL,
};

/* Each driver's own members and the one it requires (NULL: none). */
struct driver_members {
    const char *driver;
    const char *required;
    const char *const *members;
};
static const char *const file_members[] = { "filename", "pr-manager", "locking", "aio", "aio-max-batch",
                                            "drop-cache", "x-check-cache-dropped", NULL };
static const char *const qcow2_members[] = { "file", "backing", "lazy-refcounts", "pass-discard-request",
                                             "pass-discard-snapshot", "pass-discard-other", "overlap-check",
                                             "cache-size", "l2-cache-size", "l2-cache-entry-size",
                                             "refcount-cache-size", "cache-clean-interval", "encrypt", "data-file",
                                             NULL };
static const char *const raw_members[] = { "file", "offset", "size", NULL };
static const char *const null_members[] = { "size", "latency-ns", "read-zeroes", NULL };
static const char *const nbd_members[] = { "server", "export", "tls-creds", "tls-hostname", "x-dirty-bitmap",
                                           "reconnect-delay", "open-timeout", NULL };
static const char *const blkdebug_members[] = { "image", "config", "align", "max-transfer", "opt-write-zero",
                                                "max-write-zero", "opt-discard", "max-discard", "inject-error",
                                                "set-state", "take-child-perms", "unshare-child-perms", NULL };
static const struct driver_members drivers[] = {
    { "file", "filename", file_members }, { "host_device", "filename", file_members },
    { "host_cdrom", "filename", file_members }, { "qcow2", "file", qcow2_members }, { "raw", "file", raw_members },
    { "null-co", NULL, null_members }, { "null-aio", NULL, null_members }, { "nbd", "server", nbd_members },
    { "blkdebug", "image", blkdebug_members },
};

int blockdev_node_name_check(const char *name, struct error *err)
{
    bool ok = isalpha((unsigned char)name[0]);
    for (const char *p = name + 1; ok && *p; p++) {
        ok = isalnum((unsigned char)*p) || strchr("-._", *p);
    }
    if (!ok) {
        return error_set(err, -EINVAL, "Invalid node-name: '%s'", name);
    }
    if (strlen(name) >= BLOCKDEV_NODE_NAME_MAX) {
        return error_set(err, -EINVAL, "Node name too long");
    }
    return 0;
}

static bool listed(const char *const *list, const char *key)
{
    for (; *list; list++) {
        if (!strcmp(*list, key)) {
            return true;
        }
    }
    return false;
}

static const struct driver_members *driver_of(const char *name)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        if (!strcmp(drivers[i].driver, name)) {
            return &drivers[i];
        }
    }
    return NULL;
}

static int check_enum(json_t *obj, const char *prefix, const char *key, const char *const *values, struct error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        return 0;
    }
    if (!json_is_string(v)) {
        return error_set(err, -EINVAL, "Invalid parameter type for '%s%s', expected: string", prefix, key);
    }
    for (; *values; values++) {
        if (!strcmp(json_string_value(v), *values)) {
            return 0;
        }
    }
    return error_set(err, -EINVAL, "Parameter '%s%s' does not accept value '%s'", prefix, key, json_string_value(v));
}

static int check_bools(json_t *obj, const char *prefix, struct error *err)
{
    static const char *const keys[] = { "read-only", "auto-read-only", "force-share" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(obj, keys[i]);
        if (v && !json_is_boolean(v)) {
            return error_set(err, -EINVAL, "Invalid parameter type for '%s%s', expected: boolean", prefix, keys[i]);
        }
    }
    return 0;
}

static int check_node(json_t *obj, const char *prefix, struct error *err);

/* A BlockdevRef: a node name, or options of a node of its own. */
static int check_ref(json_t *obj, const char *prefix, const char *key, struct error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_string(v) || (json_is_null(v) && !strcmp(key, "backing"))) {
        return 0;
    }
    char nested[128];
    snprintf(nested, sizeof(nested), "%s%s.", prefix, key);
    if (!json_is_object(v)) {
        return error_set(err, -EINVAL, "Invalid parameter type for '%s%s', expected: %s", prefix, key,
                         strcmp(key, "backing") ? "BlockdevRef" : "BlockdevRefOrNull");
    }
    return check_node(v, nested, err);
}

/* The QAPI type of a member, as its type errors name it: integer unless listed. */
static const char *member_type(const char *key)
{
    static const struct {
        const char *type;
        const char *const keys[10];
    } types[] = {
        { "string", { "filename", "pr-manager", "locking", "aio", "export", "tls-creds", "tls-hostname",
                      "x-dirty-bitmap", "config", NULL } },
        { "boolean", { "lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other",
                       "drop-cache", "x-check-cache-dropped", "read-zeroes", NULL } },
        { "array", { "inject-error", "set-state", "take-child-perms", "unshare-child-perms", NULL } },
        { "object", { "cache", "server", "encrypt", NULL } },
        { "Qcow2OverlapChecks", { "overlap-check", NULL } },
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (listed(types[i].keys, key)) {
            return types[i].type;
        }
    }
    return "integer";
}

static int check_members(json_t *obj, const char *prefix, const struct driver_members *d, struct error *err)
{
    const char *required = d->required;
    if (required && !json_object_get(obj, required)) {
        return error_set(err, -EINVAL, "Parameter '%s%s' is missing", prefix, required);
    }
    static const char *const refs[] = { "file", "backing", "image" };
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        int ret = listed(d->members, refs[i]) ? check_ref(obj, prefix, refs[i], err) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!listed(base_members, key) && !listed(d->members, key)) {
            return error_set(err, -EINVAL, "Parameter '%s%s' is unexpected", prefix, key);
        }
        /* No member takes a real (a number past int64 comes as one): QAPI names the type it wanted. */
        if (json_is_real(v)) {
            return error_set(err, -EINVAL, "Invalid parameter type for '%s%s', expected: %s", prefix, key,
                             member_type(key));
        }
    }
    return 0;
}

/* QAPI's checks of one node's options, in the order QEMU reports them. */
static int check_node(json_t *obj, const char *prefix, struct error *err)
{
    static const char *const discard[] = { "ignore", "unmap", NULL };
    static const char *const zeroes[] = { "off", "on", "unmap", NULL };
    json_t *drv = json_object_get(obj, "driver");
    if (!drv) {
        return error_set(err, -EINVAL, "Parameter '%sdriver' is missing", prefix);
    }
    const char *name = json_string_value(drv);
    if (!name) {
        return error_set(err, -EINVAL, "Invalid parameter type for '%sdriver', expected: string", prefix);
    }
    const struct driver_members *d = driver_of(name);
    if (!d && !blockdev_qemu_driver_known(name)) {
        return error_set(err, -EINVAL, "Parameter '%sdriver' does not accept value '%s'", prefix, name);
    }
    if (!d) {
        return error_set(err, -ENOTSUP, "Driver '%s' is not supported by cowvisor's blockdev-add (file, host_device, "
                                        "host_cdrom, nbd, null-co, null-aio, blkdebug, raw, qcow2 are)", name);
    }
    json_t *node_name = json_object_get(obj, "node-name");
    if (node_name && !json_is_string(node_name)) {
        return error_set(err, -EINVAL, "Invalid parameter type for '%snode-name', expected: string", prefix);
    }
    int ret = check_enum(obj, prefix, "discard", discard, err);
    if (ret == 0) {
        ret = check_enum(obj, prefix, "detect-zeroes", zeroes, err);
    }
    if (ret == 0) {
        ret = check_bools(obj, prefix, err);
    }
    return ret < 0 ? ret : check_members(obj, prefix, d, err);
}

/* nbd's server (SocketAddress) and export as the URL the NBD client opens. */
static const char *server_member(json_t *server, const char *key, struct error *err)
{
    const char *v = json_string_value(json_object_get(server, key));
    if (!v) {
        error_set(err, -EINVAL, "Parameter 'server.%s' is missing", key);
    }
    return v;
}

static int nbd_url(json_t *obj, char *url, size_t size, struct error *err)
{
    json_t *server = json_object_get(obj, "server");
    const char *export = json_string_value(json_object_get(obj, "export"));
    export = export ? export : "";
    const char *type = server_member(server, "type", err), *path, *host, *port;
    if (!type) {
        return -EINVAL;
    }
    if (!strcmp(type, "unix")) {
        if (!(path = server_member(server, "path", err))) {
            return -EINVAL;
        }
        snprintf(url, size, "nbd+unix:///%s?socket=%s", export, path);
        return 0;
    }
    if (!strcmp(type, "inet")) {
        if (!(host = server_member(server, "host", err)) || !(port = server_member(server, "port", err))) {
            return -EINVAL;
        }
        snprintf(url, size, "nbd://%s:%s/%s", host, port, export);
        return 0;
    }
    if (!strcmp(type, "vsock") || !strcmp(type, "fd")) {
        return error_set(err, -ENOTSUP, "cowvisor's NBD client takes unix and inet servers, not %s", type);
    }
    /* QEMU names this member without its "server." prefix. */
    return error_set(err, -EINVAL, "Parameter 'type' does not accept value '%s'", type);
}

/* The members QMP has and the open path does not take: what they ask of
 * the node goes into out. */
static int take_qmp_members(json_t *obj, struct blockdev_added *out, struct error *err)
{
    const char *zeroes = json_string_value(json_object_get(obj, "detect-zeroes"));
    const char *discard = json_string_value(json_object_get(obj, "discard"));
    out->discard_unmap = discard && !strcmp(discard, "unmap");
    out->detect_zeroes = !zeroes || !strcmp(zeroes, "off") ? BDEV_DETECT_ZEROES_OFF
                         : !strcmp(zeroes, "on")           ? BDEV_DETECT_ZEROES_ON
                                                           : BDEV_DETECT_ZEROES_UNMAP;
    if (out->detect_zeroes == BDEV_DETECT_ZEROES_UNMAP && !out->discard_unmap) {
        return error_set(err, -EINVAL, "setting detect-zeroes to unmap is not allowed without setting discard "
                                       "operation to unmap");
    }
    json_t *cache = json_object_get(obj, "cache");
    out->direct = json_is_true(json_object_get(cache, "direct"));
    out->no_flush = json_is_true(json_object_get(cache, "no-flush"));
    out->read_only = json_is_true(json_object_get(obj, "read-only"));
    json_object_del(obj, "detect-zeroes");
    json_object_del(obj, "discard");
    return 0;
}

/* Replaces a child given by node name with that node's options, and the
 * children that node names itself with theirs, down to its protocol node
 * (a node names only nodes added before it: no cycle). Its "backing" by
 * name goes: it is its image's own, checked when it was added. */
static int resolve_child(json_t *obj, const char *key, const struct blockdev_add_children *c, char *name_out,
                         struct error *err)
{
    const char *name = json_string_value(json_object_get(obj, key));
    if (!name) {
        return 0;
    }
    json_t *opts = c->options_of(c->opaque, name);
    if (!opts) {
        return error_set(err, -ENOENT, "Cannot find device='%s' nor node-name='%s'", name, name);
    }
    snprintf(name_out, BLOCKDEV_NODE_NAME_MAX, "%s", name);
    json_t *copy = json_deep_copy(opts);
    json_object_del(copy, "node-name");
    if (json_is_string(json_object_get(copy, "backing"))) {
        json_object_del(copy, "backing");
    }
    char inner[BLOCKDEV_NODE_NAME_MAX];
    int ret = resolve_child(copy, "file", c, inner, err);
    if (ret < 0) {
        json_decref(copy);
        return ret;
    }
    json_object_set_new(obj, key, copy);
    return 0;
}

/* nbd nodes (top or file child) become the URL their client opens. */
static int rewrite_nbd(json_t *obj, struct error *err)
{
    json_t *file = json_object_get(obj, "file");
    if (json_is_object(file)) {
        int ret = rewrite_nbd(file, err);
        if (ret < 0) {
            return ret;
        }
    }
    const char *drv = json_string_value(json_object_get(obj, "driver"));
    if (!drv || strcmp(drv, "nbd")) {
        return 0;
    }
    char url[1024];
    int ret = nbd_url(obj, url, sizeof(url), err);
    if (ret < 0) {
        return ret;
    }
    static const char *const gone[] = { "driver", "server", "export", "tls-creds", "tls-hostname",
                                        "reconnect-delay", "open-timeout", "x-dirty-bitmap" };
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        json_object_del(obj, gone[i]);
    }
    json_object_set_new(obj, "filename", json_string(url));
    return 0;
}

/* The "backing" node named must be the file the image's chain opens: the
 * library opens backing chains from the image's header. */
static int check_backing(const struct blockdev_add_children *c, struct blockdev_added *out, struct error *err)
{
    struct blockdev *want = c->image_of(c->opaque, out->backing_child);
    struct blockdev *got = blockdev_backing(out->bd);
    if (want && got && blockdev_same_file(want, got)) {
        return 0;
    }
    return error_set(err, -ENOTSUP, "cowvisor takes a backing node only when it is the image's own backing file "
                                    "('%s' is not)", out->backing_child);
}

/* obj as resolved (an nbd top node is its URL in "filename" by now). */
static int open_resolved(json_t *obj, struct blockdev_added *out, struct error *err)
{
    char *text = json_dumps(obj, JSON_COMPACT), *options = NULL;
    int ret = text ? blockdev_json_to_options(text, &options, err) : error_set(err, -ENOMEM, "Out of memory");
    free(text);
    if (ret == 0 && !strcmp(out->driver, "nbd")) {
        /* A protocol node alone: its URL, raw over it. */
        struct blockdev_open_opts o = { .format = "raw", .flags = out->read_only ? BDEV_READ_ONLY : 0 };
        ret = blockdev_open(&out->bd, json_string_value(json_object_get(obj, "filename")), &o, err);
    } else if (ret == 0) {
        unsigned flags = out->file_child[0] || out->backing_child[0] ? BDEV_REOPEN : 0;
        struct blockdev_open_opts o = { .flags = flags };
        ret = blockdev_open_spec(&out->bd, NULL, options, &o, err);
    }
    free(options);
    return ret;
}

int blockdev_add_open(json_t *args, const struct blockdev_add_children *children, struct blockdev_added *out,
                      struct error *err)
{
    memset(out, 0, sizeof(*out));
    int ret = check_node(args, "", err);
    if (ret < 0) {
        return ret;
    }
    const char *node_name = json_string_value(json_object_get(args, "node-name"));
    if (!node_name) {
        return error_set(err, -EINVAL, "'node-name' must be specified for the root node");
    }
    if ((ret = blockdev_node_name_check(node_name, err)) < 0) {
        return ret;
    }
    snprintf(out->driver, sizeof(out->driver), "%s", json_string_value(json_object_get(args, "driver")));
    json_t *obj = json_deep_copy(args);
    json_object_del(obj, "node-name");
    if ((ret = take_qmp_members(obj, out, err)) == 0 &&
        (ret = resolve_child(obj, "file", children, out->file_child, err)) == 0 &&
        (ret = resolve_child(obj, "backing", children, out->backing_child, err)) == 0) {
        if (out->backing_child[0]) {
            json_object_del(obj, "backing");
        }
        ret = rewrite_nbd(obj, err);
    }
    if (ret == 0) {
        ret = open_resolved(obj, out, err);
    }
    if (ret == 0 && out->backing_child[0] && (ret = check_backing(children, out, err)) < 0) {
        blockdev_close(out->bd);
        out->bd = NULL;
    }
    if (ret == 0) {
        blockdev_set_write_options(out->bd, out->detect_zeroes, !out->discard_unmap);
    }
    json_decref(obj);
    return ret;
}
