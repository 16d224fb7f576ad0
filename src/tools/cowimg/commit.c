/* cowimg commit: write an overlay's changes into its backing file. */
#include <errno.h>
#include <getopt.h>

#include "block/commit.h"
#include "cowimg.h"

int cmd_commit(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback", *base_name = NULL;
    bool quiet = false, drop = false, show_progress = false;
    int c;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'b': base_name = optarg; drop = true; break;    /* -b implies -d */
        case 'd': drop = true; break;
        case 'p': show_progress = true; break;
        case 'q': quiet = true; break;
        case 'r': break;    /* rate limit: accepted, not applied */
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        default: return common_option(c, argv);
        }
    }
    if (quiet) {
        show_progress = false;
    }
    if (optind != argc - 1) {
        usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    bool no_cache;
    if (parse_cache_mode(cache, &no_cache) < 0) {
        report("Invalid cache option: %s", cache);
        return EXIT_ERR;
    }
    struct blockdev *top = image_open(filename, fmt, no_cache ? BDEV_NO_CACHE : 0);
    if (!top) {
        return EXIT_ERR;
    }
    struct progress prog;
    progress_init(&prog, show_progress, blockdev_size(top));
    struct error err = {0};
    int ret = -1;
    const struct blockdev *base = blockdev_backing(top);
    int depth = 1;
    if (base_name) {
        base = block_chain_find(top, base_name, &depth);
        if (!base) {
            error_set(&err, -ENOENT, "Did not find '%s' in the backing chain of '%s'", base_name,
                      filename);
        }
    } else if (!base) {
        error_set(&err, -ENOENT, "Image does not have a backing file");
    }
    if (base) {
        ret = block_commit(top, base, &prog, &err);
        if (ret == 0 && !drop) {
            ret = blockdev_make_empty(top, &err);
            if (ret == -ENOTSUP) {
                ret = 0;    /* qemu-img too leaves images it cannot empty as they are */
            } else if (ret < 0) {
                /* qemu-img's words (bdrv_make_empty), which iotest 098 reads */
                error_set_errno(&err, ret, "Failed to empty %s", filename);
            }
        }
    }
    progress_finish(&prog);
    blockdev_close(top);
    if (ret < 0) {
        report("%s", err.msg);
        return EXIT_ERR;
    }
    qprintf(quiet, "Image committed.\n");
    return EXIT_OK;
}
