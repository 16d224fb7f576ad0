/* cowimg resize: grow or shrink the virtual disk. */
#include <getopt.h>
#include <string.h>

#include "cowimg.h"
#include "util/size.h"

int cmd_resize(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "preallocation", required_argument, NULL, OPT_PREALLOCATION },
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    if (argc < 3) {
        usage_error("Not enough arguments");
    }
    /* The size goes last and may start with '-': keep it away from getopt. */
    const char *size_arg = argv[--argc];
    const char *fmt = NULL;
    bool quiet = false, shrink = false;
    enum blockdev_prealloc prealloc = PREALLOC_OFF;
    int c;
    while ((c = getopt_long(argc, argv, ":f:hq", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case OPT_SHRINK: shrink = true; break;
        case OPT_PREALLOCATION:
            if (blockdev_prealloc_parse(optarg, &prealloc) < 0) {
                report("Invalid preallocation mode '%s'", optarg);
                return EXIT_ERR;
            }
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        default: return common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        usage_error("Expecting image file name and size");
    }
    const char *filename = argv[optind];
    int sign = 0;
    if (size_arg[0] == '+' || size_arg[0] == '-') {
        sign = size_arg[0] == '+' ? 1 : -1;
        size_arg++;
    }
    uint64_t n;
    if (size_parse(size_arg, &n) < 0) {
        report("Parameter 'size' expects a non-negative number below 2^64\n"
               "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
               "and exabytes, respectively.");
        return EXIT_ERR;
    }
    struct blockdev *bd = image_open(filename, fmt, 0);
    if (!bd) {
        return EXIT_ERR;
    }
    int ret = EXIT_ERR;
    int64_t current = (int64_t)blockdev_size(bd);
    int64_t total = (int64_t)n;
    /* A size beyond int64 either way is what qemu-img calls not positive. */
    bool overflow = n > INT64_MAX || (sign && __builtin_add_overflow(current, sign * (int64_t)n,
                                                                    &total));
    struct error err = {0};
    if (overflow || total <= 0) {
        report("New image size must be positive");
    } else if (total <= current && prealloc != PREALLOC_OFF) {
        report("Preallocation can only be used for growing images");
    } else if (total < current && !shrink) {
        report("Use the --shrink option to perform a shrink operation.");
        report("warning: Shrinking an image will delete all data beyond the shrunken image's "
               "end. Before performing such an operation, make sure there is no important data "
               "there.");
    } else if (blockdev_truncate(bd, (uint64_t)total, shrink, prealloc, &err) < 0) {
        report("%s", err.msg);
    } else {
        qprintf(quiet, "Image resized.\n");
        ret = EXIT_OK;
    }
    blockdev_close(bd);
    return ret;
}
