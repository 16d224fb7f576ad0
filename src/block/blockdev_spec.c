/* QEMU's ways of naming an image, shared by every program: a file name,
 * "json:{...}" (parsed with jansson, flattened to dotted keys) and option
 * strings (--image-opts, -o of qemu-io's open and reopen). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/blkdebug.h"
#include "block/block_int.h"
#include "block/blockdev.h"

/* QEMU's JSON parser takes 'single-quoted' strings too; jansson does not:
 * rewrite them as double-quoted ones. */
static char *requote(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(2 * n + 1), *o = out;
    char quote = 0;
    for (const char *p = in; *p; p++) {
        char c = *p;
        if (!quote) {
            if (c == '\'' || c == '"') {
                quote = c;
                *o++ = '"';
                continue;
            }
            *o++ = c;
            continue;
        }
        if (c == '\\' && p[1]) {
            if (p[1] == '\'' && quote == '\'') {
                *o++ = '\'';
            } else {
                *o++ = c;
                *o++ = p[1];
            }
            p++;
            continue;
        }
        if (c == quote) {
            quote = 0;
            *o++ = '"';
            continue;
        }
        if (c == '"') {
            *o++ = '\\';
        }
        *o++ = c;
    }
    *o = 0;
    return out;
}

/* A json: name in one line as QEMU prints names (", " and ": " between
 * items); NULL when it does not parse. */
static char *json_name_normalized(const char *name)
{
    char *text = requote(name + 5);
    json_t *root = json_loads(text, 0, NULL);
    free(text);
    char *body = root ? json_dumps(root, 0) : NULL;
    json_decref(root);
    char *out = NULL;
    if (body && asprintf(&out, "json:%s", body) < 0) {
        out = NULL;
    }
    free(body);
    return out;
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == ',') {
            fputc(',', f);
        }
        fputc(*s, f);
    }
}

static int flatten_value(FILE *f, bool *first, const char *name, json_t *v);

