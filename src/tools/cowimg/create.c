/* cowimg create, and the image creation convert shares with it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "block/object_secret.h"
#include "cowimg.h"
#include "util/log.h"
#include "util/size.h"

static bool has_help_option(struct options *o)
{
    for (int i = 0; i < o->count; i++) {
        if (!strcmp(o->items[i].key, "help") || !strcmp(o->items[i].key, "?")) {
            return true;
        }
    }
    return false;
}

/* Everything an image creation needs, parsed and checked like QEMU does
 * before it prints the "Formatting" line. */
struct create_plan {
    struct blockdev_create_opts q;
    enum blockdev_prealloc prealloc;
    const char *prealloc_text, *compat_text, *compression_text, *lazy_text, *extl2_text;
    const char *encryption_text, *encrypt_format, *key_secret;
    const char *data_file_raw_text;
    bool encrypted;
    uint64_t refcount_bits;
    bool refcount_given;
};

static int parse_bool_text(struct options *o, const char *key, bool *out, const char **text,
                           struct error *err)
{
    *text = options_get(o, key);
    return options_get_bool(o, key, out, err);
}

/* Stage 1: option names and syntactic values (errors come before "Formatting"). */
static int parse_plan(struct create_request *req, struct create_plan *p, struct error *err)
{
    struct options empty = {0};
    struct options *o = req->opts ? req->opts : &empty;
    bool is_qcow2 = strcmp(req->format, "qcow2") == 0;
    blockdev_create_opts_init(&p->q);

    uint64_t size;
    const char *size_text = options_get(o, "size");
    if (size_text) {
        if (options_get_size(o, "size", &size, err) < 0) {
            return -EINVAL;
        }
        if (req->size_given && !req->size_wins) {
            return error_set(err, -EINVAL, "The image size must be specified only once");
        }
        if (!req->size_given) {
            req->size = size;
            req->size_given = true;
        }
    }
    p->prealloc_text = options_get(o, "preallocation");
    if (is_qcow2) {
        const char *bf = options_get(o, "backing_file");
        const char *bfmt = options_get(o, "backing_fmt");
        if (bf && !req->backing_file) {
            req->backing_file = bf;
        }
        if (bfmt && !req->backing_format) {
            req->backing_format = bfmt;
        }
        uint64_t cs = p->q.cluster_size;
        if (options_get_size(o, "cluster_size", &cs, err) < 0) {
            return -EINVAL;
        }
        p->q.cluster_size = cs > UINT32_MAX ? 0 : (uint32_t)cs;
        if (parse_bool_text(o, "encryption", &p->encrypted, &p->encryption_text, err) < 0) {
            return -EINVAL;
        }
        p->encrypt_format = options_get(o, "encrypt.format");
        p->key_secret = options_get(o, "encrypt.key-secret");
        p->compat_text = options_get(o, "compat");
        p->q.data_file = options_get(o, "data_file");
        if (parse_bool_text(o, "data_file_raw", &p->q.data_file_raw, &p->data_file_raw_text,
                            err) < 0) {
            return -EINVAL;
        }
        p->compression_text = options_get(o, "compression_type");
        if (parse_bool_text(o, "lazy_refcounts", &p->q.lazy_refcounts, &p->lazy_text, err) < 0 ||
            parse_bool_text(o, "extended_l2", &p->q.extended_l2, &p->extl2_text, err) < 0) {
            return -EINVAL;
        }
        const char *rb = options_get(o, "refcount_bits");
        p->refcount_bits = (uint64_t)p->q.refcount_bits;
        if (rb) {
            char *end;
            errno = 0;
            p->refcount_bits = strtoull(rb, &end, 0);
            if (errno || end == rb || *end) {
                return error_set(err, -EINVAL, "Parameter 'refcount_bits' expects a number");
            }
            p->refcount_given = true;
        }
    } else if (req->backing_file) {
        return error_set(err, -ENOTSUP, "Backing file not supported for file format '%s'",
                         req->format);
    }
    return options_check_unused(o, NULL, err);
}

