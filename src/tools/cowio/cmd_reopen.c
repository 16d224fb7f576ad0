/* reopen: changes the open options of the image. A blockdev cannot change
 * its mode in place, so the image is closed and opened again; every option
 * is checked first, so a refused reopen leaves the image open as it was. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cowio/cowio.h"
#include "tools/cowio/image_opts.h"
#include "util/options.h"

static void reopen_help(void)
{
    printf("\n"
           " Changes the open options of an already opened image\n"
           "\n"
           " Example:\n"
           " 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image\n"
           "\n"
           " -r, -- Reopen the image read-only\n"
           " -w, -- Reopen the image read-write\n"
           " -c, -- Change the cache mode to the given value\n"
           " -o, -- Changes block driver options (cf. 'open' command)\n"
           "\n");
}

static int reopen_f(struct cowio *io, int argc, char **argv);
const struct cowio_cmd cowio_reopen_cmd = {
    .name = "reopen", .func = reopen_f, .argmin = 0, .argmax = -1,
    .args = "[(-r|-w)] [-c cache] [-o options]",
    .oneline = "reopens an image with new options", .help = reopen_help,
};

static bool differs(const char *wanted, const char *current)
{
    return wanted && (!current || strcmp(wanted, current) != 0);
}

/* Node names and drivers are fixed for the life of an open (qemu: "Cannot
 * change the option"); giving their current value is fine. */
static int check_unchangeable(struct cowio *io, const struct open_request *req,
                              struct error *err)
{
    struct open_request old = { 0 };
    struct cowio_open scratch = io->open;
    if (io->open_opts) {
        open_request_parse(&old, io->open_opts, NULL, &scratch, NULL);
    }
    int ret = 0;
    for (int i = 0; i < BDEV_NODE_LAYERS && ret == 0; i++) {
        if (differs(req->spec.node_name[i], old.spec.node_name[i])) {
            ret = error_set(err, -EINVAL, "Cannot change the option 'node-name'");
        }
    }
    struct blockdev *bd = io->bd;
    const char *backing = blockdev_backing(bd) ? blockdev_format(blockdev_backing(bd)) : NULL;
    if (ret == 0 && (differs(req->spec.format, blockdev_format(bd)) ||
                     differs(req->spec.protocol, old.spec.protocol ? old.spec.protocol : "file") ||
                     differs(req->spec.backing_format, backing))) {
        ret = error_set(err, -EINVAL, "Cannot change the option 'driver'");
    }
    open_request_free(&old);
    return ret;
}

static int check_request(struct cowio *io, const char *opts, bool has_rw, bool has_cache,
                         struct cowio_open *o, struct error *err)
{
    struct open_request req = { 0 };
    int ret = open_request_parse(&req, opts, NULL, o, err);
    if (ret == 0 && has_rw && req.spec.read_only >= 0) {
        ret = error_set(err, -EINVAL, "Cannot set both -r/-w and 'read-only'");
    }
    if (ret == 0 && has_cache && req.cache_opts) {
        ret = error_set(err, -EINVAL, "Cannot set both -c and the cache options");
    }
    if (ret == 0) {
        ret = check_unchangeable(io, &req, err);
    }
    if (ret == 0) {
        ret = format_tuning_check(&req.tuning, io->bd, err);
    }
    open_request_free(&req);
    return ret;
}

static void put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == ',') {
            fputc(',', out);
        }
        fputc(*s, out);
    }
}

static void put_pair(FILE *out, bool *first, const struct option_pair *p)
{
    if (!*first) {
        fputc(',', out);
    }
    *first = false;
    put_escaped(out, p->key);
    if (p->value) {
        fputc('=', out);
        put_escaped(out, p->value);
    }
}

/* Format tuning given to an earlier open or reopen does not carry over:
 * each reopen states the tuning it wants, as with qemu's qcow2. */
static bool is_tuning(const char *key)
{
    static const char *const names[] = {
        "lazy-refcounts", "pass-discard-", "discard-no-unref", "overlap-check", "cache-size",
        "l2-cache-", "refcount-cache-size", "cache-clean-interval", NULL,
    };
    for (const char *const *n = names; *n; n++) {
        if (!strncmp(key, *n, strlen(*n))) {
            return true;
        }
    }
    return false;
}

