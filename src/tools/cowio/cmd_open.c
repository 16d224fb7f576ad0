/* Opening and closing images: the command line's file, the open and close
 * commands, cache modes, and --image-opts option strings. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "tools/cowio/cowio.h"
#include "tools/cowio/image_opts.h"

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

/* Opens the image as asked: the backing file separately when its format is
 * overridden, the qcow2 tuning checked once the cluster size is known. */
static int open_requested(struct cowio *io, struct open_request *req, const char *format,
                          unsigned flags, struct error *err)
{
    int ret = blockdev_spec_check_protocol(&req->spec, flags & BDEV_READ_ONLY, err);
    if (ret < 0) {
        return ret;
    }
    struct blockdev_open_opts bopts = {
        .format = format,
        .flags = flags | (req->spec.no_backing ? BDEV_NO_BACKING : 0),
        .backing_format = req->spec.backing_format,
        .lazy_refcounts = req->tuning.lazy_refcounts,
        .overlap_checks_set = req->tuning.has_overlap,
        .overlap_checks = req->tuning.overlap_checks,
        .compressed_cache_set = req->spec.compressed_cache_set,
        .compressed_cache_size = req->spec.compressed_cache_size,
    };
    blockdev_spec_node_opts(&req->spec, &bopts);
    ret = blockdev_spec_open_child(&req->spec, &bopts, err);
    if (ret < 0) {
        return ret;
    }
    bopts.blkdebug = req->spec.blkdebug;     /* blockdev_open takes it over */
    req->spec.blkdebug = NULL;
    ret = blockdev_open(&io->bd, req->spec.filename, &bopts, err);
    if (ret == 0) {
        ret = format_tuning_check(&req->tuning, io->bd, err);
    }
    if (ret < 0 && io->bd) {
        blockdev_close(io->bd);
    }
    if (ret < 0) {
        io->bd = NULL;
    }
    return ret;
}

/* Snapshot mode (-s): writes go to a temporary qcow2 overlay on top of the
 * image, which is deleted as soon as it is open, so the image stays as it was. */
static int open_temporary_overlay(struct cowio *io, const char *filename, unsigned flags,
                                  struct error *err)
{
    char *base = realpath(filename, NULL);
    const char *dir = getenv("TMPDIR");
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/cowio-snapshot.XXXXXX", dir && *dir ? dir : "/var/tmp");
    int fd = base ? mkstemp(tmp) : -1;
    if (fd < 0) {
        int ret = -errno;
        free(base);
        return error_set_errno(err, ret, "Could not create a temporary overlay for '%s'", filename);
    }
    close(fd);
    struct blockdev_create_opts co;
    blockdev_create_opts_init(&co);
    co.size = blockdev_size(io->bd);
    co.backing_file = base;
    co.backing_format = blockdev_format(io->bd);
    int ret = blockdev_create(tmp, &co, err);
    free(base);
    blockdev_close(io->bd);
    io->bd = NULL;
    if (ret == 0) {
        /* The overlay is ours alone: -U applies to the image beneath. */
        struct blockdev_open_opts bopts = { .format = "qcow2",
                                            .flags = flags & ~(BDEV_READ_ONLY | BDEV_FORCE_SHARE) };
        ret = blockdev_open(&io->bd, tmp, &bopts, err);
    }
    unlink(tmp);
    return ret;
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
    struct open_request req = { .spec.filename = filename ? strdup(filename) : NULL };
    int ret = 0;
    char *json_opts = NULL;
    if (filename && !strncmp(filename, "json:", 5)) {
        ret = blockdev_json_with_options(filename, image_opts, &json_opts, &err);
        free(req.spec.filename);
        req.spec.filename = NULL;
        image_opts = json_opts;
    }
    if (ret == 0 && image_opts) {
        ret = open_request_parse(&req, image_opts, req.spec.filename ? NULL : "file", &settings, &err);
    }
    if (ret == 0 && !req.spec.filename) {
        ret = error_set(&err, -EINVAL, "A block device must be specified for \"file\"");
    }
    const char *format = req.spec.format ? req.spec.format : settings.format;
    if (ret == 0) {
        ret = open_requested(io, &req, format,
                             settings.flags | (settings.snapshot ? BDEV_READ_ONLY : 0), &err);
        if (ret == 0) {
            blockdev_warn_probed_raw(io->bd, req.spec.filename);
        }
        if (ret == 0 && settings.snapshot) {
            ret = open_temporary_overlay(io, req.spec.filename, settings.flags, &err);
        }
    }
    if (ret < 0) {
        /* errors name what the user typed */
        if (filename) {
            cowio_error("can't open device %s: %s", filename,
                        err.msg);
        } else {
            cowio_error("can't open: %s", err.msg);
        }
    } else {
        io->open = settings;
        free(io->open_opts);
        io->open_opts = image_opts ? strdup(image_opts) : NULL;
    }
    open_request_free(&req);
    free(json_opts);
    return ret < 0 ? 1 : 0;
}

void cowio_close_image(struct cowio *io)
{
    cowio_aio_join(io, true);
    cowio_drain(io);
    blockdev_close(io->bd);
    io->bd = NULL;
    free(io->open_opts);
    io->open_opts = NULL;
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

void cowio_append_opts(char **all, const char *more)
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
        case 's': o.snapshot = true; break;
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
            cowio_append_opts(&opts, optarg);
            break;
        default:
            cowio_usage_of(&open_cmd);
            ret = -EINVAL;
            goto out;
        }
    }
    if (io->image_opts && optind == argc - 1) {
        cowio_append_opts(&opts, argv[optind]);
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

const struct cowio_cmd *const cowio_file_cmds[] = { &open_cmd, &close_cmd, &cowio_reopen_cmd, NULL };
