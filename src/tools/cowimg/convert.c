/* cowimg convert: copy one or more images (concatenated) into a new image,
 * with N worker threads. Each worker takes the next chunk of the virtual disk,
 * finds what it holds (block status, zero detection), reads it, and writes it
 * out; without -W uncompressed writes happen in disk order, as qemu-img does. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "cowimg.h"
#include "util/zero.h"
#include "util/options.h"
#include "util/progress.h"

#define CHUNK_SIZE (2u << 20)
#define MAX_WORKERS 16
#define MAX_SOURCES 64

struct source {
    const char *name;
    struct blockdev *bd;
    uint64_t start;     /* offset of this source in the concatenated disk */
};

struct convert {
    struct source src[MAX_SOURCES];
    int nsrc;
    struct blockdev *target;
    const char *target_name;
    uint64_t total;
    uint32_t chunk;
    uint64_t min_sparse;        /* 0: write everything as data */
    bool compress, ordered, zero_init, target_has_backing;

    pthread_mutex_t lock;
    pthread_cond_t turn_cv;
    uint64_t cursor;            /* next offset to hand out */
    uint64_t next_seq, write_turn;
    bool failed;
    struct progress progress;
};

enum op_kind { OP_DATA, OP_ZERO, OP_COMPRESSED };

struct write_op {
    enum op_kind kind;
    uint64_t off, len;          /* in the target */
    const uint8_t *buf;
};

struct chunk_work {
    uint64_t off, len, seq;
    uint8_t *buf;               /* chunk-sized, aligned */
    struct write_op *ops;
    int nops, cap;
    bool overflow;
    uint64_t copied;            /* bytes of the runs qemu-img's progress counts */
};

static void fail(struct convert *cv)
{
    pthread_mutex_lock(&cv->lock);
    cv->failed = true;
    pthread_cond_broadcast(&cv->turn_cv);
    pthread_mutex_unlock(&cv->lock);
}

static struct source *source_at(struct convert *cv, uint64_t off)
{
    for (int i = cv->nsrc - 1; i >= 0; i--) {
        if (off >= cv->src[i].start) {
            return &cv->src[i];
        }
    }
    return &cv->src[0];
}

/* Hands out the next chunk; chunks never cross a source boundary, except
 * compressed ones: a compressed cluster is written whole, whichever
 * sources it spans. */
static bool next_chunk(struct convert *cv, struct chunk_work *w)
{
    pthread_mutex_lock(&cv->lock);
    bool have = !cv->failed && cv->cursor < cv->total;
    if (have) {
        struct source *s = source_at(cv, cv->cursor);
        uint64_t end = cv->compress ? cv->total : s->start + blockdev_size(s->bd);
        uint64_t grid_end = (cv->cursor / cv->chunk + 1) * cv->chunk;
        w->off = cv->cursor;
        w->len = (grid_end < end ? grid_end : end) - cv->cursor;
        w->seq = cv->next_seq++;
        cv->cursor += w->len;
    }
    pthread_mutex_unlock(&cv->lock);
    return have;
}

static void add_op(struct chunk_work *w, enum op_kind kind, uint64_t off, uint64_t len,
                   const uint8_t *buf)
{
    struct write_op *last = w->nops ? &w->ops[w->nops - 1] : NULL;
    if (last && last->kind == kind && kind != OP_COMPRESSED && last->off + last->len == off &&
        (kind == OP_ZERO || last->buf + last->len == buf)) {
        last->len += len;
        return;
    }
    if (w->nops == w->cap) {
        w->overflow = true;     /* a source fragmented below 512 bytes per run */
        return;
    }
    w->ops[w->nops++] = (struct write_op){ kind, off, len, buf };
}

static void add_zero(struct convert *cv, struct chunk_work *w, uint64_t off, uint64_t len)
{
    if (!cv->zero_init) {
        add_op(w, OP_ZERO, off, len, NULL);
    }
}

