/* What every cowimg subcommand shares: qemu-img's error style, size and
 * output-format parsing, opening images. */
#include "cowimg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "block/object_secret.h"
#include "util/size.h"

const char *progname = "cowimg";

static void vreport(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
}

_Noreturn void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information\n", progname);
    exit(EXIT_ERR);
}

_Noreturn void bad_option(int c, char **argv)
{
    extern int optind;
    if (c == ':') {
        usage_error("missing argument for option '%s'", argv[optind - 1]);
    }
    usage_error("unrecognized option '%s'", argv[optind - 1]);
}

int common_option(int c, char **argv)
{
    extern int optind;
    switch (c) {
    case 'h':
        print_help();
    case OPT_IMAGE_OPTS:
        report("%s is not supported", argv[optind - 1]);
        return EXIT_ERR;
    default:
        bad_option(c, argv);
    }
}

void object_option(const char *spec)
{
    struct error err = { 0 };
    int ret = object_add(spec, &err);
    if (ret < 0) {
        report("%s", err.msg);
        exit(EXIT_ERR);
    }
    if (ret > 0) {
        fputs(object_help_text(), stdout);
        exit(0);
    }
}

void qprintf(bool quiet, const char *fmt, ...)
{
    if (quiet) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

int parse_size_arg(const char *what, const char *value, int64_t min, int64_t max, int64_t *out)
{
    uint64_t v;
    int ret = size_parse(value, &v);
    if (ret < 0 && ret != -ERANGE) {
        report("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", what);
        report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (ret == -ERANGE || v > (uint64_t)max || (int64_t)v < min) {
        report("Invalid %s specified. Must be between %lld and %lld.", what,
               (long long)min, (long long)max);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int parse_output_format(const char *s, enum output_format *out)
{
    if (!s || strcmp(s, "human") == 0) {
        *out = OUTPUT_HUMAN;
    } else if (strcmp(s, "json") == 0) {
        *out = OUTPUT_JSON;
    } else {
        report("--output must be used with human or json as argument.");
        return -1;
    }
    return 0;
}

/* "none" and "directsync" bypass the host page cache (O_DIRECT; the block
 * layer bounces unaligned requests). */
#define COWIMG_USE_O_DIRECT true

int parse_cache_mode(const char *mode, bool *no_cache)
{
    static const char *const direct[] = { "none", "directsync" };
    static const char *const cached[] = { "writeback", "writethrough", "unsafe" };
    for (int i = 0; i < 2; i++) {
        if (strcmp(mode, direct[i]) == 0) {
            *no_cache = COWIMG_USE_O_DIRECT;
            return 0;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (strcmp(mode, cached[i]) == 0) {
            *no_cache = false;
            return 0;
        }
    }
    return -1;
}

/* qemu-img's is_valid_option_list: -o arguments are joined with commas
 * before they are parsed, so one must not start with a comma nor end in an
 * odd number of them (an escaped comma is two). */
static bool valid_option_list(const char *list)
{
    size_t len = strlen(list), i = len;
    if (!list[0] || list[0] == ',') {
        return false;
    }
    while (i > 0 && list[i - 1] == ',') {
        i--;
    }
    return (len - i) % 2 == 0;
}

int add_option_list(struct options *o, const char *list)
{
    struct error err = {0};
    if (!valid_option_list(list) || options_parse(o, list, NULL, &err) < 0) {
        report("Invalid option list: %s", list);
        return -1;
    }
    return 0;
}

bool format_known(const char *fmt)
{
    return blockdev_format_known(fmt);
}

bool image_opts;

struct blockdev *image_open(const char *filename, const char *fmt, unsigned flags)
{
    struct error err = {0};
    struct blockdev_open_opts opts = { .format = fmt, .flags = flags };
    struct blockdev *bd;
    if (image_opts && fmt) {
        report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    if (image_opts ? blockdev_open_spec(&bd, NULL, filename, &opts, &err) < 0
                   : blockdev_open_spec(&bd, filename, NULL, &opts, &err) < 0) {
        /* A driver that failed on the backing file already names the image;
         * qemu-img names it once there (but twice for a missing image). */
        char prefix[4200];
        snprintf(prefix, sizeof(prefix), "Could not open '%s': ", filename);
        size_t n = strlen(prefix);
        if (strncmp(err.msg, prefix, n) == 0 &&
            strncmp(err.msg + n, "Could not open backing file", 27) == 0) {
            report("%s", err.msg);
        } else {
            report("%s%s", prefix, err.msg);
        }
        return NULL;
    }
    blockdev_warn_probed_raw(bd, filename);
    return bd;
}

