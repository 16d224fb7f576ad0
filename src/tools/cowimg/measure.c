/* cowimg measure: how large a new image would be on the host, for a given
 * size or for a copy of an existing image (qemu-img measure's arithmetic). */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "cowimg.h"
#include "util/json.h"

struct measure {
    uint64_t required, fully_allocated;
    uint64_t bitmaps;           /* bytes for the source's persistent bitmaps */
    bool has_bitmaps;
};

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
static uint64_t div_up(uint64_t v, uint64_t a) { return (v + a - 1) / a; }

/* Refcount blocks and table clusters needed to count `clusters` clusters plus
 * themselves: iterate to the fixed point. */
static uint64_t refcount_metadata_bytes(uint64_t clusters, uint64_t cluster_size,
                                        uint64_t refcount_bits)
{
    uint64_t per_block = cluster_size * 8 / refcount_bits;
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = div_up(clusters + table + blocks, per_block);
        table = div_up(blocks, per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cluster_size;
}

/* Header, L1, L2 and refcount metadata plus every data cluster. */
static uint64_t measure_qcow2_full_size(uint64_t size, uint64_t cluster_size, uint64_t refcount_bits,
                                bool extended_l2)
{
    uint64_t l2_entry = extended_l2 ? 16 : 8;
    uint64_t aligned = round_up(size, cluster_size);
    uint64_t meta = cluster_size;
    uint64_t l2_entries = round_up(aligned / cluster_size, cluster_size / l2_entry);
    meta += l2_entries * l2_entry;
    uint64_t l1_entries = round_up(l2_entries * l2_entry / cluster_size, cluster_size / 8);
    meta += l1_entries * 8;
    meta += refcount_metadata_bytes((meta + aligned) / cluster_size, cluster_size,
                                    refcount_bits);
    return meta + aligned;
}

/* Bytes of the source's data clusters (zero ranges need no cluster). */
static int source_data_bytes(struct blockdev *src, uint64_t cluster_size, uint64_t *out)
{
    uint64_t size = blockdev_size(src), required = 0;
    for (uint64_t off = 0; off < size; ) {
        struct block_status st;
        struct error err = {0};
        if (blockdev_block_status(src, off, size - off, &st, &err) < 0 || st.len == 0) {
            report("Unable to get block status: %s", err.msg);
            return -1;
        }
        uint64_t n = st.len;
        if (!(st.flags & BDEV_STATUS_ZERO) && (st.flags & BDEV_STATUS_DATA) &&
            (st.flags & BDEV_STATUS_ALLOCATED)) {
            n = round_up(off + n, cluster_size) - off;
            required += off % cluster_size + n;
        }
        off += n;
    }
    *out = required;
    return 0;
}

static int measure_qcow2(struct options *o, uint64_t size, struct blockdev *src,
                         struct measure *m)
{
    struct error err = {0};
    bool extended_l2 = false;
    uint64_t cluster_size = 65536, refcount_bits = 16;
    if (options_get_bool(o, "extended_l2", &extended_l2, &err) < 0 ||
        options_get_size(o, "cluster_size", &cluster_size, &err) < 0) {
        report("%s", err.msg);
        return -1;
    }
    if (blockdev_qcow2_check_cluster_size(cluster_size, extended_l2, &err) < 0) {
        report("%s", err.msg);
        return -1;
    }
    const char *rb = options_get(o, "refcount_bits");
    if (rb) {
        refcount_bits = strtoull(rb, NULL, 0);
        if (refcount_bits == 0 || refcount_bits > 64 || (refcount_bits & (refcount_bits - 1))) {
            report("Refcount width must be a power of two and may not exceed 64 bits");
            return -1;
        }
    }
    const char *compat = options_get(o, "compat");
    int version = compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) ? 2 : 3;
    const char *prealloc = options_get(o, "preallocation");
    bool has_backing = options_get(o, "backing_file") != NULL;
    options_get(o, "backing_fmt");
    options_get(o, "compression_type");
    options_get(o, "lazy_refcounts");
    if (options_check_unused(o, NULL, &err) < 0) {
        report("%s", err.msg);
        report("Invalid options for file format 'qcow2'");
        return -1;
    }
    uint64_t virtual_size = round_up(src ? blockdev_size(src) : size, cluster_size);
    uint64_t l2e = extended_l2 ? 16 : 8;
    if (div_up(virtual_size / cluster_size, cluster_size / l2e) * 8 > 32u * 1024 * 1024) {
        report("The image size is too large (try using a larger cluster size)");
        return -1;
    }
    uint64_t required = 0;
    if (src) {
        if (has_backing) {
            required = virtual_size;    /* nothing known to be shared: all of it */
        } else if (source_data_bytes(src, cluster_size, &required) < 0) {
            return -1;
        }
    }
    if (prealloc && (!strcmp(prealloc, "full") || !strcmp(prealloc, "falloc"))) {
        required = virtual_size;
    }
    m->fully_allocated = measure_qcow2_full_size(virtual_size, cluster_size, refcount_bits, extended_l2);
    m->required = m->fully_allocated - virtual_size + required;
    /* Shown when both the source and the target can hold bitmaps. */
    m->has_bitmaps = version >= 3 && src && blockdev_supports_persistent_bitmaps(src);
    m->bitmaps = m->has_bitmaps ? blockdev_bitmaps_measure(src, cluster_size) : 0;
    return 0;
}