static void print_formatting_line(const struct create_request *req, const struct create_plan *p)
{
    if (req->quiet) {
        return;
    }
    printf("Formatting '%s', fmt=%s", req->filename, req->format);
    if (strcmp(req->format, "qcow2") == 0) {
        if (p->encryption_text) {
            printf(" encryption=%s", p->encryption_text);
        }
        if (p->encrypt_format) {
            printf(" encrypt.format=%s", p->encrypt_format);
        }
        if (p->key_secret) {
            printf(" encrypt.key-secret=%s", p->key_secret);
        }
        printf(" cluster_size=%u extended_l2=%s", p->q.cluster_size,
               p->extl2_text ? p->extl2_text : "off");
        if (p->prealloc_text) {
            printf(" preallocation=%s", p->prealloc_text);
        }
        printf(" compression_type=%s size=%llu",
               p->compression_text ? p->compression_text : "zlib",
               (unsigned long long)req->size);
        if (req->backing_file) {
            /* QEMU prints option values with commas doubled, as they are typed. */
            printf(" backing_file=");
            for (const char *c = req->backing_file; *c; c++) {
                fputs(*c == ',' ? ",," : (char[]){ *c, 0 }, stdout);
            }
        }
        if (req->backing_format) {
            printf(" backing_fmt=%s", req->backing_format);
        }
        if (p->compat_text) {
            printf(" compat=%s", p->compat_text);
        }
        if (p->q.data_file) {
            printf(" data_file=%s", p->q.data_file);
        }
        if (p->data_file_raw_text) {
            printf(" data_file_raw=%s", p->data_file_raw_text);
        }
        printf(" lazy_refcounts=%s refcount_bits=%llu\n", p->lazy_text ? p->lazy_text : "off",
               (unsigned long long)p->refcount_bits);
    } else {
        printf(" size=%llu", (unsigned long long)req->size);
        if (p->prealloc_text) {
            printf(" preallocation=%s", p->prealloc_text);
        }
        printf("\n");
    }
    fflush(stdout);     /* before any error of the format's checks, as qemu-img */
}

/* The encryption method, checked where QEMU checks it: encryption=on is
 * QEMU's old name of encrypt.format=aes. Only AES is created (its key is no
 * part of the image); LUKS needs a key header we do not write. */
static int check_encrypt_format(struct create_plan *p, struct error *err)
{
    if (p->encryption_text && p->encrypt_format) {
        return error_set(err, -EINVAL,
                         "'encrypt.format' and its alias 'encryption' can't be used at the same time");
    }
    const char *fmt = p->encrypted ? "aes" : p->encrypt_format;
    if (!fmt) {
        return 0;
    }
    if (!strcmp(fmt, "luks")) {
        return error_set(err, -ENOTSUP, "cowimg cannot create LUKS-encrypted qcow2 images "
                         "(encrypt.format=luks); encrypt.format=aes is supported");
    }
    if (strcmp(fmt, "aes") != 0 && strcmp(fmt, "qcow") != 0) {
        return error_set(err, -EINVAL, "Parameter 'format' does not accept value '%s'", fmt);
    }
    p->q.encrypt_aes = true;
    return 0;
}

/* The AES key comes from a secret object, which must exist even though
 * nothing of it is stored: QEMU sets up the cipher when it creates. */
