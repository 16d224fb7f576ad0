/* Opening and closing images: the command line's file, the open and close
 * commands, cache modes, and --image-opts option strings. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cowio/cowio.h"
#include "tools/cowio/json_opts.h"
#include "util/options.h"

int cowio_parse_cache_mode(const char *mode, struct cowio_open *o)
{
    o->flags &= ~BDEV_NO_CACHE;
    o->no_flush = false;
    if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
        o->flags |= BDEV_NO_CACHE;
        o->writethrough = false;
    } else if (!strcmp(mode, "directsync")) {
        o->flags |= BDEV_NO_CACHE;
        o->writethrough = true;
    } else if (!strcmp(mode, "writeback")) {
        o->writethrough = false;
    } else if (!strcmp(mode, "unsafe")) {
        o->writethrough = false;
        o->no_flush = true;
    } else if (!strcmp(mode, "writethrough")) {
        o->writethrough = true;
    } else {
        return -EINVAL;
    }
    return 0;
}

static int bool_option(struct options *opts, const char *key, bool *out, struct error *err)
{
    if (!options_get(opts, key)) {
        return 0;
    }
    return options_get_bool(opts, key, out, err);
}

/* Runtime options of qemu's qcow2 driver that only tune its caches and
 * checks; the blockdev API has no knob for them, so they are accepted and
 * have no effect (lazy-refcounts included: the image header decides). */
static const char *const ignored_qcow2_opts[] = {
    "lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other",
    "discard-no-unref", "cache-size", "l2-cache-size", "l2-cache-entry-size",
    "refcount-cache-size", "cache-clean-interval", "overlap-check", NULL,
};

static void mark_ignored(struct options *opts, const char *prefix)
{
    for (int i = 0; i < opts->count; i++) {
        const char *key = opts->items[i].key;
        size_t n = strlen(prefix);
        if (strncmp(key, prefix, n) != 0) {
            continue;
        }
        for (const char *const *ig = ignored_qcow2_opts; *ig; ig++) {
            size_t m = strlen(*ig);
            if (!strncmp(key + n, *ig, m) && (key[n + m] == '\0' || key[n + m] == '.')) {
                opts->items[i].used = true;
            }
        }
    }
}

static const char *layer_get(struct options *opts, const char *prefix, const char *key)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", prefix, key);
    return options_get(opts, full);
}

/* The subset of qemu's block options cowio understands, as nested layers:
 * [driver=compress,file.]driver=FMT,file.filename=NAME (or file=NAME,
 * file.driver=file), driver=file,filename=NAME, plus read-only,
 * force-share, cache.direct, cache.no-flush at the top. */
static int apply_image_opts(const char *text, const char *implied_key, const char **filename,
                            char **format_out, char **filename_out, struct cowio_open *o,
                            struct error *err)
{
    struct options opts = { 0 };
    int ret = options_parse(&opts, text, implied_key, err);
    if (ret < 0) {
        goto out;
    }
    bool read_only = false, force_share = false, direct = false, no_flush = false;
    if ((ret = bool_option(&opts, "read-only", &read_only, err)) < 0 ||
        (ret = bool_option(&opts, "force-share", &force_share, err)) < 0 ||
        (ret = bool_option(&opts, "cache.direct", &direct, err)) < 0 ||
        (ret = bool_option(&opts, "cache.no-flush", &no_flush, err)) < 0) {
        goto out;
    }
    o->flags |= (read_only ? BDEV_READ_ONLY : 0) | (force_share ? BDEV_FORCE_SHARE : 0) |
                (direct ? BDEV_NO_CACHE : 0);
    o->no_flush |= no_flush;

    char prefix[64] = "";
    const char *driver = layer_get(&opts, prefix, "driver");
    if (driver && !strcmp(driver, "compress")) {
        o->compress = true;
        snprintf(prefix, sizeof(prefix), "file.");
        driver = layer_get(&opts, prefix, "driver");
    }
    const char *name;
    if (driver && (!strcmp(driver, "file") || !strcmp(driver, "host_device"))) {
        driver = "raw";
        name = layer_get(&opts, prefix, "filename");
    } else {
        mark_ignored(&opts, prefix);
        name = layer_get(&opts, prefix, "file.filename");
        if (!name) {
            name = layer_get(&opts, prefix, "file");
        }
        const char *file_driver = layer_get(&opts, prefix, "file.driver");
        if (file_driver && strcmp(file_driver, "file") != 0 &&
            strcmp(file_driver, "host_device") != 0) {
            ret = error_set(err, -ENOTSUP, "Unsupported protocol driver '%s'", file_driver);
            goto out;
        }
    }
    if (driver) {
        *format_out = strdup(driver);
    }
    if (name) {
        *filename_out = strdup(name);
        *filename = *filename_out;
    }
    ret = options_check_unused(&opts, "Block options", err);
out:
    options_free(&opts);
    return ret;
}

