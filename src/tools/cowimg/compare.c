/* cowimg compare: whether two images have the same content.
 * Exit status: 0 identical, 1 different, 2 open or usage error,
 * 3 allocation query failed, 4 read error (as qemu-img). */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cowimg.h"
#include "util/zero.h"
#include "util/progress.h"

#define COMPARE_CHUNK (2u << 20)
#define SECTOR 512

enum { CMP_SAME = 0, CMP_DIFFER = 1, CMP_OPEN_ERR = 2, CMP_STATUS_ERR = 3, CMP_READ_ERR = 4 };

struct side {
    const char *name;
    struct blockdev *bd;
    uint8_t *buf;
};

/* First non-zero 512-byte sector of buf (its offset), or -1. */
static int64_t first_nonzero_sector(const uint8_t *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += SECTOR) {
        uint64_t n = len - i < SECTOR ? len - i : SECTOR;
        if (!mem_is_zero(buf + i, n)) {
            return (int64_t)i;
        }
    }
    return -1;
}

static int read_side(struct side *s, uint64_t off, uint64_t len)
{
    struct error err = {0};
    int ret = blockdev_pread(s->bd, off, s->buf, len, &err);
    if (ret < 0) {
        /* qemu-img names only the errno here (iotest 074). */
        report("Error while reading offset %" PRIu64 " of %s: %s", off, s->name, strerror(-ret));
        return CMP_READ_ERR;
    }
    return CMP_SAME;
}

/* A range only one side defines must read as zeros on that side. */
static int check_zero(struct side *s, uint64_t off, uint64_t len, bool quiet)
{
    int ret = read_side(s, off, len);
    if (ret) {
        return ret;
    }
    int64_t nz = first_nonzero_sector(s->buf, len);
    if (nz >= 0) {
        qprintf(quiet, "Content mismatch at offset %" PRIu64 "!\n", off + (uint64_t)nz);
        return CMP_DIFFER;
    }
    return CMP_SAME;
}

/* Offset of the first differing sector in the chunk, or -1. */
static int64_t first_difference(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += SECTOR) {
        uint64_t n = len - i < SECTOR ? len - i : SECTOR;
        if (memcmp(a + i, b + i, n) != 0) {
            return (int64_t)i;
        }
    }
    return -1;
}

