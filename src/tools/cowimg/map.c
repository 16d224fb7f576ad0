/* cowimg map: where each range of the virtual disk comes from. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cowimg.h"

struct map_entry {
    int64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    const char *file;   /* owned by the open chain */
};

static void entry_from_status(struct map_entry *e, int64_t off, const struct block_status *st)
{
    bool has_offset = st->flags & BDEV_STATUS_OFFSET_VALID;
    *e = (struct map_entry){
        .start = off,
        .length = (int64_t)st->len,
        /* Zeros past a shorter backing file belong to the layer above it. */
        .depth = (st->flags & BDEV_STATUS_PAST_BACKING) && st->depth > 0 ? st->depth - 1
                                                                           : st->depth,
        .present = st->flags & BDEV_STATUS_ALLOCATED,
        .data = st->flags & BDEV_STATUS_DATA,
        /* Nothing in the chain defines the range: it reads as zeros. */
        .zero = (st->flags & BDEV_STATUS_ZERO) || !(st->flags & BDEV_STATUS_DATA),
        .has_offset = has_offset,
        .offset = has_offset ? (int64_t)st->host_offset : 0,
        .file = has_offset ? st->file : NULL,
    };
}

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->length == 0 || a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
        a->present != b->present || a->has_offset != b->has_offset ||
        (a->file == NULL) != (b->file == NULL)) {
        return false;
    }
    if (a->file && strcmp(a->file, b->file) != 0) {
        return false;
    }
    return !a->has_offset || a->offset + a->length == b->offset;
}

static int print_entry(enum output_format ofmt, const struct map_entry *e, struct map_entry *next)
{
    if (ofmt == OUTPUT_HUMAN) {
        if (e->data && !e->has_offset) {
            report("File contains external, encrypted or compressed clusters.");
            return -1;
        }
        if (e->data && !e->zero) {
            char a[32], b[32], c[32];
            /* %#x prints plain 0 for zero, as qemu-img's output has it. */
            snprintf(a, sizeof(a), "%#" PRIx64, (uint64_t)e->start);
            snprintf(b, sizeof(b), "%#" PRIx64, (uint64_t)e->length);
            snprintf(c, sizeof(c), "%#" PRIx64, (uint64_t)(e->has_offset ? e->offset : 0));
            printf("%-16s%-16s%-16s%s\n", a, b, c, e->file ? e->file : "");
        }
        /* Human output does not tell zero ranges apart: merge them. */
        if (next && (!next->data || next->zero)) {
            next->data = false;
            next->zero = true;
        }
        return 0;
    }
    printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", \"depth\": %d, \"present\": %s,"
           " \"zero\": %s, \"data\": %s", e->start, e->length, e->depth,
           e->present ? "true" : "false", e->zero ? "true" : "false", e->data ? "true" : "false");
    if (e->has_offset) {
        printf(", \"offset\": %" PRId64, e->offset);
    }
    putchar('}');
    if (next) {
        puts(",");
    }
    return 0;
}

int cmd_map(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL;
    bool share = false;
    int64_t start = 0, max_length = -1;
    int c;
    while ((c = getopt_long(argc, argv, ":f:s:l:hU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'U': share = true; break;
        case OPT_OUTPUT: output = optarg; break;
        case 's':
            if (parse_size_arg("start offset", optarg, 0, INT64_MAX, &start) < 0) {
                return EXIT_ERR;
            }
            break;
        case 'l':
            if (parse_size_arg("max length", optarg, 0, INT64_MAX, &max_length) < 0) {
                return EXIT_ERR;
            }
            break;
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
    struct blockdev *bd = image_open(argv[optind], fmt,
                                     BDEV_READ_ONLY | (share ? BDEV_FORCE_SHARE : 0));
    if (!bd) {
        return EXIT_ERR;
    }
    if (ofmt == OUTPUT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    } else {
        putchar('[');
    }
    int64_t length = (int64_t)blockdev_size(bd);
    if (max_length != -1 && start + max_length < length) {
        length = start + max_length;
    }
    struct map_entry curr = { .start = start }, next;
    int ret = 0;
    while (curr.start + curr.length < length) {
        int64_t off = curr.start + curr.length;
        struct block_status st;
        struct error err = {0};
        if (blockdev_block_status(bd, (uint64_t)off, (uint64_t)(length - off), &st, &err) < 0 ||
            st.len == 0) {
            report("Could not read file metadata: %s", err.msg[0] ? err.msg : "no progress");
            ret = -1;
            break;
        }
        entry_from_status(&next, off, &st);
        if (mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0 && (ret = print_entry(ofmt, &curr, &next)) < 0) {
            break;
        }
        curr = next;
    }
    if (ret == 0) {
        ret = print_entry(ofmt, &curr, NULL);
        if (ofmt == OUTPUT_JSON) {
            puts("]");
        }
    }
    blockdev_close(bd);
    return ret < 0 ? EXIT_ERR : EXIT_OK;
}
