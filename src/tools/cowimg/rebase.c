/* cowimg rebase: change an overlay's backing file; in safe mode first copy
 * into the overlay whatever the old and new backing files disagree on. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "block/rebase.h"
#include "cowimg.h"

struct rebase_args {
    const char *fmt, *backing, *backing_fmt, *cache, *src_cache;
    bool unsafe, quiet, show_progress, share;
};

static void parse_args(int argc, char **argv, struct rebase_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': a->fmt = optarg; break;
        case 'F': a->backing_fmt = optarg; break;
        case 'b': a->backing = optarg; break;
        case 'u': a->unsafe = true; break;
        case 'p': a->show_progress = true; break;
        case 't': a->cache = optarg; break;
        case 'T': a->src_cache = optarg; break;
        case 'q': a->quiet = true; break;
        case 'U': a->share = true; break;
        case 'h': print_help();
        case OPT_OBJECT:
            object_option(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default: bad_option(c, argv);
        }
    }
}

static struct blockdev *open_new_backing(struct blockdev *overlay, const struct rebase_args *a)
{
    /* The new name is relative to the overlay, as it will be stored. */
    char *path = blockdev_backing_path(blockdev_filename(overlay), a->backing);
    struct blockdev_open_opts opts = {
        .format = a->backing_fmt,
        .flags = BDEV_READ_ONLY | (a->share ? BDEV_FORCE_SHARE : 0),
    };
    struct blockdev *bd = NULL;
    struct error err = {0};
    if (blockdev_open(&bd, path, &opts, &err) < 0) {
        report("Could not open new backing file '%s': %s", a->backing, err.msg);
        bd = NULL;
    }
    free(path);
    return bd;
}

static int change_backing(struct blockdev *overlay, const struct rebase_args *a)
{
    const char *name = a->backing && *a->backing ? a->backing : NULL;
    struct error err = {0};
    if (name && !a->backing_fmt) {
        report("Could not change the backing file to '%s': backing format must be specified",
               name);
        return -1;
    }
    if (!(strcmp(blockdev_format(overlay), "qcow2") == 0)) {
        report("Could not change the backing file to '%s': Operation not supported",
               a->backing ? a->backing : "");
        return -1;
    }
    int ret = blockdev_change_backing_file(overlay, name, name ? a->backing_fmt : NULL, &err);
    if (ret == -ENOSPC) {
        report("Could not change the backing file to '%s': No space left in the file header",
               a->backing);
    } else if (ret < 0) {
        report("Could not change the backing file to '%s': %s", a->backing ? a->backing : "",
               err.msg);
    }
    return ret;
}

int cmd_rebase(int argc, char **argv)
{
    struct rebase_args a = { .cache = "writeback", .src_cache = "writeback" };
    parse_args(argc, argv, &a);
    if (a.quiet) {
        a.show_progress = false;
    }
    if (optind != argc - 1) {
        usage_error("Expecting one image file name");
    }
    if (!a.unsafe && !a.backing) {
        usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
    }
    bool no_cache, src_no_cache;
    if (parse_cache_mode(a.cache, &no_cache) < 0) {
        report("Invalid cache option: %s", a.cache);
        return EXIT_ERR;
    }
    if (parse_cache_mode(a.src_cache, &src_no_cache) < 0) {
        report("Invalid source cache option: %s", a.src_cache);
        return EXIT_ERR;
    }
    /* Unsafe mode must work when the old backing file is gone. */
    unsigned flags = (a.unsafe ? BDEV_NO_BACKING : 0) | (no_cache ? BDEV_NO_CACHE : 0);
    struct blockdev *overlay = image_open(argv[optind], a.fmt, flags);
    if (!overlay) {
        return EXIT_ERR;
    }
    int ret = -1;
    struct blockdev *new_backing = NULL;
    if (a.backing_fmt && !blockdev_qemu_driver_known(a.backing_fmt)) {
        report("Invalid format name: '%s'", a.backing_fmt);
        goto out;
    }
    if (!a.unsafe) {
        if (a.backing && *a.backing && !(new_backing = open_new_backing(overlay, &a))) {
            goto out;
        }
        struct progress prog;
        struct error err = {0};
        progress_init(&prog, a.show_progress, blockdev_size(overlay));
        ret = block_rebase_copy(overlay, new_backing, &prog, &err);
        progress_finish(&prog);
        if (ret < 0) {
            report("Error while writing to COW image: %s", err.msg);
            goto out;
        }
    }
    ret = change_backing(overlay, &a);
out:
    blockdev_close(new_backing);
    blockdev_close(overlay);
    return ret < 0 ? EXIT_ERR : EXIT_OK;
}
