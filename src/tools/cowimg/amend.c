/* cowimg amend: change qcow2 options of an existing image in place. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "cowimg.h"
#include "util/progress.h"

static const char *const create_only[] = {
    "cluster_size", "compression_type", "encryption", "extended_l2", "preallocation", NULL,
};

/* Parses -o into amend options; reports like qemu-img on failure. */
static int parse_amend(struct options *o, struct blockdev_amend_opts *a, uint64_t *size,
                       bool *size_given)
{
    struct error err = {0};
    a->version = 0;
    a->lazy_refcounts = -1;
    a->refcount_bits = 0;
    for (int i = 0; i < o->count; i++) {
        for (int j = 0; create_only[j]; j++) {
            if (!strcmp(o->items[i].key, create_only[j])) {
                report("Invalid parameter '%s'\nThis option is only supported for image "
                       "creation", create_only[j]);
                return -1;
            }
        }
    }
    const char *compat = options_get(o, "compat");
    if (compat) {
        if (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) {
            a->version = 2;
        } else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3")) {
            a->version = 3;
        } else {
            report("Unknown compatibility level %s", compat);
            return -1;
        }
    }
    bool lazy;
    if (options_get(o, "lazy_refcounts")) {
        if (options_get_bool(o, "lazy_refcounts", &lazy, &err) < 0) {
            report("%s", err.msg);
            return -1;
        }
        a->lazy_refcounts = lazy;
    }
    const char *rb = options_get(o, "refcount_bits");
    if (rb) {
        char *end;
        unsigned long v = strtoul(rb, &end, 0);
        if (*end || v == 0 || v > 64 || (v & (v - 1))) {
            report("Refcount width must be a power of two and may not exceed 64 bits");
            return -1;
        }
        a->refcount_bits = (int)v;
    }
    a->data_file = options_get(o, "data_file");
    bool raw;
    if (options_get(o, "data_file_raw")) {
        if (options_get_bool(o, "data_file_raw", &raw, &err) < 0) {
            report("%s", err.msg);
            return -1;
        }
        a->data_file_raw = raw ? 1 : -1;
    }
    *size_given = options_get(o, "size") != NULL;
    if (*size_given && options_get_size(o, "size", size, &err) < 0) {
        report("%s", err.msg);
        return -1;
    }
    options_get(o, "backing_file");
    options_get(o, "backing_fmt");
    if (options_check_unused(o, NULL, &err) < 0) {
        report("%s", err.msg);
        return -1;
    }
    return 0;
}

static bool str_eq_or_null(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void amend_progress(void *opaque, uint64_t done, uint64_t total)
{
    progress_set(opaque, done, total);
}

static int amend_image(struct blockdev *bd, struct options *o, struct progress *prog,
                       struct error *err)
{
    struct blockdev_amend_opts a = { .progress = amend_progress, .progress_opaque = prog };
    uint64_t size = 0;
    bool size_given;
    if (parse_amend(o, &a, &size, &size_given) < 0) {
        return -EINVAL;
    }
    /* Changing the backing file is rebase's job (it compares the data);
     * qemu-img accepts only the values the image already records. */
    const char *backing = options_get(o, "backing_file");
    const char *backing_fmt = options_get(o, "backing_fmt");
    if ((backing || backing_fmt) && (!str_eq_or_null(backing, blockdev_backing_filename(bd)) ||
                                     !str_eq_or_null(backing_fmt, blockdev_backing_format(bd)))) {
        report("Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.");
        return -EINVAL;
    }
    a.resize = size_given && size != blockdev_size(bd);
    a.size = size;
    int ret = 0;
    if (a.version || a.lazy_refcounts >= 0 || a.refcount_bits || a.resize || a.data_file ||
        a.data_file_raw) {
        ret = blockdev_amend(bd, &a, err);
    }
    if (ret < 0 && err->msg[0]) {
        report("%s", err->msg);
    }
    return ret;
}

int cmd_amend(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force", no_argument, NULL, OPT_FORCE },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback";
    struct options o = {0};
    struct error err = {0};
    bool quiet = false, show_progress = false, has_opts = false;
    int c, ret = EXIT_ERR;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (add_option_list(&o, optarg) < 0) {
                goto out;
            }
            has_opts = true;
            break;
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'p': show_progress = true; break;
        case 'q': quiet = true; break;
        case OPT_FORCE: break;
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
    if (quiet) {
        show_progress = false;
    }
    if (!has_opts) {
        usage_error("Must specify options (-o)");
    }
    bool help = false;
    for (int i = 0; i < o.count; i++) {
        help |= !strcmp(o.items[i].key, "help") || !strcmp(o.items[i].key, "?");
    }
    if (help && fmt) {
        ret = print_amend_options_help(fmt);
        goto out;
    }
    if (optind != argc - 1) {
        report("Expecting one image file name");
        goto out;
    }
    bool no_cache;
    if (parse_cache_mode(cache, &no_cache) < 0) {
        report("Invalid cache option: %s", cache);
        goto out;
    }
    struct blockdev *bd = image_open(argv[optind], fmt, no_cache ? BDEV_NO_CACHE : 0);
    if (!bd) {
        goto out;
    }
    if (help) {
        ret = print_amend_options_help(blockdev_format(bd));
    } else if (!(strcmp(blockdev_format(bd), "qcow2") == 0)) {
        report("Format driver '%s' does not support option amendment", blockdev_format(bd));
    } else {
        struct progress prog;
        progress_init(&prog, show_progress, 1);
        if (amend_image(bd, &o, &prog, &err) == 0) {
            ret = EXIT_OK;
        }
        progress_finish(&prog);
    }
    blockdev_close(bd);
out:
    options_free(&o);
    return ret;
}
