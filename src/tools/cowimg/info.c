/* cowimg info: what an image is, in qemu-img's human and JSON layouts. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "cowimg.h"
#include "jsontext.h"
#include "util/json.h"
#include "util/size.h"

/* One image of the chain, opened on its own (no backing), as qemu-img does. */
struct image_info {
    struct blockdev *bd;
    char *full_backing;     /* backing path relative to the working directory */
    int64_t actual_size;
    struct blockdev_snapshot_info *snapshots;
    int nsnapshots;
};

static void write_snapshots_json(const struct image_info *ii, struct json_writer *w)
{
    json_array_begin(w, "snapshots");
    for (int i = 0; i < ii->nsnapshots; i++) {
        const struct blockdev_snapshot_info *sn = &ii->snapshots[i];
        /* Members in qemu-img's (hash) order. */
        json_object_begin(w, NULL);
        if (sn->icount != -1) {
            json_write_int(w, "icount", sn->icount);
        }
        json_write_uint(w, "vm-clock-nsec", sn->vm_clock_nsec % 1000000000ull);
        json_write_string(w, "name", sn->name ? sn->name : "");
        json_write_uint(w, "date-sec", sn->date_sec);
        json_write_uint(w, "date-nsec", sn->date_nsec);
        json_write_uint(w, "vm-clock-sec", sn->vm_clock_nsec / 1000000000ull);
        json_write_string(w, "id", sn->id);
        json_write_uint(w, "vm-state-size", sn->vm_state_size);
        json_object_end(w);
    }
    json_array_end(w);
}

static void write_info_json(const struct image_info *ii, struct json_writer *w)
{
    struct blockdev *bd = ii->bd;
    json_object_begin(w, NULL);
    if (blockdev_backing_filename(bd) && blockdev_backing_format(bd)) {
        json_write_string(w, "backing-filename-format", blockdev_backing_format(bd));
    }
    if (ii->nsnapshots > 0) {
        write_snapshots_json(ii, w);
    }
    json_write_uint(w, "virtual-size", blockdev_size(bd));
    json_write_string(w, "filename", blockdev_exact_filename(bd));
    if (blockdev_cluster_size(bd)) {
        json_write_uint(w, "cluster-size", blockdev_cluster_size(bd));
    }
    json_write_string(w, "format", blockdev_format(bd));
    if (ii->actual_size >= 0) {
        json_write_int(w, "actual-size", ii->actual_size);
    }
    blockdev_write_format_specific(bd, w);
    if (blockdev_backing_filename(bd)) {
        json_write_string(w, "full-backing-filename", ii->full_backing);
        json_write_string(w, "backing-filename", blockdev_backing_filename(bd));
    }
    json_write_bool(w, "dirty-flag", blockdev_is_dirty(bd));
    json_object_end(w);
}

static void print_info_human(const struct image_info *ii)
{
    struct blockdev *bd = ii->bd;
    char vsize[64], dsize[64];
    size_format(blockdev_size(bd), vsize, sizeof(vsize));
    if (ii->actual_size >= 0) {
        size_format((uint64_t)ii->actual_size, dsize, sizeof(dsize));
    } else {
        snprintf(dsize, sizeof(dsize), "unavailable");
    }
    printf("image: %s\nfile format: %s\nvirtual size: %s (%llu bytes)\ndisk size: %s\n",
           blockdev_exact_filename(bd), blockdev_format(bd), vsize, (unsigned long long)blockdev_size(bd),
           dsize);
    if (blockdev_cluster_size(bd)) {
        printf("cluster_size: %u\n", blockdev_cluster_size(bd));
    }
    if (blockdev_is_dirty(bd)) {
        printf("cleanly shut down: no\n");
    }
    if (blockdev_backing_filename(bd)) {
        printf("backing file: %s", blockdev_backing_filename(bd));
        if (strcmp(blockdev_backing_filename(bd), ii->full_backing) != 0) {
            printf(" (actual path: %s)", ii->full_backing);
        }
        printf("\n");
        if (blockdev_backing_format(bd)) {
            printf("backing file format: %s\n", blockdev_backing_format(bd));
        }
    }
    if (ii->nsnapshots > 0) {
        print_snapshot_table(ii->snapshots, ii->nsnapshots);
    }
    char *specific = blockdev_format_specific_json(bd);
    if (specific) {
        printf("Format specific information:\n");
        if (json_dump_human(stdout, specific, 1) < 0) {
            report("Malformed format-specific information from the %s driver",
                   blockdev_format(bd));
        }
        free(specific);
    }
}