/* The block layer words open errors for qemu-img ("Could not open 'x': ..."
 * around format errors, "Could not open backing file 'b': ..."); qemu-io
 * shows the format's own words and an unnamed "Could not open backing file". */
static const char *qemu_io_open_message(struct error *err, const char *filename, int ret)
{
    char prefix[PATH_MAX + 32];
    snprintf(prefix, sizeof(prefix), "Could not open '%s': ", filename);
    const char *msg = err->msg;
    size_t n = strlen(prefix);
    if (!strncmp(msg, prefix, n) && strcmp(msg + n, strerror(-ret)) != 0) {
        msg += n;
    }
    static const char backing[] = "Could not open backing file '";
    if (!strncmp(msg, backing, sizeof(backing) - 1)) {
        const char *rest = strstr(msg, "': ");
        if (rest) {
            static char text[sizeof(err->msg) + 32];
            snprintf(text, sizeof(text), "Could not open backing file: %s", rest + 3);
            return text;
        }
    }
    return msg;
}

static void warn_probed_raw(const char *filename)
{
    fprintf(stderr,
            "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw images, "
            "write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the restrictions.\n",
            filename);
}

int cowio_open_image(struct cowio *io, const char *filename, const struct cowio_open *o,
                     const char *image_opts)
{
    if (io->bd) {
        cowio_error("file open already, try 'help close'");
        return 1;
    }
    struct cowio_open settings = *o;
    struct error err = { 0 };
    char *format = NULL, *name_copy = NULL;
    int ret = 0;
    const char *shown = filename;      /* errors name what the user typed */
    char *json_opts = NULL;
    if (filename && !strncmp(filename, "json:", 5)) {
        ret = json_to_options(filename + 5, &json_opts, &err);
        filename = NULL;
        if (ret == 0 && image_opts) {
            ret = error_set(&err, -EINVAL, "Cannot combine a json: file name with -o options");
        }
        image_opts = json_opts;
    }
    if (ret == 0 && image_opts) {
        ret = apply_image_opts(image_opts, filename ? NULL : "file", &filename, &format,
                               &name_copy, &settings, &err);
    }
    if (ret == 0 && !filename) {
        ret = error_set(&err, -EINVAL, "A block device must be specified for \"file\"");
    }
    if (ret == 0) {
        struct blockdev_open_opts bopts = {
            .format = format ? format : settings.format,
            .flags = settings.flags,
        };
        ret = blockdev_open(&io->bd, filename, &bopts, &err);
        if (ret == 0 && !bopts.format && !strcmp(blockdev_format(io->bd), "raw") &&
            !io->bd->read_only) {
            warn_probed_raw(filename);
        }
    }
    if (ret < 0) {
        io->bd = NULL;
        if (shown) {
            cowio_error("can't open device %s: %s", shown,
                        filename ? qemu_io_open_message(&err, filename, ret) : err.msg);
        } else {
            cowio_error("can't open: %s", err.msg);
        }
    } else {
        io->open = settings;
    }
    free(format);
    free(name_copy);
    free(json_opts);
    return ret < 0 ? 1 : 0;
}

void cowio_close_image(struct cowio *io)
{
    cowio_drain(io);
    blockdev_close(io->bd);
    io->bd = NULL;
}

static int close_f(struct cowio *io, int argc, char **argv)
{
    cowio_close_image(io);
    return 0;
}

static const struct cowio_cmd close_cmd = {
    .name = "close", .altname = "c", .func = close_f,
    .oneline = "close the current open file",
};

static void open_help(void)
{
    printf("\n"
           " opens a new file in the requested mode\n"
           "\n"
           " Example:\n"
           " 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n"
           "\n"
           " Opens a file for subsequent use by all of the other qemu-io commands.\n"
           " -r, -- open file read-only\n"
           " -s, -- use snapshot file\n"
           " -C, -- use copy-on-read\n"
           " -n, -- disable host cache, short for -t none\n"
           " -U, -- force shared permissions\n"
           " -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n"
           " -i, -- use AIO mode (threads, native or io_uring)\n"
           " -t, -- use the given cache mode for the image\n"
           " -d, -- use the given discard mode for the image\n"
           " -o, -- options to be given to the block driver"
           "\n");
}