static int measure_raw(struct options *o, uint64_t size, struct blockdev *src, struct measure *m)
{
    struct error err = {0};
    options_get(o, "preallocation");
    if (options_check_unused(o, NULL, &err) < 0) {
        report("%s", err.msg);
        report("Invalid options for file format 'raw'");
        return -1;
    }
    m->required = src ? blockdev_size(src) : round_up(size, 512);
    m->fully_allocated = m->required;
    return 0;
}

static void print_measure(const struct measure *m, enum output_format ofmt)
{
    if (ofmt == OUTPUT_HUMAN) {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", m->required,
               m->fully_allocated);
        if (m->has_bitmaps) {
            printf("bitmaps size: %" PRIu64 "\n", m->bitmaps);
        }
        return;
    }
    struct json_writer w;
    json_writer_init(&w, true);
    json_object_begin(&w, NULL);
    if (m->has_bitmaps) {
        json_write_uint(&w, "bitmaps", m->bitmaps);
    }
    json_write_uint(&w, "required", m->required);
    json_write_uint(&w, "fully-allocated", m->fully_allocated);
    json_object_end(&w);
    printf("%s\n", json_writer_str(&w));
    json_writer_free(&w);
}

int cmd_measure(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw", *output = NULL, *snapshot = NULL;
    struct options o = {0};
    struct error err = {0};
    bool share = false, size_given = false;
    int64_t size = 0;
    int c, ret = EXIT_ERR;
    struct blockdev *src = NULL;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o':
            if (add_option_list(&o, optarg) < 0) {
                goto out;
            }
            break;
        case 'l': snapshot = optarg; break;
        case 'U': share = true; break;
        case OPT_OUTPUT: output = optarg; break;
        case OPT_SIZE:
            if (parse_size_arg("image size", optarg, 0, INT64_MAX, &size) < 0) {
                goto out;
            }
            size_given = true;
            break;
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
    enum output_format ofmt;
    if (parse_output_format(output, &ofmt) < 0) {
        goto out;
    }
    const char *filename = optind < argc ? argv[optind] : NULL;
    if (argc - optind > 1) {
        report("At most one filename argument is allowed.");
    } else if ((fmt || snapshot) && !filename) {
        report("--image-opts, -f, and -l require a filename argument.");
    } else if (filename && size_given) {
        report("--size N cannot be used together with a filename.");
    } else if (!filename && !size_given) {
        report("Either --size N or one filename must be specified.");
    } else if (snapshot) {
        report("Measuring internal snapshots (-l) is not supported yet");
    } else if (filename && !(src = image_open(filename, fmt,
                                              BDEV_READ_ONLY | (share ? BDEV_FORCE_SHARE : 0)))) {
        /* reported */
    } else if (strcmp(out_fmt, "qcow2") != 0 && !format_known(out_fmt)) {
        report("Unknown file format '%s'", out_fmt);
    } else {
        const char *osize = options_get(&o, "size");
        uint64_t s = (uint64_t)size;
        if (!size_given && osize && options_get_size(&o, "size", &s, &err) < 0) {
            report("%s", err.msg);
            goto out;
        }
        struct measure m = {0};
        int rc = strcmp(out_fmt, "qcow2") == 0 ? measure_qcow2(&o, s, src, &m)
                                               : measure_raw(&o, s, src, &m);
        if (rc == 0) {
            print_measure(&m, ofmt);
            ret = EXIT_OK;
        }
    }
out:
    blockdev_close(src);
    options_free(&o);
    return ret;
}