static int open_info(struct image_info *ii, const char *filename, const char *fmt, bool share)
{
    unsigned flags = BDEV_READ_ONLY | BDEV_NO_BACKING | (share ? BDEV_FORCE_SHARE : 0);
    ii->bd = image_open(filename, fmt, flags);
    if (!ii->bd) {
        return -1;
    }
    ii->actual_size = blockdev_allocated_size(ii->bd);
    /* Relative to the image's file, not to a json:{...} or option string
     * naming it (QEMU's bdrv_dirname). */
    ii->full_backing = blockdev_backing_filename(ii->bd) ?
        blockdev_backing_path(blockdev_filename(ii->bd), blockdev_backing_filename(ii->bd)) : NULL;
    ii->snapshots = NULL;
    ii->nsnapshots = 0;
    if (blockdev_has_snapshots(ii->bd)) {
        /* Without snapshot support in the driver there is simply no list. */
        if (blockdev_snapshot_list(ii->bd, &ii->snapshots, &ii->nsnapshots, NULL) < 0) {
            ii->snapshots = NULL;
            ii->nsnapshots = 0;
        }
    }
    return 0;
}

static void close_info(struct image_info *ii)
{
    blockdev_snapshot_list_free(ii->snapshots, ii->nsnapshots);
    blockdev_close(ii->bd);
    free(ii->full_backing);
}

#define MAX_CHAIN 64

int cmd_info(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL;
    bool chain = false, share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":f:hU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'U': share = true; break;
        case OPT_OUTPUT: output = optarg; break;
        case OPT_BACKING_CHAIN: chain = true; break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        default: return common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        usage_error("Expecting one image file name");
    }
    enum output_format ofmt;
    if (parse_output_format(output, &ofmt) < 0) {
        return EXIT_ERR;
    }

    struct image_info infos[MAX_CHAIN];
    int n = 0, ret = EXIT_OK;
    const char *name = argv[optind];
    for (;;) {
        if (open_info(&infos[n], name, fmt, share) < 0) {
            ret = EXIT_ERR;
            break;
        }
        n++;
        struct blockdev *bd = infos[n - 1].bd;
        if (!chain || !blockdev_backing_filename(bd)) {
            break;
        }
        for (int i = 0; i < n; i++) {
            if (blockdev_same_file(infos[i].bd, bd) && i != n - 1) {
                /* Named as qemu-img does: the file met a second time. */
                report("Backing file '%s' creates an infinite loop.", name);
                ret = EXIT_ERR;
            }
        }
        if (ret != EXIT_OK || n == MAX_CHAIN) {
            if (n == MAX_CHAIN) {
                report("Backing chain of '%s' is too deep", argv[optind]);
                ret = EXIT_ERR;
            }
            break;
        }
        name = infos[n - 1].full_backing;
        fmt = blockdev_backing_format(bd);
        image_opts = false;     /* like qemu-img, backing files are plain names */
    }
    if (ret == EXIT_OK) {
        if (ofmt == OUTPUT_JSON) {
            struct json_writer w;
            json_writer_init(&w, true);
            if (chain) {
                json_array_begin(&w, NULL);
            }
            for (int i = 0; i < n; i++) {
                write_info_json(&infos[i], &w);
            }
            if (chain) {
                json_array_end(&w);
            }
            printf("%s\n", json_writer_str(&w));
            json_writer_free(&w);
        } else {
            for (int i = 0; i < n; i++) {
                if (i > 0) {
                    printf("\n");
                }
                print_info_human(&infos[i]);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        close_info(&infos[i]);
    }
    return ret;
}