/* Splits data just read into data and zero runs of at least min_sparse bytes. */
static void add_data(struct convert *cv, struct chunk_work *w, uint64_t off, uint64_t len,
                     const uint8_t *buf)
{
    if (cv->compress) {
        /* -S 0 writes every cluster, zeros compressed too, as qemu-img does. */
        if (cv->min_sparse && mem_is_zero(buf, len)) {
            add_zero(cv, w, off, len);
        } else {
            add_op(w, OP_COMPRESSED, off, len, buf);
        }
        return;
    }
    if (cv->min_sparse == 0) {
        add_op(w, OP_DATA, off, len, buf);
        return;
    }
    if (mem_is_zero(buf, len)) {
        /* A run read all zeros is a hole however short, as qemu-img sees it. */
        add_zero(cv, w, off, len);
        return;
    }
    uint64_t pos = 0;
    while (pos < len) {
        uint64_t step = cv->min_sparse - ((off + pos) % cv->min_sparse);
        if (step > len - pos) {
            step = len - pos;
        }
        /* A short zero tail is not worth a hole: only whole blocks count. */
        bool zero = step == cv->min_sparse && mem_is_zero(buf + pos, step);
        if (zero) {
            add_zero(cv, w, off + pos, step);
        } else {
            add_op(w, OP_DATA, off + pos, step, buf + pos);
        }
        pos += step;
    }
}

/* A compressed chunk that spans sources: read from each, written whole. */
static int plan_spanning_chunk(struct convert *cv, struct chunk_work *w)
{
    for (uint64_t pos = 0; pos < w->len;) {
        struct source *s = source_at(cv, w->off + pos);
        uint64_t src_off = w->off + pos - s->start;
        uint64_t n = blockdev_size(s->bd) - src_off;
        if (n > w->len - pos) {
            n = w->len - pos;
        }
        struct error err = {0};
        if (blockdev_pread(s->bd, src_off, w->buf + pos, n, &err) < 0) {
            report("error while reading at byte %" PRIu64 ": %s", w->off + pos, err.msg);
            return -1;
        }
        pos += n;
    }
    add_data(cv, w, w->off, w->len, w->buf);
    w->copied = w->len;
    return 0;
}

/* What plan_chunk does with a run of a source, by its block status. */
enum run_action { RUN_FROM_BACKING, RUN_ZERO, RUN_COPY };

static enum run_action run_action(const struct convert *cv, const struct source *s,
                                  const struct block_status *st)
{
    bool defined_here = st->depth == 0 && (st->flags & BDEV_STATUS_ALLOCATED);
    if (cv->target_has_backing && !defined_here && blockdev_backing(s->bd)) {
        /* The target's backing file provides what the source's backing did
         * (a source without a backing file reads zeros there: written below). */
        return RUN_FROM_BACKING;
    }
    if (!(st->flags & BDEV_STATUS_DATA) && cv->min_sparse && !cv->compress) {
        return RUN_ZERO;
    }
    return RUN_COPY;
}

/* qemu-img's progress counts the runs it copies as data (zeros too with
 * -S 0), so scripts see the same steps (iotest 086). */
static bool run_counts(const struct convert *cv, const struct block_status *st,
                       enum run_action action)
{
    return action == RUN_COPY && ((st->flags & BDEV_STATUS_DATA) || !cv->min_sparse);
}

/* The bytes progress counts, found as qemu-img does: a pass over the
 * sources' block status before copying. */
static uint64_t progress_total(struct convert *cv)
{
    uint64_t total = 0;
    for (int i = 0; i < cv->nsrc; i++) {
        struct source *s = &cv->src[i];
        uint64_t size = blockdev_size(s->bd);
        for (uint64_t off = 0; off < size;) {
            struct block_status st;
            struct error err = {0};
            if (blockdev_block_status(s->bd, off, size - off, &st, &err) < 0 || st.len == 0) {
                return cv->total;   /* the copy reports the error */
            }
            total += run_counts(cv, &st, run_action(cv, s, &st)) ? st.len : 0;
            off += st.len;
        }
    }
    return total;
}