/* Arrays flatten as QEMU's qdict_flatten does: list.0.key, list.1.key, ... */
static int flatten(FILE *f, bool *first, const char *prefix, json_t *obj)
{
    const char *key;
    json_t *v;
    if (json_is_array(obj)) {
        size_t i;
        json_array_foreach(obj, i, v) {
            char name[512];
            snprintf(name, sizeof(name), "%s%zu", prefix, i);
            int ret = flatten_value(f, first, name, v);
            if (ret < 0) {
                return ret;
            }
        }
        return 0;
    }
    json_object_foreach(obj, key, v) {
        char name[512];
        snprintf(name, sizeof(name), "%s%s", prefix, key);
        int ret = flatten_value(f, first, name, v);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int flatten_value(FILE *f, bool *first, const char *name, json_t *v)
{
    if (json_is_object(v) || json_is_array(v)) {
        char nested[520];
        snprintf(nested, sizeof(nested), "%s.", name);
        return flatten(f, first, nested, v);
    }
    fprintf(f, "%s%s=", *first ? "" : ",", name);
    *first = false;
    if (json_is_string(v)) {
        put_escaped(f, json_string_value(v));
    } else if (json_is_true(v)) {
        fputs("on", f);
    } else if (json_is_false(v)) {
        fputs("off", f);
    } else if (json_is_null(v)) {
        fputs("null", f);
    } else if (json_is_integer(v)) {
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else {
        fprintf(f, "%.17g", json_real_value(v));
    }
    return 0;
}

int blockdev_json_to_options(const char *json, char **out, struct error *err)
{
    char *text = requote(json);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return error_set(err, -EINVAL, "Could not parse the JSON options: %s", json);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bool first = true;
    int ret = flatten(f, &first, "", root);
    fclose(f);
    json_decref(root);
    if (ret < 0) {
        free(buf);
        return error_set(err, ret, "Could not flatten the JSON options: %s", json);
    }
    *out = buf;
    return 0;
}

static const char *layer_get(struct options *opts, const char *prefix, const char *key)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", prefix, key);
    return options_get(opts, full);
}

static bool is_format_driver(const char *driver)
{
    return !strcmp(driver, "qcow2") || !strcmp(driver, "raw");
}

/* The options under prefix, without it, as an option string (commas in
 * values doubled); they count as used here. */
static char *layer_options(struct options *opts, const char *prefix)
{
    size_t plen = strlen(prefix), cap = 1, n = 0;
    char *out = calloc(1, cap);
    for (int i = 0; i < opts->count; i++) {
        struct option_pair *p = &opts->items[i];
        if (strncmp(p->key, prefix, plen) != 0) {
            continue;
        }
        p->used = true;
        const char *v = p->value ? p->value : "";
        cap += strlen(p->key) + 2 * strlen(v) + 3;
        out = realloc(out, cap);
        n += (size_t)sprintf(out + n, "%s%s=", n ? "," : "", p->key + plen);
        for (; *v; v++) {
            out[n++] = *v;
            if (*v == ',') {
                out[n++] = ',';
            }
        }
        out[n] = 0;
    }
    return out;
}

static int layer_bool(struct options *opts, const char *prefix, const char *key, int *out,
                      struct error *err)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", prefix, key);
    if (!options_get(opts, full)) {
        return 0;
    }
    bool v;
    int ret = options_get_bool(opts, full, &v, err);
    if (ret == 0) {
        *out = v;
    }
    return ret;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool is_null_co(const char *driver)
{
    return driver && (!strcmp(driver, "null-co") || !strcmp(driver, "null-aio"));
}

static bool is_protocol(const char *driver)
{
    return driver && (!strcmp(driver, "file") || !strcmp(driver, "host_device") ||
                      !strcmp(driver, "host_cdrom") || is_null_co(driver));
}

static int layer_size(struct options *opts, const char *prefix, const char *key, uint64_t *out,
                      bool *has, struct error *err)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", prefix, key);
    *has = options_get(opts, full) != NULL;
    return *has ? options_get_size(opts, full, out, err) : 0;
}

/* null-co's options: size, read-zeroes (latency-ns is accepted and ignored). */
static int parse_null_co(struct blockdev_spec *spec, const char *prefix, struct error *err)
{
    struct options *opts = &spec->opts;
    bool has;
    int zeroes = 0;
    int ret = layer_size(opts, prefix, "size", &spec->null_size, &has, err);
    if (ret == 0) {
        ret = layer_bool(opts, prefix, "read-zeroes", &zeroes, err);
    }
    layer_get(opts, prefix, "latency-ns");
    spec->null_read_zeroes = zeroes > 0;
    if (ret == 0 && !spec->filename) {
        spec->filename = strdup("null-co://");
    }
    return ret;
}

/* The raw format's window of its file: offset and size. */
static int parse_raw(struct blockdev_spec *spec, const char *prefix, struct error *err)
{
    bool has;
    int ret = layer_size(&spec->opts, prefix, "offset", &spec->raw_offset, &has, err);
    if (ret == 0) {
        ret = layer_size(&spec->opts, prefix, "size", &spec->raw_size, &spec->raw_has_size, err);
    }
    return ret;
}

void blockdev_spec_node_opts(const struct blockdev_spec *spec, struct blockdev_open_opts *o)
{
    if (is_null_co(spec->protocol)) {
        o->protocol_top = spec->protocol_top;
        o->protocol = spec->protocol;
        o->null_size = spec->null_size;
        o->null_read_zeroes = spec->null_read_zeroes;
    }
    o->raw_offset = spec->raw_offset;
    o->raw_size = spec->raw_size;
    o->raw_has_size = spec->raw_has_size;
    if (spec->data_file) {
        o->data_file = spec->data_file;
    }
}

/* The qcow2 data-file child: a host file named by data-file.filename
 * (data-file.driver=file or none). QEMU's bare data-file= names a node,
 * which a program here has none of. */
static int parse_data_file(struct blockdev_spec *spec, const char *prefix, struct error *err)
{
    struct options *opts = &spec->opts;
    const char *node = layer_get(opts, prefix, "data-file");
    if (node) {
        return error_set(err, -EINVAL, "Cannot find device='%s' nor node-name='%s'", node, node);
    }
    const char *driver = layer_get(opts, prefix, "data-file.driver");
    if (driver && strcmp(driver, "file") != 0) {
        return error_set(err, -ENOTSUP, "data-file.driver=%s is not supported (the data file "
                         "is a host file: data-file.driver=file)", driver);
    }
    const char *name = layer_get(opts, prefix, "data-file.filename");
    if (name) {
        free(spec->data_file);
        spec->data_file = strdup(name);
    }
    return 0;
}

static int parse_protocol(struct blockdev_spec *spec, const char *prefix, const char *driver,
                          struct error *err)
{
    struct options *opts = &spec->opts;
    spec->protocol = dup_or_null(driver);
    const char *name = layer_get(opts, prefix, "filename");
    if (name) {
        free(spec->filename);
        spec->filename = strdup(name);
    }
    if (is_null_co(driver)) {
        return parse_null_co(spec, prefix, err);
    }
    const char *locking = layer_get(opts, prefix, "locking");
    layer_get(opts, prefix, "aio");
    if (locking && !strcmp(locking, "off")) {
        spec->no_lock = true;
    } else if (locking && strcmp(locking, "on") && strcmp(locking, "auto")) {
        return error_set(err, -EINVAL, "Parameter 'locking' does not accept value '%s'", locking);
    }
    return 0;
}

/* Whether the blkdebug node at prefix has options beyond its config file
 * and image (rules, align...): QEMU can then name it only as json:{...}. */
static bool has_inline_rules(const struct options *opts, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < opts->count; i++) {
        const char *key = opts->items[i].key;
        if (strncmp(key, prefix, n) != 0) {
            continue;
        }
        key += n;
        if (strcmp(key, "driver") && strcmp(key, "config") && strcmp(key, "image") &&
            strncmp(key, "image.", 6)) {
            return true;
        }
    }
    return false;
}