static int status_of(struct side *s, uint64_t off, uint64_t len, struct block_status *st)
{
    struct error err = {0};
    if (blockdev_block_status(s->bd, off, len, st, &err) < 0 || st->len == 0) {
        report("Sector allocation test failed for %s", s->name);
        return CMP_STATUS_ERR;
    }
    return CMP_SAME;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static int compare_common(struct side *a, struct side *b, uint64_t size, bool strict, bool quiet,
                          struct progress *prog)
{
    uint64_t off = 0;
    while (off < size) {
        struct block_status sa, sb;
        int ret = status_of(a, off, blockdev_size(a->bd) - off, &sa);
        if (!ret) {
            ret = status_of(b, off, blockdev_size(b->bd) - off, &sb);
        }
        if (ret) {
            return ret;
        }
        uint64_t chunk = min_u64(min_u64(sa.len, sb.len), size - off);
        bool alloc_a = sa.flags & BDEV_STATUS_ALLOCATED, alloc_b = sb.flags & BDEV_STATUS_ALLOCATED;
        const unsigned kind = BDEV_STATUS_DATA | BDEV_STATUS_ZERO | BDEV_STATUS_ALLOCATED |
                              BDEV_STATUS_OFFSET_VALID;
        if (strict && (sa.flags & kind) != (sb.flags & kind)) {
            qprintf(quiet, "Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            return CMP_DIFFER;
        }
        if ((sa.flags & BDEV_STATUS_ZERO) && (sb.flags & BDEV_STATUS_ZERO)) {
            /* both read as zeros */
        } else if (alloc_a == alloc_b) {
            if (alloc_a) {
                chunk = min_u64(chunk, COMPARE_CHUNK);
                if ((ret = read_side(a, off, chunk)) || (ret = read_side(b, off, chunk))) {
                    return ret;
                }
                int64_t d = first_difference(a->buf, b->buf, chunk);
                if (d >= 0) {
                    qprintf(quiet, "Content mismatch at offset %" PRIu64 "!\n", off + (uint64_t)d);
                    return CMP_DIFFER;
                }
            }
        } else {
            chunk = min_u64(chunk, COMPARE_CHUNK);
            ret = check_zero(alloc_a ? a : b, off, chunk, quiet);
            if (ret) {
                return ret;
            }
        }
        off += chunk;
        progress_add(prog, chunk);
    }
    return CMP_SAME;
}

/* The longer image must read as zeros past the end of the shorter one. */
static int compare_tail(struct side *longer, uint64_t off, bool quiet, struct progress *prog)
{
    uint64_t size = blockdev_size(longer->bd);
    while (off < size) {
        struct block_status st;
        int ret = status_of(longer, off, size - off, &st);
        if (ret) {
            return ret;
        }
        uint64_t chunk = st.len;
        if ((st.flags & BDEV_STATUS_ALLOCATED) && !(st.flags & BDEV_STATUS_ZERO)) {
            chunk = min_u64(chunk, COMPARE_CHUNK);
            ret = check_zero(longer, off, chunk, quiet);
            if (ret) {
                return ret;
            }
        }
        off += chunk;
        progress_add(prog, chunk);
    }
    return CMP_SAME;
}

int cmd_compare(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL, *cache = "writeback";
    bool strict = false, quiet = false, show_progress = false, share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': cache = optarg; break;
        case 'p': show_progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
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
    if (quiet) {
        show_progress = false;
    }
    if (optind != argc - 2) {
        usage_error("Expecting two image file names");
    }
    bool no_cache;
    if (parse_cache_mode(cache, &no_cache) < 0) {
        report("Invalid source cache option: %s", cache);
        return CMP_OPEN_ERR;
    }
    unsigned flags = BDEV_READ_ONLY | (share ? BDEV_FORCE_SHARE : 0) | (no_cache ? BDEV_NO_CACHE : 0);
    struct side a = { .name = argv[optind] }, b = { .name = argv[optind + 1] };
    int ret = CMP_OPEN_ERR;
    a.bd = image_open(a.name, fmt1, flags);
    if (!a.bd) {
        return CMP_OPEN_ERR;
    }
    b.bd = image_open(b.name, fmt2, flags);
    if (!b.bd) {
        blockdev_close(a.bd);
        return CMP_OPEN_ERR;
    }
    a.buf = aligned_alloc(4096, COMPARE_CHUNK);
    b.buf = aligned_alloc(4096, COMPARE_CHUNK);
    uint64_t size_a = blockdev_size(a.bd), size_b = blockdev_size(b.bd);
    struct progress prog;
    progress_init(&prog, show_progress, size_a > size_b ? size_a : size_b);
    if (strict && size_a != size_b) {
        qprintf(quiet, "Strict mode: Image size mismatch!\n");
        ret = CMP_DIFFER;
        goto out;
    }
    ret = compare_common(&a, &b, min_u64(size_a, size_b), strict, quiet, &prog);
    if (ret == CMP_SAME && size_a != size_b) {
        qprintf(quiet, "Warning: Image size mismatch!\n");
        ret = compare_tail(size_a > size_b ? &a : &b, min_u64(size_a, size_b), quiet, &prog);
    }
    if (ret == CMP_SAME) {
        qprintf(quiet, "Images are identical.\n");
    }
out:
    /* qemu-img ends compare's progress with a bare newline after the verdict. */
    if (prog.enabled) {
        putchar('\n');
        prog.enabled = false;
    }
    progress_finish(&prog);
    free(a.buf);
    free(b.buf);
    blockdev_close(a.bd);
    blockdev_close(b.bd);
    return ret;
}