/* Phase 1 (parallel): read the chunk and decide what to write. */
static int plan_chunk(struct convert *cv, struct chunk_work *w)
{
    struct source *s = source_at(cv, w->off);
    w->nops = 0;
    w->overflow = false;
    if (w->off + w->len > s->start + blockdev_size(s->bd)) {
        return plan_spanning_chunk(cv, w);
    }
    uint64_t pos = 0;
    w->nops = 0;
    w->overflow = false;
    w->copied = 0;
    while (pos < w->len) {
        uint64_t src_off = w->off - s->start + pos;
        struct block_status st;
        struct error err = {0};
        if (blockdev_block_status(s->bd, src_off, w->len - pos, &st, &err) < 0 || st.len == 0) {
            report("error while reading block status at offset %" PRIu64 ": %s", src_off,
                   err.msg[0] ? err.msg : "no progress");
            return -1;
        }
        uint64_t n = st.len < w->len - pos ? st.len : w->len - pos;
        if (cv->compress && n < w->len - pos) {
            n = w->len - pos;   /* one compressed cluster: read it whole */
        }
        enum run_action action = run_action(cv, s, &st);
        w->copied += run_counts(cv, &st, action) ? n : 0;
        if (action == RUN_ZERO) {
            add_zero(cv, w, w->off + pos, n);
        } else if (action == RUN_COPY) {
            if (blockdev_pread(s->bd, src_off, w->buf + pos, n, &err) < 0) {
                report("error while reading at byte %" PRIu64 ": %s", w->off + pos, err.msg);
                return -1;
            }
            add_data(cv, w, w->off + pos, n, w->buf + pos);
        }
        pos += n;
    }
    if (w->overflow) {
        report("Source '%s' is too fragmented around offset %" PRIu64, s->name, w->off);
        return -1;
    }
    return 0;
}

/* Phase 2: write; uncompressed writes wait for their turn unless -W. */
static int write_chunk(struct convert *cv, struct chunk_work *w)
{
    bool wait_turn = cv->ordered && !cv->compress;
    if (wait_turn) {
        pthread_mutex_lock(&cv->lock);
        while (cv->write_turn != w->seq && !cv->failed) {
            pthread_cond_wait(&cv->turn_cv, &cv->lock);
        }
        bool failed = cv->failed;
        pthread_mutex_unlock(&cv->lock);
        if (failed) {
            return -1;
        }
    }
    int ret = 0;
    for (int i = 0; i < w->nops && ret == 0; i++) {
        struct write_op *op = &w->ops[i];
        struct error err = {0};
        switch (op->kind) {
        case OP_DATA:
            ret = blockdev_pwrite(cv->target, op->off, op->buf, op->len, &err);
            break;
        case OP_ZERO:
            ret = blockdev_pwrite_zeroes(cv->target, op->off, op->len, BDEV_ZERO_MAY_UNMAP, &err);
            break;
        case OP_COMPRESSED:
            ret = blockdev_pwrite_compressed(cv->target, op->off, op->buf, op->len, &err);
            break;
        }
        if (ret < 0) {
            report("error while writing at byte %" PRIu64 ": %s", op->off, err.msg);
        }
    }
    if (wait_turn) {
        pthread_mutex_lock(&cv->lock);
        cv->write_turn++;
        pthread_cond_broadcast(&cv->turn_cv);
        pthread_mutex_unlock(&cv->lock);
    }
    return ret;
}

static void *worker(void *opaque)
{
    struct convert *cv = opaque;
    struct chunk_work *w = calloc(1, sizeof(*w));
    /* aligned_alloc wants a multiple of the alignment: chunks may be one 512-byte cluster. */
    w->buf = aligned_alloc(4096, (cv->chunk + 4095) & ~(size_t)4095);
    w->cap = (int)(cv->chunk / 512) + 64;
    w->ops = calloc((size_t)w->cap, sizeof(*w->ops));
    while (next_chunk(cv, w)) {
        int ret = plan_chunk(cv, w);
        if (ret < 0) {
            /* Still take our turn so that ordered writers behind us are released. */
            fail(cv);
            break;
        }
        if (write_chunk(cv, w) < 0) {
            fail(cv);
            break;
        }
        progress_add(&cv->progress, w->copied);
    }
    free(w->ops);
    free(w->buf);
    free(w);
    return NULL;
}