static bool is_blkdebug_name(const char *filename)
{
    return filename && !strncmp(filename, "blkdebug:", 9);
}

/* A blkdebug:CONFIG:FILE name with options for its node (file.align=...,
 * file.inject-error.0.event=...): one blkdebug node takes both, as QEMU
 * merges the name's parts into the node's options. */
static int parse_blkdebug_name(struct blockdev_spec *spec, const char *file_prefix,
                               struct error *err)
{
    char *config;
    const char *file;
    int ret = blkdebug_split_name(spec->filename, &config, &file, err);
    if (ret < 0) {
        return ret;
    }
    blkdebug_free(spec->blkdebug);
    spec->blkdebug = NULL;
    ret = blkdebug_new(&spec->blkdebug, config, &spec->opts, file_prefix, err);
    free(config);
    char *image = strdup(file);
    free(spec->filename);
    spec->filename = image;
    return ret;
}

/* driver=blkdebug at the top, over a format node (image.driver=qcow2,
 * iotest 177): a raw pass-through over that node, whose protocol carries
 * the blkdebug rules and limits, as file.driver=blkdebug puts them over a
 * file. The image is named by blkdebug:CONFIG:FILE, image= or
 * image.file.filename. */
static int parse_blkdebug_filter(struct blockdev_spec *spec, struct error *err)
{
    struct options *opts = &spec->opts;
    const char *image_driver = layer_get(opts, "", "image.driver");
    if (!image_driver || !is_format_driver(image_driver)) {
        return error_set(err, -ENOTSUP, "driver=blkdebug at the top needs a format node under "
                         "it (image.driver=qcow2 or raw); over a file use file.driver=blkdebug");
    }
    char *config = NULL;
    const char *file = layer_get(opts, "", "image.file.filename");
    if (spec->filename && !strncmp(spec->filename, "blkdebug:", 9)) {
        const char *named;
        int ret = blkdebug_split_name(spec->filename, &config, &named, err);
        if (ret < 0) {
            return ret;
        }
        file = file ? file : named;
    }
    const char *config_opt = layer_get(opts, "", "config");
    char *name = dup_or_null(file);
    spec->child_options = layer_options(opts, "image.");
    if (name && !layer_get(opts, "image.", "file")) {
        char *with_file;
        if (asprintf(&with_file, "%s,file.filename=%s", spec->child_options, name) < 0) {
            free(config);
            free(name);
            return error_set(err, -ENOMEM, "Out of memory");
        }
        free(spec->child_options);
        spec->child_options = with_file;
    }
    free(spec->filename);
    spec->filename = name;
    spec->format = strdup("raw");
    spec->protocol = strdup(image_driver);
    blkdebug_free(spec->blkdebug);
    spec->blkdebug = NULL;
    int ret = blkdebug_new(&spec->blkdebug, config_opt ? config_opt : config, opts, "", err);
    spec->blkdebug_config = (config && *config) || config_opt;
    spec->blkdebug_inline = has_inline_rules(opts, "");
    free(config);
    return ret;
}

