/* cowimg check: consistency check and repair of a qcow2 image.
 * Exit status: 0 clean, 1 check failed, 2 corruptions, 3 leaks only,
 * 63 the format has no check (as qemu-img). */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "block/blockdev.h"
#include "cowimg.h"
#include "util/json.h"

enum { CHECK_FAILED = 1, CHECK_CORRUPT = 2, CHECK_LEAKS = 3, CHECK_UNSUPPORTED = 63 };

static void print_check_human(const struct blockdev_check_result *r, bool quiet)
{
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        qprintf(quiet, "No errors were found on the image.\n");
    } else {
        if (r->corruptions) {
            qprintf(quiet, "\n%d errors were found on the image.\n"
                    "Data may be corrupted, or further writes to the image may corrupt it.\n",
                    r->corruptions);
        }
        if (r->leaks) {
            qprintf(quiet, "\n%d leaked clusters were found on the image.\n"
                    "This means waste of disk space, but no harm to data.\n", r->leaks);
        }
        if (r->check_errors) {
            qprintf(quiet, "\n%d internal errors have occurred during the check.\n",
                    r->check_errors);
        }
    }
    if (r->total_clusters && r->allocated_clusters) {
        qprintf(quiet, "%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed "
                "clusters\n", (unsigned long long)r->allocated_clusters,
                (unsigned long long)r->total_clusters,
                (double)r->allocated_clusters * 100.0 / (double)r->total_clusters,
                (double)r->fragmented_clusters * 100.0 / (double)r->allocated_clusters,
                (double)r->compressed_clusters * 100.0 / (double)r->allocated_clusters);
    }
    if (r->image_end_offset) {
        qprintf(quiet, "Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
    }
}

/* Members in the order qemu-img prints them (its dictionary's hash order);
 * optional ones only when non-zero. */
static void print_check_json(const struct blockdev_check_result *r, const char *filename,
                             bool quiet)
{
    struct json_writer w;
    json_writer_init(&w, true);
    json_object_begin(&w, NULL);
    if (r->image_end_offset) {
        json_write_uint(&w, "image-end-offset", r->image_end_offset);
    }
    if (r->compressed_clusters) {
        json_write_uint(&w, "compressed-clusters", r->compressed_clusters);
    }
    if (r->total_clusters) {
        json_write_uint(&w, "total-clusters", r->total_clusters);
    }
    if (r->corruptions) {
        json_write_int(&w, "corruptions", r->corruptions);
    }
    if (r->corruptions_fixed) {
        json_write_int(&w, "corruptions-fixed", r->corruptions_fixed);
    }
    json_write_int(&w, "check-errors", r->check_errors);
    if (r->leaks) {
        json_write_int(&w, "leaks", r->leaks);
    }
    if (r->leaks_fixed) {
        json_write_int(&w, "leaks-fixed", r->leaks_fixed);
    }
    if (r->allocated_clusters) {
        json_write_uint(&w, "allocated-clusters", r->allocated_clusters);
    }
    json_write_string(&w, "filename", filename);
    json_write_string(&w, "format", "qcow2");
    if (r->fragmented_clusters) {
        json_write_uint(&w, "fragmented-clusters", r->fragmented_clusters);
    }
    json_object_end(&w);
    qprintf(quiet, "%s\n", json_writer_str(&w));
    json_writer_free(&w);
}

int cmd_check(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL, *cache = "writeback";
    unsigned fix = 0;
    bool quiet = false, share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'r':
            if (!strcmp(optarg, "leaks")) {
                fix = BDEV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDEV_FIX_LEAKS | BDEV_FIX_ERRORS;
            } else {
                usage_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                            optarg);
            }
            break;
        case OPT_OUTPUT: output = optarg; break;
        case 'T': cache = optarg; break;
        case 'q': quiet = true; break;
        case 'U': share = true; break;
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
    if (optind != argc - 1) {
        usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    enum output_format ofmt;
    if (parse_output_format(output, &ofmt) < 0) {
        return CHECK_FAILED;
    }
    bool no_cache;
    if (parse_cache_mode(cache, &no_cache) < 0) {
        report("Invalid source cache option: %s", cache);
        return CHECK_FAILED;
    }
    /* With the backing chain, as qemu-img: a missing backing file is an error. */
    unsigned flags = BDEV_CHECK | (fix ? 0 : BDEV_READ_ONLY) |
                     (share ? BDEV_FORCE_SHARE : 0) | (no_cache ? BDEV_NO_CACHE : 0);
    struct blockdev *bd = image_open(filename, fmt, flags);
    if (!bd) {
        return CHECK_FAILED;
    }
    int ret;
    struct blockdev_check_result r = {0};
    struct error err = {0};
    if (!(strcmp(blockdev_format(bd), "qcow2") == 0)) {
        report("This image format does not support checks");
        ret = CHECK_UNSUPPORTED;
        goto out;
    }
    int rc = blockdev_check(bd, fix, &r, &err);
    if (rc == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        int leaks_fixed = r.leaks_fixed, corruptions_fixed = r.corruptions_fixed;
        if (ofmt == OUTPUT_HUMAN) {
            qprintf(quiet, "The following inconsistencies were found and repaired:\n\n"
                    "    %d leaked clusters\n    %d corruptions\n\n"
                    "Double checking the fixed image now...\n", leaks_fixed, corruptions_fixed);
        }
        memset(&r, 0, sizeof(r));
        rc = blockdev_check(bd, 0, &r, &err);
        r.leaks_fixed = leaks_fixed;
        r.corruptions_fixed = corruptions_fixed;
    }
    if (rc == 0) {
        if (ofmt == OUTPUT_HUMAN) {
            print_check_human(&r, quiet);
        } else {
            print_check_json(&r, filename, quiet);
        }
    }
    if (rc < 0 || r.check_errors) {
        if (rc < 0) {
            report("Check failed: %s", err.msg);
        } else {
            report("Check failed");
        }
        ret = CHECK_FAILED;
    } else {
        ret = r.corruptions ? CHECK_CORRUPT : r.leaks ? CHECK_LEAKS : 0;
    }
out:
    blockdev_close(bd);
    return ret;
}