static int run_workers(struct convert *cv, int n)
{
    pthread_t threads[MAX_WORKERS];
    int started = 0;
    /* One worker needs no thread of its own. */
    for (int i = 0; n > 1 && i < n; i++) {
        if (pthread_create(&threads[i], NULL, worker, cv) != 0) {
            break;
        }
        started++;
    }
    if (started == 0) {
        worker(cv);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    return cv->failed ? -1 : 0;
}

struct convert_args {
    const char *fmt, *out_fmt, *backing, *backing_fmt, *cache, *src_cache, *snapshot;
    struct options opts;
    bool has_opts, compress, skip_create, quiet, show_progress, share, target_is_zero;
    bool out_of_order, copy_offload, sparse_given, bitmaps, skip_broken, salvage;
    bool target_image_opts, out_fmt_given;
    int64_t min_sparse;
    long workers;
};

static void parse_args(int argc, char **argv, struct convert_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "bitmaps", no_argument, NULL, OPT_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 'f': a->fmt = optarg; break;
        case 'O': a->out_fmt = optarg; a->out_fmt_given = true; break;
        case 'B': a->backing = optarg; break;
        case 'F': a->backing_fmt = optarg; break;
        case 'C': a->copy_offload = true; break;
        case 'c': a->compress = true; break;
        case 'o':
            if (add_option_list(&a->opts, optarg) < 0) {
                exit(EXIT_ERR);
            }
            a->has_opts = true;
            break;
        case 'l': a->snapshot = optarg; break;
        case 'S':
            if (parse_size_arg("buffer size for sparse output", optarg, 0, INT64_MAX,
                               &a->min_sparse) < 0) {
                exit(EXIT_ERR);
            }
            if (a->min_sparse % 512 || a->min_sparse > (int64_t)32768 * 512) {
                report("Invalid buffer size for sparse output specified. Valid sizes are "
                       "multiples of 512 up to 16777216. Select 0 to disable sparse detection "
                       "(fully allocates output).");
                exit(EXIT_ERR);
            }
            a->sparse_given = true;
            break;
        case 'p': a->show_progress = true; break;
        case 't': a->cache = optarg; break;
        case 'T': a->src_cache = optarg; break;
        case 'q': a->quiet = true; break;
        case 'n': a->skip_create = true; break;
        case 'm': {
            char *end;
            a->workers = strtol(optarg, &end, 0);
            if (*end || end == optarg || a->workers < 1 || a->workers > MAX_WORKERS) {
                report("Invalid number of coroutines. Allowed number of coroutines is between "
                       "1 and %d", MAX_WORKERS);
                exit(EXIT_ERR);
            }
            break;
        }
        case 'W': a->out_of_order = true; break;
        case 'U': a->share = true; break;
        case 'r': break;    /* rate limit: accepted, not applied */
        case OPT_TARGET_IS_ZERO: a->target_is_zero = true; break;
        case 'h': print_help();
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        case OPT_TARGET_IMAGE_OPTS: a->target_image_opts = true; break;
        case OPT_BITMAPS: a->bitmaps = true; break;
        case OPT_SKIP_BROKEN: a->skip_broken = true; break;
        case OPT_SALVAGE: a->salvage = true; break;
        default: bad_option(c, argv);
        }
    }
}

/* Checks of option combinations, in qemu-img's order. */
static int check_args(struct convert_args *a)
{
    if (a->skip_broken && !a->bitmaps) {
        report("Use of --skip-broken-bitmaps requires --bitmaps");
    } else if (a->copy_offload && a->compress) {
        report("Cannot enable copy offloading when -c is used");
    } else if (a->copy_offload && a->sparse_given) {
        report("Cannot enable copy offloading when -S is used");
    } else if (a->copy_offload && a->salvage) {
        report("Cannot use copy offloading in salvaging mode");
    } else if (a->salvage) {
        report("--salvage is not supported");
    } else if (a->target_image_opts && !a->skip_create) {
        report("--target-image-opts requires use of -n flag");
    } else if (a->skip_create && a->has_opts) {
        report("-o has no effect when skipping image creation");
    } else if (a->target_is_zero && !a->skip_create) {
        report("--target-is-zero requires use of -n flag");
    } else {
        return 0;
    }
    return -1;
}

/* -l takes "NAME", "snapshot.id=ID" or "snapshot.name=NAME" (the id wins
 * when both are given, as QEMU matches ids first). */