/* qcow2's metadata cache tuning (QEMU's l2-cache-size and kin): checked as
 * sizes, then unused, since our table caches size themselves. Scripts pass
 * them (iotest 061), and refusing them would refuse working commands. */
static int parse_qcow2_cache_tuning(struct options *opts, const char *prefix, struct error *err)
{
    static const char *const keys[] = {
        "l2-cache-size", "l2-cache-entry-size", "refcount-cache-size", "cache-size",
        "cache-clean-interval", NULL,
    };
    for (int i = 0; keys[i]; i++) {
        char key[96];
        uint64_t unused;
        snprintf(key, sizeof(key), "%s%s", prefix, keys[i]);
        int ret = options_get_size(opts, key, &unused, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* The size of qcow2's decompressed-cluster cache, a format node option. */
static int parse_compressed_cache(struct blockdev_spec *spec, const char *prefix,
                                  struct error *err)
{
    char key[64];
    snprintf(key, sizeof(key), "%scompressed-cache-size", prefix);
    spec->compressed_cache_set = options_get(&spec->opts, key) != NULL;
    return options_get_size(&spec->opts, key, &spec->compressed_cache_size, err);
}

void blockdev_spec_init(struct blockdev_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->read_only = spec->direct = spec->no_flush = spec->force_share = -1;
}

int blockdev_spec_parse_options(struct blockdev_spec *spec, const char *text,
                                const char *implied_key, struct error *err)
{
    struct options *opts = &spec->opts;
    int ret = options_parse(opts, text, implied_key, err);
    int auto_ro = -1;
    if (ret < 0 ||
        (ret = layer_bool(opts, "", "read-only", &spec->read_only, err)) < 0 ||
        (ret = layer_bool(opts, "", "cache.direct", &spec->direct, err)) < 0 ||
        (ret = layer_bool(opts, "", "cache.no-flush", &spec->no_flush, err)) < 0 ||
        (ret = layer_bool(opts, "", "auto-read-only", &auto_ro, err)) < 0 ||
        (ret = layer_bool(opts, "", "force-share", &spec->force_share, err)) < 0) {
        return ret;
    }
    const char *prefix = "";
    const char *driver = layer_get(opts, prefix, "driver");
    if (driver && !strcmp(driver, "compress")) {
        spec->compress = true;
        prefix = "file.";
        driver = layer_get(opts, prefix, "driver");
    }
    snprintf(spec->format_prefix, sizeof(spec->format_prefix), "%s", prefix);
    spec->node_name[BDEV_NODE_TOP] = dup_or_null(layer_get(opts, "", "node-name"));
    spec->node_name[BDEV_NODE_FILE] = dup_or_null(layer_get(opts, "", "file.node-name"));
    spec->node_name[BDEV_NODE_BACKING] = dup_or_null(layer_get(opts, "", "backing.node-name"));
    if (driver && !strcmp(driver, "blkdebug")) {
        return parse_blkdebug_filter(spec, err);
    }
    if (is_protocol(driver)) {
        spec->protocol_top = true;
        spec->format = strdup("raw");
        return parse_protocol(spec, prefix, driver, err);
    }
    spec->format = dup_or_null(driver);
    if ((ret = parse_compressed_cache(spec, prefix, err)) < 0) {
        return ret;
    }

    if (driver && !strcmp(driver, "raw") && (ret = parse_raw(spec, prefix, err)) < 0) {
        return ret;
    }
    char file_prefix[64];
    snprintf(file_prefix, sizeof(file_prefix), "%sfile.", prefix);
    const char *file_driver = layer_get(opts, prefix, "file.driver");
    const char *name = layer_get(opts, prefix, "file");
    if (file_driver && !strcmp(file_driver, "blkdebug")) {
        /* blkdebug over the file: rules from file.config and file.inject-error.N.*,
         * the file in file.image (a name) or file.image.filename. */
        const char *config = layer_get(opts, file_prefix, "config");
        const char *image = layer_get(opts, file_prefix, "image");
        char image_prefix[96];
        snprintf(image_prefix, sizeof(image_prefix), "%simage.", file_prefix);
        const char *image_driver = layer_get(opts, image_prefix, "driver");
        if (!image) {
            ret = parse_protocol(spec, image_prefix, image_driver, err);
            if (ret < 0) {
                return ret;
            }
        } else {
            free(spec->filename);
            spec->filename = strdup(image);
        }
        blkdebug_free(spec->blkdebug);
        spec->blkdebug = NULL;
        ret = blkdebug_new(&spec->blkdebug, config, opts, file_prefix, err);
        if (ret < 0) {
            return ret;
        }
        spec->blkdebug_config = config != NULL;
        spec->blkdebug_inline = has_inline_rules(opts, file_prefix);
    } else if (!file_driver && !name && is_blkdebug_name(spec->filename)) {
        ret = parse_blkdebug_name(spec, file_prefix, err);
        if (ret < 0) {
            return ret;
        }
    } else if (file_driver && is_format_driver(file_driver)) {
        /* A format node over another format node (qcow2 over qcow2): the
         * child is a spec of its own, opened first. */
        spec->child_options = layer_options(opts, file_prefix);
        spec->protocol = strdup(file_driver);   /* the child's driver (reopen compares it) */
        const char *inner = layer_get(opts, file_prefix, "file.filename");
        if (inner) {
            free(spec->filename);
            spec->filename = strdup(inner);
        }
    } else if (file_driver || !name) {
        ret = parse_protocol(spec, file_prefix, file_driver, err);
        if (ret < 0) {
            return ret;
        }
    } else {
        free(spec->filename);
        spec->filename = strdup(name);
    }
    const char *backing = layer_get(opts, prefix, "backing");
    spec->no_backing = backing && (!*backing || !strcmp(backing, "null"));
    spec->backing_format = dup_or_null(layer_get(opts, prefix, "backing.driver"));
    return parse_data_file(spec, prefix, err);
}

int blockdev_json_with_options(const char *name, const char *options, char **out,
                               struct error *err)
{
    char *json;
    int ret = blockdev_json_to_options(name + 5, &json, err);
    if (ret < 0 || !options) {
        *out = ret < 0 ? NULL : json;
        return ret;
    }
    /* Options given beside win over the json: ones, as in QEMU (iotest
     * 089): the last occurrence of a key counts. */
    ret = asprintf(out, "%s,%s", json, options) < 0 ? -ENOMEM : 0;
    free(json);
    return ret < 0 ? error_set(err, ret, "Out of memory") : 0;
}

int blockdev_spec_parse(struct blockdev_spec *spec, const char *name, const char *options,
                        struct error *err)
{
    blockdev_spec_init(spec);
    spec->filename = dup_or_null(name);
    char *json = NULL;
    int ret = 0;
    if (name && !strncmp(name, "json:", 5)) {
        ret = blockdev_json_with_options(name, options, &json, err);
        if (ret < 0) {
            return ret;
        }
        free(spec->filename);
        spec->filename = NULL;
        spec->json = true;
        options = json;
    }
    if (options) {
        ret = blockdev_spec_parse_options(spec, options, spec->filename ? NULL : "file", err);
    }
    free(json);
    if (ret == 0 && !spec->filename) {
        ret = error_set(err, -EINVAL, "A block device must be specified for \"file\"");
    }
    return ret;
}

void blockdev_spec_free(struct blockdev_spec *spec)
{
    free(spec->filename);
    free(spec->format);
    free(spec->protocol);
    free(spec->backing_format);
    free(spec->child_options);
    free(spec->data_file);
    blkdebug_free(spec->blkdebug);
    for (int i = 0; i < BDEV_NODE_LAYERS; i++) {
        free(spec->node_name[i]);
    }
    options_free(&spec->opts);
    memset(spec, 0, sizeof(*spec));
}

unsigned blockdev_spec_flags(const struct blockdev_spec *spec, unsigned flags)
{
    if (spec->read_only >= 0) {
        flags = spec->read_only ? flags | BDEV_READ_ONLY : flags & ~BDEV_READ_ONLY;
    }
    if (spec->direct >= 0) {
        flags = spec->direct ? flags | BDEV_NO_CACHE : flags & ~BDEV_NO_CACHE;
    }
    if (spec->no_flush > 0) {
        flags |= BDEV_NO_FLUSH;
    }
    if (spec->force_share > 0) {
        flags |= BDEV_FORCE_SHARE;
    }
    if (spec->no_lock) {
        flags |= BDEV_NO_LOCK;
    }
    if (spec->no_backing) {
        flags |= BDEV_NO_BACKING;
    }
    return flags;
}

int blockdev_spec_check_protocol(const struct blockdev_spec *spec, bool read_only,
                                 struct error *err)
{
    if (!spec->protocol || !spec->filename || is_null_co(spec->protocol) || spec->child_options) {
        return 0;
    }
    if (!is_protocol(spec->protocol)) {
        return error_set(err, -ENOTSUP, "Unsupported protocol driver '%s'", spec->protocol);
    }
    bool want_file = !strcmp(spec->protocol, "file");
    /* Like qemu: open first (a directory fails read-write), then check the type. */
    int fd = open(spec->filename, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not open '%s'", spec->filename);
    }
    struct stat st;
    int ret = fstat(fd, &st) < 0 ? -errno : 0;
    close(fd);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not stat '%s'", spec->filename);
    }
    if (want_file && !S_ISREG(st.st_mode)) {
        return error_set(err, -EINVAL, "'file' driver requires '%s' to be a regular file",
                         spec->filename);
    }
    if (!want_file && !S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
        return error_set(err, -EINVAL, "'%s' driver requires '%s' to be either a character or "
                                       "block device", spec->protocol, spec->filename);
    }
    return 0;
}

int blockdev_spec_open_child(struct blockdev_spec *spec, struct blockdev_open_opts *o,
                             struct error *err)
{
    if (!spec->child_options) {
        return 0;
    }
    /* With the parent's flags: QEMU's children inherit read-only and cache modes. */
    struct blockdev_open_opts child_opts = { .flags = o->flags & ~BDEV_NO_BACKING };
    int ret = blockdev_open_spec(&o->file_child, NULL, spec->child_options, &child_opts, err);
    if (ret == 0 && !spec->filename) {
        spec->filename = strdup(blockdev_filename(o->file_child));
    }
    return ret;
}

int blockdev_open_spec(struct blockdev **out, const char *name, const char *options,
                       const struct blockdev_open_opts *opts, struct error *err)
{
    struct blockdev_spec spec;
    int ret = blockdev_spec_parse(&spec, name, options, err);
    if (ret == 0 && !spec.protocol_top && (!spec.format || !strcmp(spec.format, "qcow2"))) {
        /* cowio checks these itself (format_opts.c); the other programs here. */
        ret = parse_qcow2_cache_tuning(&spec.opts, spec.format_prefix, err);
    }
    if (ret == 0) {
        ret = options_check_unused(&spec.opts, "Block options", err);
    }
    if (ret == 0 && spec.compress) {
        ret = error_set(err, -ENOTSUP, "The compress filter is not supported here");
    }
    struct blockdev_open_opts o = opts ? *opts : (struct blockdev_open_opts){ 0 };
    o.flags = blockdev_spec_flags(&spec, o.flags);
    if (spec.format) {
        o.format = spec.format;
    }
    if (spec.backing_format) {
        o.backing_format = spec.backing_format;
    }
    if (spec.compressed_cache_set) {
        o.compressed_cache_set = true;
        o.compressed_cache_size = spec.compressed_cache_size;
    }
    blockdev_spec_node_opts(&spec, &o);
    bool filtered = spec.blkdebug != NULL;
    if (spec.blkdebug) {
        blkdebug_free(o.blkdebug);
        o.blkdebug = spec.blkdebug;     /* blockdev_open takes it over */
        spec.blkdebug = NULL;
    }
    if (ret == 0) {
        ret = blockdev_spec_check_protocol(&spec, o.flags & BDEV_READ_ONLY, err);
    }
    if (ret == 0) {
        ret = blockdev_spec_open_child(&spec, &o, err);
    }
    if (ret == 0) {
        ret = blockdev_open(out, spec.filename, &o, err);
    } else {
        blkdebug_free(o.blkdebug);
    }
    if (ret == 0 && filtered && !spec.blkdebug_config && !spec.blkdebug_inline &&
        !(*out)->exact_name) {
        ret = asprintf(&(*out)->exact_name, "blkdebug::%s", spec.filename) < 0 ? -ENOMEM : 0;
    } else if (ret == 0 && spec.blkdebug_inline && name && !strncmp(name, "json:", 5) &&
               !(*out)->exact_name) {
        (*out)->exact_name = json_name_normalized(name);
    }
    blockdev_spec_free(&spec);
    return ret;
}
