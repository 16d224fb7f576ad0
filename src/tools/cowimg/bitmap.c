/* cowimg bitmap: qemu-img bitmap's actions on an image's persistent dirty
 * bitmaps, applied in command line order; the image stores them on close. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cowimg.h"

enum {
    OPT_ADD = 512, OPT_REMOVE, OPT_CLEAR, OPT_ENABLE, OPT_DISABLE, OPT_MERGE,
};

struct bitmap_action {
    int act;
    const char *src;            /* --merge SOURCE */
};

struct bitmap_args {
    struct bitmap_action *acts;
    int n_acts;
    const char *fmt, *src_fmt, *src_file;
    int64_t granularity;
    bool add, merge;
};

static void parse_args(int argc, char **argv, struct bitmap_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "add", no_argument, NULL, OPT_ADD },
        { "remove", no_argument, NULL, OPT_REMOVE },
        { "clear", no_argument, NULL, OPT_CLEAR },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "disable", no_argument, NULL, OPT_DISABLE },
        { "merge", required_argument, NULL, OPT_MERGE },
        { "granularity", required_argument, NULL, 'g' },
        { "source-file", required_argument, NULL, 'b' },
        { "source-format", required_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 },
    };
    a->acts = calloc((size_t)argc, sizeof(*a->acts));
    int c;
    while ((c = getopt_long(argc, argv, ":b:f:F:g:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'b': a->src_file = optarg; break;
        case 'f': a->fmt = optarg; break;
        case 'F': a->src_fmt = optarg; break;
        case 'g':
            if (parse_size_arg("granularity", optarg, 0, INT64_MAX, &a->granularity) < 0) {
                exit(EXIT_ERR);
            }
            break;
        case OPT_ADD: case OPT_REMOVE: case OPT_CLEAR: case OPT_ENABLE: case OPT_DISABLE:
        case OPT_MERGE:
            a->acts[a->n_acts++] = (struct bitmap_action){ c, c == OPT_MERGE ? optarg : NULL };
            a->add |= c == OPT_ADD;
            a->merge |= c == OPT_MERGE;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        default: exit(common_option(c, argv));
        }
    }
}

/* qemu-img's checks, in its order; -1 after reporting. */
static int check_args(const struct bitmap_args *a, int argc)
{
    if (a->n_acts == 0) {
        report("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
    } else if (a->granularity && !a->add) {
        report("granularity only supported with --add");
    } else if (a->src_fmt && !a->src_file) {
        report("-F only supported with -b");
    } else if (a->src_file && !a->merge) {
        report("Merge bitmap source file only supported with --merge");
    } else if (optind != argc - 2) {
        report("Expecting filename and bitmap name");
    } else {
        return 0;
    }
    return -1;
}

static const char *action_name(int act)
{
    switch (act) {
    case OPT_ADD: return "add";
    case OPT_REMOVE: return "remove";
    case OPT_CLEAR: return "clear";
    case OPT_ENABLE: return "enable";
    case OPT_DISABLE: return "disable";
    default: return "merge";
    }
}

static int run_action(const struct bitmap_args *a, const struct bitmap_action *act,
                      struct blockdev *bd, struct blockdev *src, const char *name,
                      struct error *err)
{
    switch (act->act) {
    case OPT_ADD: {
        struct blockdev_bitmap_add_opts o = {
            .granularity = (uint32_t)a->granularity, .persistent = true,
        };
        if (a->granularity > UINT32_MAX) {
            return error_set(err, -EINVAL, "Granularity must be power of 2 and at least 512");
        }
        return blockdev_bitmap_add(bd, name, &o, err);
    }
    case OPT_REMOVE: return blockdev_bitmap_remove(bd, name, err);
    case OPT_CLEAR: return blockdev_bitmap_clear(bd, name, err);
    case OPT_ENABLE: return blockdev_bitmap_enable(bd, name, true, err);
    case OPT_DISABLE: return blockdev_bitmap_enable(bd, name, false, err);
    default: return blockdev_bitmap_merge(bd, name, src, act->src, err);
    }
}

int cmd_bitmap(int argc, char **argv)
{
    struct bitmap_args a = { 0 };
    parse_args(argc, argv, &a);
    int ret = EXIT_ERR;
    struct blockdev *bd = NULL, *src = NULL;
    if (check_args(&a, argc) < 0) {
        goto out;
    }
    const char *filename = argv[optind], *name = argv[optind + 1];
    /* Bitmaps do not depend on the image's contents: no backing chain. */
    bd = image_open(filename, a.fmt, BDEV_NO_BACKING);
    if (!bd) {
        goto out;
    }
    if (a.src_file) {
        bool opts = image_opts;
        image_opts = false;     /* like qemu-img, -b names a plain file */
        src = image_open(a.src_file, a.src_fmt, BDEV_READ_ONLY | BDEV_NO_BACKING);
        image_opts = opts;
        if (!src) {
            goto out;
        }
    }
    ret = EXIT_OK;
    for (int i = 0; i < a.n_acts && ret == EXIT_OK; i++) {
        struct error err = { 0 };
        if (run_action(&a, &a.acts[i], bd, src ? src : bd, name, &err) < 0) {
            report("Operation %s on bitmap %s failed: %s", action_name(a.acts[i].act), name,
                   err.msg);
            ret = EXIT_ERR;
        }
    }
out:
    blockdev_close(src);
    blockdev_close(bd);
    free(a.acts);
    return ret;
}
