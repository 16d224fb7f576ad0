/* cowimg dd: copy a byte range of an image into a new image, dd(1) style. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cowimg.h"

struct dd_args {
    const char *in, *out;
    int64_t bs, count, skip;
    bool has_count, has_skip;
};

static int parse_operand(struct dd_args *a, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        report("unrecognized operand %s", arg);
        return -1;
    }
    size_t klen = (size_t)(eq - arg);
    const char *v = eq + 1;
    if (klen == 2 && !strncmp(arg, "if", 2)) {
        a->in = v;
    } else if (klen == 2 && !strncmp(arg, "of", 2)) {
        a->out = v;
    } else if (klen == 2 && !strncmp(arg, "bs", 2)) {
        return parse_size_arg("bs", v, 1, INT_MAX, &a->bs);
    } else if (klen == 5 && !strncmp(arg, "count", 5)) {
        a->has_count = true;
        return parse_size_arg("count", v, 0, INT64_MAX, &a->count);
    } else if (klen == 4 && !strncmp(arg, "skip", 4)) {
        a->has_skip = true;
        return parse_size_arg("skip", v, 0, INT64_MAX, &a->skip);
    } else {
        report("unrecognized operand %s", arg);
        return -1;
    }
    return 0;
}

static int copy(struct blockdev *in, struct blockdev *out, int64_t pos, int64_t end, int64_t bs)
{
    uint8_t *buf = malloc((size_t)bs);
    struct error err = {0};
    int ret = 0;
    for (int64_t out_pos = 0; pos < end; ) {
        size_t n = (size_t)(end - pos < bs ? end - pos : bs);
        if (blockdev_pread(in, (uint64_t)pos, buf, n, &err) < 0) {
            report("error while reading from input image file: %s", err.msg);
            ret = -1;
            break;
        }
        if (blockdev_pwrite(out, (uint64_t)out_pos, buf, n, &err) < 0) {
            report("error while writing to output image file: %s", err.msg);
            ret = -1;
            break;
        }
        pos += (int64_t)n;
        out_pos += (int64_t)n;
    }
    free(buf);
    return ret;
}

int cmd_dd(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw";
    bool share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:U", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'U': share = true; break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        default: return common_option(c, argv);
        }
    }
    struct dd_args a = { .bs = 512 };
    for (int i = optind; i < argc; i++) {
        if (parse_operand(&a, argv[i]) < 0) {
            return EXIT_ERR;
        }
    }
    if (!a.in || !a.out) {
        report("Must specify both input and output files");
        return EXIT_ERR;
    }
    struct blockdev *in = image_open(a.in, fmt, BDEV_READ_ONLY | (share ? BDEV_FORCE_SHARE : 0));
    if (!in) {
        return EXIT_ERR;
    }
    int ret = EXIT_ERR;
    struct blockdev *out = NULL;
    if (!format_known(out_fmt)) {
        report("Unknown file format");
        goto done;
    }
    int64_t size = (int64_t)blockdev_size(in);
    if (a.has_count && a.count <= INT64_MAX / a.bs && a.count * a.bs < size) {
        size = a.count * a.bs;
    }
    /* As qemu-img: the copy starts at skip*bs and ends at count*bs. */
    bool skip_past_end = a.has_skip && (a.skip > INT64_MAX / a.bs || size < a.skip * a.bs);
    int64_t start = skip_past_end ? size : a.skip * a.bs;
    struct create_request req = {
        .filename = a.out, .format = out_fmt, .size = (uint64_t)(size - start),
        .size_given = true, .quiet = true,
    };
    if (image_create(&req) < 0) {
        goto done;
    }
    out = image_open(a.out, out_fmt, 0);
    if (!out) {
        goto done;
    }
    if (skip_past_end) {
        report("%s: cannot skip to specified offset", a.in);
    }
    if (copy(in, out, start, size, a.bs) == 0) {
        ret = EXIT_OK;
    }
done:
    blockdev_close(out);
    blockdev_close(in);
    return ret;
}