static int check_encrypt_key(struct create_plan *p, struct error *err)
{
    if (!p->q.encrypt_aes) {
        return 0;
    }
    if (!p->key_secret) {
        return error_set(err, -EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    }
    const char *data;
    size_t len;
    int base64;
    return object_secret_lookup(p->key_secret, &data, &len, &base64, err);
}

/* Stage 2: values the format checks after "Formatting" is printed. */
static int check_plan(struct create_request *req, struct create_plan *p, struct error *err)
{
    bool is_qcow2 = strcmp(req->format, "qcow2") == 0;
    p->prealloc = PREALLOC_OFF;
    if (p->prealloc_text && blockdev_prealloc_parse(p->prealloc_text, &p->prealloc) < 0) {
        /* The two drivers word this differently in qemu-img, too. */
        return error_set(err, -EINVAL, is_qcow2 ? "Parameter 'preallocation' does not accept "
                         "value '%s'" : "invalid parameter value: %s", p->prealloc_text);
    }
    if (!is_qcow2 && p->prealloc == PREALLOC_METADATA) {
        return error_set(err, -ENOTSUP, "Unsupported preallocation mode: metadata");
    }
    if (!is_qcow2) {
        return 0;
    }
    p->q.prealloc = p->prealloc;
    int ret = check_encrypt_format(p, err);
    if (ret < 0) {
        return ret;
    }
    if (p->compat_text) {
        if (!strcmp(p->compat_text, "0.10") || !strcmp(p->compat_text, "v2")) {
            p->q.version = 2;
        } else if (!strcmp(p->compat_text, "1.1") || !strcmp(p->compat_text, "v3")) {
            p->q.version = 3;
        } else {
            return error_set(err, -EINVAL, "Parameter 'version' does not accept value '%s'",
                             p->compat_text);
        }
    }
    if (p->compression_text) {
        if (!strcmp(p->compression_text, "zlib")) {
            p->q.compression = BDEV_COMPRESSION_ZLIB;
        } else if (!strcmp(p->compression_text, "zstd")) {
            p->q.compression = BDEV_COMPRESSION_ZSTD;
        } else {
            return error_set(err, -EINVAL,
                             "Parameter 'compression-type' does not accept value '%s'",
                             p->compression_text);
        }
    }
    uint32_t cs = p->q.cluster_size;
    ret = blockdev_qcow2_check_cluster_size(cs, false, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t rb = p->refcount_bits;
    if (rb == 0 || rb > 64 || (rb & (rb - 1))) {
        return error_set(err, -EINVAL,
                         "Refcount width must be a power of two and may not exceed 64 bits");
    }
    p->q.refcount_bits = (int)rb;
    if (p->q.version == 2) {
        if (p->q.lazy_refcounts) {
            return error_set(err, -EINVAL, "Lazy refcounts only supported with compatibility "
                             "level 1.1 and above (use version=v3 or greater)");
        }
        if (rb != 16) {
            return error_set(err, -EINVAL, "Different refcount widths than 16 bits require "
                             "compatibility level 1.1 or above (use version=v3 or greater)");
        }
        if (p->q.extended_l2) {
            return error_set(err, -EINVAL, "Extended L2 entries are only supported with "
                             "compatibility level 1.1 and above (use version=v3 or greater)");
        }
        if (p->q.compression != BDEV_COMPRESSION_ZLIB) {
            return error_set(err, -EINVAL, "Non-zlib compression type is only supported with "
                             "compatibility level 1.1 and above (use version=v3 or greater)");
        }
    }
    ret = blockdev_qcow2_check_cluster_size(cs, p->q.extended_l2, err);
    if (ret < 0) {
        return ret;
    }
    /* The L1 table may span at most 32 MiB of 8-byte entries. */
    uint64_t l2_entries = cs / (p->q.extended_l2 ? 16 : 8);
    uint64_t l1_entries = (req->size + (uint64_t)cs * l2_entries - 1) / ((uint64_t)cs * l2_entries);
    if (l1_entries > (32u << 20) / 8) {
        return error_set(err, -EFBIG, "The image size is too large for file format 'qcow2' "
                         "(try using a larger cluster size)");
    }
    if (req->backing_file && p->prealloc != PREALLOC_OFF && !p->q.extended_l2) {
        return error_set(err, -EINVAL, "Backing file and preallocation can only be used at "
                         "the same time if extended_l2 is on");
    }
    return check_encrypt_key(p, err);
}

/* Opens the backing file as qemu-img create does, with its message when it
 * cannot. */
static int open_backing(struct create_request *req, unsigned flags, struct blockdev **bd,
                        struct error *err)
{
    char *path = blockdev_backing_path(req->filename, req->backing_file);
    struct blockdev_open_opts opts = {
        .format = req->backing_format,
        .flags = BDEV_READ_ONLY | BDEV_FORCE_SHARE | flags,
    };
    int ret = blockdev_open(bd, path, &opts, err);
    free(path);
    if (ret < 0) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof(err->msg) - n, "\nCould not open backing image.");
    }
    return ret;
}

/* Opens the backing file (with its chain, as qemu-img) to learn its size. */
static int probe_backing(struct create_request *req, struct error *err)
{
    struct blockdev *bd;
    int ret = open_backing(req, 0, &bd, err);
    if (ret < 0) {
        return ret;
    }
    if (!req->size_given) {
        req->size = blockdev_size(bd);
        req->size_given = true;
    }
    blockdev_close(bd);
    return 0;
}

/* For the hint after "Backing file specified without backing format"; a
 * backing file that cannot be opened is the error then (iotest 111). */
static int detect_backing_format(struct create_request *req, struct error *err)
{
    struct blockdev *bd;
    int ret = open_backing(req, BDEV_NO_BACKING, &bd, err);
    if (ret < 0) {
        return ret;
    }
    snprintf(req->detected_format, sizeof(req->detected_format), "%s", blockdev_format(bd));
    blockdev_close(bd);
    return 0;
}

/* The target after the format's checks failed, as qemu-img leaves it:
 * its qcow2 driver creates (or truncates) the file before it checks the
 * format's values (cluster size, version, preallocation, ...) and deletes
 * it when one is wrong, a file that was there before too; its raw driver
 * truncates the file before refusing preallocation=metadata and leaves it
 * empty. cowimg checks first; the outcome is made the same. Failures
 * before the "Formatting" line (options, backing file, size) leave the
 * file alone in both. */