static int open_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd open_cmd = {
    .name = "open", .altname = "o", .func = open_f, .argmin = 1, .argmax = -1, .global = true,
    .args = "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    .oneline = "open the file specified by path", .help = open_help,
};

/* Appends one -o string to the ones before (options merge like qemu's). */
static void append_opts(char **all, const char *more)
{
    if (!*all) {
        *all = strdup(more);
        return;
    }
    size_t n = strlen(*all) + strlen(more) + 2;
    char *joined = malloc(n);
    snprintf(joined, n, "%s,%s", *all, more);
    free(*all);
    *all = joined;
}

static int open_f(struct cowio *io, int argc, char **argv)
{
    struct cowio_open o = { .writethrough = true };
    char *opts = NULL;
    int c, ret = 0;
    while ((c = getopt(argc, argv, "snCro:ki:t:d:U")) != -1) {
        switch (c) {
        case 's':
            cowio_error("snapshot mode (-s) is not supported");
            ret = -EINVAL;
            goto out;
        case 'k':
        case 'i':
        case 'd':
            break;      /* aio and discard modes: nothing to choose */
        case 'n':
            o.flags |= BDEV_NO_CACHE;
            o.writethrough = false;
            break;
        case 'C': o.copy_on_read = true; break;
        case 'r': o.flags |= BDEV_READ_ONLY; break;
        case 'U': o.flags |= BDEV_FORCE_SHARE; break;
        case 't':
            if (cowio_parse_cache_mode(optarg, &o) < 0) {
                cowio_error("Invalid cache option: %s", optarg);
                ret = -EINVAL;
                goto out;
            }
            break;
        case 'o':
            if (io->image_opts) {
                printf("--image-opts and 'open -o' are mutually exclusive\n");
                ret = -EINVAL;
                goto out;
            }
            append_opts(&opts, optarg);
            break;
        default:
            cowio_usage_of(&open_cmd);
            ret = -EINVAL;
            goto out;
        }
    }
    if (io->image_opts && optind == argc - 1) {
        append_opts(&opts, argv[optind]);
        optind++;
    }
    if (optind == argc - 1) {
        ret = cowio_open_image(io, argv[optind], &o, opts) ? -EINVAL : 0;
    } else if (optind == argc) {
        ret = cowio_open_image(io, NULL, &o, opts) ? -EINVAL : 0;
    } else {
        cowio_usage_of(&open_cmd);
        ret = -EINVAL;
    }
out:
    free(opts);
    return ret;
}

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
static const struct cowio_cmd reopen_cmd = {
    .name = "reopen", .func = reopen_f, .argmin = 0, .argmax = -1,
    .args = "[(-r|-w)] [-c cache] [-o options]",
    .oneline = "reopens an image with new options", .help = reopen_help,
};

/* A blockdev cannot change its mode in place: reopen closes the image and
 * opens the same file again with the new settings. */
static int reopen_f(struct cowio *io, int argc, char **argv)
{
    struct cowio_open o = io->open;
    bool has_rw = false;
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
            break;
        case 'o':
            append_opts(&opts, optarg);
            break;
        case 'r':
        case 'w':
            if (has_rw) {
                cowio_error("Only one -r/-w option may be given");
                ret = -EINVAL;
                goto out;
            }
            has_rw = true;
            if (c == 'r') {
                o.flags |= BDEV_READ_ONLY;
            } else {
                o.flags &= ~BDEV_READ_ONLY;
            }
            break;
        default:
            cowio_usage_of(&reopen_cmd);
            ret = -EINVAL;
            goto out;
        }
    }
    if (optind != argc) {
        cowio_usage_of(&reopen_cmd);
        ret = -EINVAL;
        goto out;
    }
    char *filename = strdup(io->bd->filename);
    o.format = strdup(blockdev_format(io->bd));
    cowio_close_image(io);
    ret = cowio_open_image(io, filename, &o, opts) ? -EINVAL : 0;
    free((char *)o.format);
    io->open.format = NULL;
    free(filename);
out:
    free(opts);
    return ret;
}

const struct cowio_cmd *const cowio_file_cmds[] = { &open_cmd, &close_cmd, &reopen_cmd, NULL };