static int load_snapshot(struct blockdev *bd, const char *spec)
{
    struct options o = { 0 };
    struct error err = { 0 };
    const char *which = spec;
    if (strchr(spec, '=')) {
        if (options_parse(&o, spec, NULL, &err) < 0) {
            report("%s", err.msg);
            return -1;
        }
        const char *id = options_get(&o, "snapshot.id");
        const char *name = options_get(&o, "snapshot.name");
        which = id ? id : name;
        if (!which || options_check_unused(&o, NULL, &err) < 0) {
            report("Invalid snapshot option '%s'", spec);
            options_free(&o);
            return -1;
        }
    }
    int ret = blockdev_has_snapshots(bd) ? blockdev_snapshot_load_tmp(bd, which, &err)
                                    : error_set(&err, -ENOTSUP, "Snapshots are not supported by "
                                                "format '%s'", blockdev_format(bd));
    if (ret < 0) {
        report("Failed to load snapshot: %s", err.msg);
    }
    options_free(&o);
    return ret;
}

static int open_sources(struct convert *cv, struct convert_args *a, char **names, int n)
{
    bool no_cache = false;
    if (a->src_cache && parse_cache_mode(a->src_cache, &no_cache) < 0) {
        report("Invalid source cache option: %s", a->src_cache);
        return -1;
    }
    unsigned flags = BDEV_READ_ONLY | (a->share ? BDEV_FORCE_SHARE : 0) |
                     (no_cache ? BDEV_NO_CACHE : 0);
    for (int i = 0; i < n; i++) {
        struct blockdev *bd = image_open(names[i], a->fmt, flags);
        if (!bd) {
            return -1;
        }
        if (a->snapshot && load_snapshot(bd, a->snapshot) < 0) {
            blockdev_close(bd);
            return -1;
        }
        cv->src[cv->nsrc++] = (struct source){ names[i], bd, cv->total };
        cv->total += blockdev_size(bd);
    }
    return 0;
}

static int create_target(struct convert *cv, struct convert_args *a)
{
    const char *prealloc = options_get(&a->opts, "preallocation");
    if (a->compress && strcmp(a->out_fmt, "qcow2") != 0 && format_known(a->out_fmt)) {
        report("Compression not supported for this file format");
        return -1;
    }
    if (a->compress && prealloc && strcmp(prealloc, "off") != 0) {
        report("Compression and preallocation not supported at the same time");
        return -1;
    }
    if (a->skip_create) {
        return 0;
    }
    char context[PATH_MAX + 64];
    snprintf(context, sizeof(context), "%s: error while converting %s", cv->target_name,
             a->out_fmt);
    struct create_request req = {
        .filename = cv->target_name, .format = a->out_fmt, .size = cv->total,
        .size_given = true, .size_wins = true, .backing_file = a->backing, .backing_format = a->backing_fmt,
        .opts = &a->opts, .quiet = true, .error_context = context,
        /* qemu-img convert creates without opening the backing file (the
         * size is the source's): a bad one fails the target's open after */
        .unsafe = true,
    };
    return image_create(&req);
}

static int open_target(struct convert *cv, struct convert_args *a)
{
    bool no_cache = false;
    if (a->cache && parse_cache_mode(a->cache, &no_cache) < 0) {
        report("Invalid cache option: %s", a->cache);
        return -1;
    }
    /* "unsafe", convert's default as in qemu-img, syncs nothing, not even
     * to order metadata: a power loss during a convert loses the target. */
    bool unsafe = !a->cache || strcmp(a->cache, "unsafe") == 0;
    /* --target-image-opts: the target name is options, as --image-opts
     * makes the sources' (and -O is then refused as -f is there). */
    bool sources_as_opts = image_opts;
    image_opts = a->target_image_opts;
    cv->target = image_open(cv->target_name, a->target_image_opts && !a->out_fmt_given ? NULL : a->out_fmt,
                            (no_cache ? BDEV_NO_CACHE : 0) | (unsafe ? BDEV_NO_FLUSH : 0));
    image_opts = sources_as_opts;
    if (!cv->target) {
        return -1;
    }
    if (a->skip_create && blockdev_size(cv->target) < cv->total) {
        report("output file is smaller than input file");
        return -1;
    }
    if (a->compress && !blockdev_can_compress(cv->target)) {
        report("Compression not supported for this file format");
        return -1;
    }
    return 0;
}

