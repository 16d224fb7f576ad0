#include "tools/cowio/image_opts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *layer_get(struct options *opts, const char *prefix, const char *key)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", prefix, key);
    return options_get(opts, full);
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

/* Options about the open as a whole (top layer). */
static int parse_top(struct open_request *req, struct cowio_open *o, struct error *err)
{
    struct options *opts = &req->opts;
    int force_share = -1, direct = -1, no_flush = -1, auto_ro = -1, ret;
    if ((ret = layer_bool(opts, "", "read-only", &req->read_only, err)) < 0 ||
        (ret = layer_bool(opts, "", "cache.direct", &direct, err)) < 0 ||
        (ret = layer_bool(opts, "", "cache.no-flush", &no_flush, err)) < 0 ||
        (ret = layer_bool(opts, "", "auto-read-only", &auto_ro, err)) < 0 ||
        (ret = layer_bool(opts, "", "force-share", &force_share, err)) < 0) {
        return ret;
    }
    if (req->read_only >= 0) {
        o->flags = req->read_only ? o->flags | BDEV_READ_ONLY : o->flags & ~BDEV_READ_ONLY;
    }
    if (direct >= 0) {
        o->flags = direct ? o->flags | BDEV_NO_CACHE : o->flags & ~BDEV_NO_CACHE;
    }
    if (no_flush >= 0) {
        o->no_flush = no_flush;
    }
    if (force_share > 0) {
        o->flags |= BDEV_FORCE_SHARE;
    }
    req->cache_opts = direct >= 0 || no_flush >= 0;
    return 0;
}

static bool is_protocol(const char *driver)
{
    return driver && (!strcmp(driver, "file") || !strcmp(driver, "host_device") ||
                      !strcmp(driver, "host_cdrom"));
}

/* A protocol layer at prefix: the file name and the options files take.
 * driver is NULL when not named (qemu then picks by the file name). */
static int parse_protocol(struct open_request *req, const char *prefix, const char *driver,
                          struct cowio_open *o, struct error *err)
{
    struct options *opts = &req->opts;
    req->protocol = dup_or_null(driver);
    const char *name = layer_get(opts, prefix, "filename");
    if (name) {
        req->name_copy = strdup(name);
        req->filename = req->name_copy;
    }
    const char *locking = layer_get(opts, prefix, "locking");
    layer_get(opts, prefix, "aio");
    if (locking && !strcmp(locking, "off")) {
        o->flags |= BDEV_NO_LOCK;
    } else if (locking && strcmp(locking, "on") && strcmp(locking, "auto")) {
        return error_set(err, -EINVAL, "Parameter 'locking' does not accept value '%s'", locking);
    }
    return 0;
}

int open_request_parse(struct open_request *req, const char *text, const char *implied_key,
                       struct cowio_open *o, struct error *err)
{
    struct options *opts = &req->opts;
    req->read_only = -1;
    int ret = options_parse(opts, text, implied_key, err);
    if (ret == 0) {
        ret = parse_top(req, o, err);
    }
    if (ret < 0) {
        return ret;
    }
    const char *prefix = "";
    const char *driver = layer_get(opts, prefix, "driver");
    if (driver && !strcmp(driver, "compress")) {
        o->compress = true;
        prefix = "file.";
        driver = layer_get(opts, prefix, "driver");
    }
    req->node_name[NODE_TOP] = dup_or_null(layer_get(opts, "", "node-name"));
    req->node_name[NODE_FILE] = dup_or_null(layer_get(opts, "", "file.node-name"));
    req->node_name[NODE_BACKING] = dup_or_null(layer_get(opts, "", "backing.node-name"));
    if (is_protocol(driver)) {
        req->format = strdup("raw");
        ret = parse_protocol(req, prefix, driver, o, err);
        return ret < 0 ? ret : options_check_unused(opts, "Block options", err);
    }
    req->format = dup_or_null(driver);
    ret = format_tuning_parse(opts, prefix, &req->tuning, err);
    if (ret < 0) {
        return ret;
    }
    char file_prefix[64];
    snprintf(file_prefix, sizeof(file_prefix), "%sfile.", prefix);
    const char *file_driver = layer_get(opts, prefix, "file.driver");
    const char *name = layer_get(opts, prefix, "file");
    if (file_driver || !name) {
        ret = parse_protocol(req, file_prefix, file_driver, o, err);
        if (ret < 0) {
            return ret;
        }
    } else {
        req->name_copy = strdup(name);
        req->filename = req->name_copy;
    }
    const char *backing = layer_get(opts, prefix, "backing");
    req->no_backing = backing && (!*backing || !strcmp(backing, "null"));
    req->backing_format = dup_or_null(layer_get(opts, prefix, "backing.driver"));
    return options_check_unused(opts, "Block options", err);
}

void open_request_free(struct open_request *req)
{
    free(req->name_copy);
    free(req->format);
    free(req->protocol);
    free(req->backing_format);
    for (int i = 0; i < NODE_LAYERS; i++) {
        free(req->node_name[i]);
    }
    options_free(&req->opts);
}

int open_request_check_protocol(const struct open_request *req, bool read_only,
                                struct error *err)
{
    if (!req->protocol || !req->filename) {
        return 0;
    }
    if (!is_protocol(req->protocol)) {
        return error_set(err, -ENOTSUP, "Unsupported protocol driver '%s'", req->protocol);
    }
    bool want_file = !strcmp(req->protocol, "file");
    /* Like qemu: open first (a directory fails read-write), then check the type. */
    int fd = open(req->filename, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not open '%s'", req->filename);
    }
    struct stat st;
    int ret = fstat(fd, &st) < 0 ? -errno : 0;
    close(fd);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not stat '%s'", req->filename);
    }
    if (want_file && !S_ISREG(st.st_mode)) {
        return error_set(err, -EINVAL, "'file' driver requires '%s' to be a regular file",
                         req->filename);
    }
    if (!want_file && !S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
        return error_set(err, -EINVAL, "'%s' driver requires '%s' to be either a character or "
                                       "block device", req->protocol, req->filename);
    }
    return 0;
}