/* The old options with the new ones replacing those of the same name, each
 * key once (a long session of reopens must not pile up options). */
static char *merge_opts(const char *old, const char *new)
{
    struct options a = { 0 }, b = { 0 };
    if (old && options_parse(&a, old, NULL, NULL) < 0) {
        options_free(&a);
    }
    if (new && options_parse(&b, new, NULL, NULL) < 0) {
        options_free(&b);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    bool first = true;
    for (int i = 0; i < a.count; i++) {
        bool replaced = is_tuning(a.items[i].key);
        for (int j = 0; j < b.count && !replaced; j++) {
            replaced = !strcmp(a.items[i].key, b.items[j].key);
        }
        if (!replaced) {
            put_pair(out, &first, &a.items[i]);
        }
    }
    for (int j = 0; j < b.count; j++) {
        bool later = false;
        for (int k = j + 1; k < b.count && !later; k++) {
            later = !strcmp(b.items[j].key, b.items[k].key);
        }
        if (!later) {
            put_pair(out, &first, &b.items[j]);
        }
    }
    fclose(out);
    options_free(&a);
    options_free(&b);
    if (!*text) {
        free(text);
        return NULL;
    }
    return text;
}

/* Closes the image and opens it with the new settings (or, should that
 * fail, with the old ones again). */
static int reopen_image(struct cowio *io, struct cowio_open *o, const char *opts)
{
    char *filename = strdup(blockdev_filename(io->bd));
    char *format = strdup(blockdev_format(io->bd));
    struct cowio_open old = io->open;
    char *old_opts = io->open_opts ? strdup(io->open_opts) : NULL;
    char *merged = merge_opts(old_opts, opts);
    o->format = format;
    old.format = format;
    cowio_close_image(io);
    int ret = cowio_open_image(io, filename, o, merged) ? -EINVAL : 0;
    if (ret < 0) {
        cowio_open_image(io, filename, &old, old_opts);
    }
    io->open.format = NULL;     /* format is freed below; the blockdev knows its own */
    free(filename);
    free(format);
    free(old_opts);
    free(merged);
    return ret;
}

static int reopen_f(struct cowio *io, int argc, char **argv)
{
    struct cowio_open o = io->open;
    bool has_rw = false, has_cache = false;
    char *opts = NULL;
    int c, ret = 0;
    while ((c = getopt(argc, argv, "c:o:rw")) != -1) {
        switch (c) {
        case 'c':
            if (cowio_parse_cache_mode(optarg, &o) < 0) {
                cowio_error("Invalid cache option: %s", optarg);
                ret = -EINVAL;
                goto out;
            }
            has_cache = true;
            break;
        case 'o':
            cowio_append_opts(&opts, optarg);
            break;
        case 'r':
        case 'w':
            if (has_rw) {
                cowio_error("Only one -r/-w option may be given");
                ret = -EINVAL;
                goto out;
            }
            has_rw = true;
            o.flags = c == 'r' ? o.flags | BDEV_READ_ONLY : o.flags & ~BDEV_READ_ONLY;
            break;
        default:
            cowio_usage_of(&cowio_reopen_cmd);
            ret = -EINVAL;
            goto out;
        }
    }
    if (optind != argc) {
        cowio_usage_of(&cowio_reopen_cmd);
        ret = -EINVAL;
        goto out;
    }
    if (io->open.snapshot) {
        /* The temporary overlay is already unlinked: it cannot be opened again. */
        cowio_error("reopen is not supported in snapshot mode (-s)");
        ret = -ENOTSUP;
        goto out;
    }
    struct error err = { 0 };
    if (opts && check_request(io, opts, has_rw, has_cache, &o, &err) < 0) {
        cowio_error("%s", err.msg);
        ret = -EINVAL;
        goto out;
    }
    ret = reopen_image(io, &o, opts);
out:
    free(opts);
    return ret;
}