static void leave_target_as_qemu_img(const struct create_request *req, const struct create_plan *p)
{
    struct stat st;
    if (stat(req->filename, &st) == 0 && !S_ISREG(st.st_mode)) {
        return;     /* a device or FIFO: QEMU's host_device deletes and truncates nothing */
    }
    if (strcmp(req->format, "qcow2") == 0) {
        if (unlink(req->filename) < 0 && errno != ENOENT) {
            log_warn("could not delete '%s': %s", req->filename, strerror(errno));
        }
    } else if (p->prealloc == PREALLOC_METADATA) {
        int fd = open(req->filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(fd);
        }
    }
}

static int do_create(struct create_request *req, struct error *err)
{
    struct create_plan plan = {0};
    if (!format_known(req->format)) {
        return error_set(err, -EINVAL, "Unknown file format '%s'", req->format);
    }
    int ret = parse_plan(req, &plan, err);
    if (ret < 0) {
        req->options_invalid = true;
        return ret;
    }
    if (req->backing_file && !*req->backing_file) {
        return error_set(err, -EINVAL, "Expected backing file name, got empty string");
    }
    if (req->backing_file && strcmp(req->backing_file, req->filename) == 0) {
        return error_set(err, -EINVAL, "Error: Trying to create an image with the same filename "
                         "as the backing file");
    }
    if (req->backing_file && !req->unsafe && req->backing_format) {
        ret = probe_backing(req, err);
        if (ret < 0) {
            return ret;
        }
    }
    if (req->backing_file && !req->backing_format) {
        ret = req->unsafe ? 0 : detect_backing_format(req, err);
        if (ret < 0) {
            return ret;
        }
        return error_set(err, -EINVAL, "Backing file specified without backing format");
    }
    if (!req->size_given) {
        return error_set(err, -EINVAL, "Image creation needs a size parameter");
    }
    if (req->size > INT64_MAX) {
        return error_set(err, -EINVAL, "Image size must be less than 8 EiB!");
    }
    print_formatting_line(req, &plan);
    ret = check_plan(req, &plan, err);
    if (ret < 0) {
        leave_target_as_qemu_img(req, &plan);
        return ret;
    }
    if (strcmp(req->format, "qcow2") == 0) {
        plan.q.size = req->size;
        plan.q.backing_file = req->backing_file;
        plan.q.backing_format = req->backing_format;
        return blockdev_create(req->filename, &plan.q, err);
    }
    struct blockdev_create_opts raw;
    blockdev_create_opts_init(&raw);
    raw.format = "raw";
    raw.size = req->size;
    raw.prealloc = plan.prealloc;
    return blockdev_create(req->filename, &raw, err);
}

int image_create(struct create_request *req)
{
    struct error err = {0};
    int ret = do_create(req, &err);
    if (ret < 0) {
        if (!err.msg[0]) {
            snprintf(err.msg, sizeof(err.msg), "%s", strerror(-ret));
        }
        if (req->error_context && req->options_invalid) {
            report("%s", err.msg);      /* convert: -o is parsed before anything is created */
        } else {
            report("%s: %s", req->error_context ? req->error_context : req->filename, err.msg);
        }
        if (req->detected_format[0]) {
            /* qemu-img prints this hint without a final newline. */
            fprintf(stderr, "Detected format of %s.", req->detected_format);
        }
        return -1;
    }
    return 0;
}

int cmd_create(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    struct create_request req = { .format = "raw" };
    struct options opts = {0};
    int c, ret = EXIT_ERR;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_opts, NULL)) != -1) {
        switch (c) {
        case 'F': req.backing_format = optarg; break;
        case 'b': req.backing_file = optarg; break;
        case 'f': req.format = optarg; break;
        case 'o':
            if (add_option_list(&opts, optarg) < 0) {
                goto out;
            }
            break;
        case 'q': req.quiet = true; break;
        case 'u': req.unsafe = true; break;
        case 'h': print_help();
        case OPT_OBJECT:
            object_option(optarg);
            break;
        default: bad_option(c, argv);
        }
    }
    if (has_help_option(&opts)) {
        ret = print_create_options_help(req.format, optind < argc ? argv[optind] : NULL);
        goto out;
    }
    if (optind >= argc) {
        usage_error("Expecting image file name");
    }
    req.filename = argv[optind++];
    if (optind < argc) {
        int64_t size;
        if (parse_size_arg("image size", argv[optind++], 0, INT64_MAX, &size) < 0) {
            goto out;
        }
        req.size = (uint64_t)size;
        req.size_given = true;
    }
    if (optind != argc) {
        usage_error("Unexpected argument: %s", argv[optind]);
    }
    req.opts = &opts;
    ret = image_create(&req) < 0 ? EXIT_ERR : EXIT_OK;
out:
    options_free(&opts);
    return ret;
}