int cmd_convert(int argc, char **argv)
{
    struct convert_args a = { .out_fmt = "raw", .min_sparse = 4096, .workers = 8 };
    parse_args(argc, argv, &a);
    int ret = EXIT_ERR;
    struct convert *cv = calloc(1, sizeof(*cv));
    pthread_mutex_init(&cv->lock, NULL);
    pthread_cond_init(&cv->turn_cv, NULL);
    int nsrc = argc - optind - 1;
    for (int i = 0; i < a.opts.count; i++) {
        if (!strcmp(a.opts.items[i].key, "help") || !strcmp(a.opts.items[i].key, "?")) {
            ret = print_create_options_help(a.out_fmt, nsrc >= 1 ? argv[argc - 1] : NULL);
            goto out;
        }
    }
    if (nsrc < 1) {
        report("Must specify image file name");
        goto out;
    }
    if (nsrc > MAX_SOURCES) {
        report("Too many source images (at most %d)", MAX_SOURCES);
        goto out;
    }
    if (check_args(&a) < 0) {
        goto out;
    }
    cv->target_name = argv[argc - 1];
    if (open_sources(cv, &a, argv + optind, nsrc) < 0) {
        goto out;
    }
    if (a.backing && nsrc > 1) {
        report("Having a backing file for the target makes no sense when concatenating "
               "multiple input images");
        goto out;
    }
    if (a.backing && !a.skip_create && !a.backing_fmt && !options_get(&a.opts, "backing_fmt")) {
        report("Use of backing file requires explicit backing format");
        goto out;
    }
    if (a.backing && a.target_is_zero) {
        report("Cannot use --target-is-zero when the destination image has a backing file");
        goto out;
    }
    if (a.bitmaps && nsrc > 1) {
        report("Copying bitmaps only possible with single source");
        goto out;
    }
    if (a.bitmaps && convert_check_bitmaps(cv->src[0].bd, a.skip_broken) < 0) {
        goto out;
    }
    if (!a.skip_create && !format_known(a.out_fmt)) {
        report("Unknown file format '%s'", a.out_fmt);
        goto out;
    }
    if (create_target(cv, &a) < 0 || open_target(cv, &a) < 0) {
        goto out;
    }
    if (a.bitmaps && !blockdev_supports_persistent_bitmaps(cv->target)) {
        report("Format driver '%s' does not support bitmaps", blockdev_format(cv->target));
        goto out;
    }
    cv->compress = a.compress;
    cv->ordered = !a.out_of_order;
    cv->min_sparse = (uint64_t)a.min_sparse;
    cv->target_has_backing = a.backing || options_get(&a.opts, "backing_file");
    cv->zero_init = (!a.skip_create && !cv->target_has_backing) || a.target_is_zero;
    cv->chunk = CHUNK_SIZE;
    if (cv->compress) {
        cv->chunk = blockdev_cluster_size(cv->target);
    } else if (blockdev_cluster_size(cv->target) > CHUNK_SIZE) {
        cv->chunk = blockdev_cluster_size(cv->target);
    }
    bool show_progress = a.show_progress && !a.quiet;
    progress_init(&cv->progress, show_progress, show_progress ? progress_total(cv) : cv->total);
    int rc = run_workers(cv, (int)a.workers);
    struct error err = {0};
    /* convert's default cache mode is "unsafe", as in qemu-img: no sync. */
    bool unsafe = !a.cache || strcmp(a.cache, "unsafe") == 0;
    if (rc == 0 && !unsafe && blockdev_flush(cv->target, &err) < 0) {
        report("%s", err.msg);
        rc = -1;
    }
    if (rc == 0 && a.bitmaps && convert_copy_bitmaps(cv->src[0].bd, cv->target,
                                                    a.skip_broken) < 0) {
        rc = -1;
    }
    if (rc == 0) {
        progress_finish(&cv->progress);
    } else {
        pthread_mutex_destroy(&cv->progress.lock);
    }
    ret = rc == 0 ? EXIT_OK : EXIT_ERR;
out:
    for (int i = 0; i < cv->nsrc; i++) {
        blockdev_close(cv->src[i].bd);
    }
    blockdev_close(cv->target);
    pthread_mutex_destroy(&cv->lock);
    pthread_cond_destroy(&cv->turn_cv);
    free(cv);
    options_free(&a.opts);
    return ret;
}
