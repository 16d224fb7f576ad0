/* The options of read, write and their vector and aio forms, parsed in
 * one place: each command names the letters it takes (getopt's syntax)
 * and what it does with them; the letters mean the same everywhere but
 * -s (read: where pattern verification starts, write: a source file). As
 * qemu-io, a number or pattern is checked when its option is met, so a
 * bad one is reported before anything after it. */
#include <errno.h>
#include <getopt.h>

#include "qemu_io/qemu_io.h"

static int number_arg(int64_t *out)
{
    return cowio_parse_num(optarg, out) ? 0 : (int)*out;
}

/* One option: 0, 1 (-i: the request is invalid), or negative (refused). */
static int take(int c, unsigned flags, struct cowio_io_opts *o)
{
    switch (c) {
    case 'b': o->vmstate = true; return 0;
    case 'c': o->compressed = true; return 0;
    case 'C': o->machine = true; return 0;
    case 'f': o->fua = true; return 0;
    case 'n': o->no_fallback = true; return 0;
    case 'p': return 0;     /* ignored for backwards compatibility */
    case 'q': o->quiet = true; return 0;
    case 'u': o->unmap = true; return 0;
    case 'v': o->dump = true; return 0;
    case 'z': o->zero = true; return 0;
    case 'i': return 1;
    case 'l':
        o->has_len = true;
        return number_arg(&o->pat_len);
    case 's':
        if (flags & COWIO_OPT_S_FILE) {
            o->file = optarg;
            return 0;
        }
        o->has_start = true;
        return number_arg(&o->pat_start);
    case 'P':
        o->has_pattern = true;
        o->pattern = cowio_parse_pattern(optarg);
        return o->pattern < 0 ? -EINVAL : 0;
    default:
        return -EINVAL;
    }
}

int cowio_parse_io_opts(int argc, char **argv, const struct cowio_cmd *cmd, const char *letters, unsigned flags,
                        struct cowio_io_opts *o)
{
    int c;
    while ((c = getopt(argc, argv, letters)) != -1) {
        if (c == '?') {
            cowio_usage_of(cmd);
            return -EINVAL;
        }
        int ret = take(c, flags, o);
        if (ret != 0) {
            return ret;
        }
    }
    int args = argc - optind;
    if (args < 2 || (!(flags & COWIO_OPT_VECTOR) && args != 2)) {
        cowio_usage_of(cmd);
        return -EINVAL;
    }
    return 0;
}
