#include "block/block_int.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/hostfile.h"
#include "util/zero.h"
#include "util/warning.h"


extern const struct blockdev_driver qcow2_driver;
extern const struct blockdev_driver raw_driver;

static const struct blockdev_driver *const drivers[] = { &qcow2_driver, &raw_driver };

#define MAX_CHAIN_DEPTH 64

const struct blockdev_driver *blockdev_find_driver(const char *format)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        if (strcmp(drivers[i]->format_name, format) == 0) {
            return drivers[i];
        }
    }
    return NULL;
}

const struct blockdev_driver *blockdev_probe_file(struct hostfile *file)
{
    uint8_t buf[BLOCKDEV_PROBE_SIZE];
    if (hostfile_pread(file, 0, buf, sizeof(buf)) < 0) {
        return NULL;
    }
    return blockdev_probe_buf(buf);
}

const struct blockdev_driver *blockdev_probe_buf(const uint8_t *buf)
{
    const struct blockdev_driver *best = NULL;
    int best_score = 0;
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        int score = drivers[i]->probe ? drivers[i]->probe(buf, BLOCKDEV_PROBE_SIZE) : 0;
        if (score > best_score) {
            best = drivers[i];
            best_score = score;
        }
    }
    return best;
}

static const char *probe_foreign_file(struct hostfile *file)
{
    uint8_t head[BLOCKDEV_PROBE_SIZE], tail[512];
    if (hostfile_pread(file, 0, head, sizeof(head)) < 0) {
        return NULL;
    }
    int64_t size = hostfile_size(file);
    bool have_tail = size >= (int64_t)sizeof(tail) &&
                     hostfile_pread(file, (uint64_t)size - sizeof(tail), tail, sizeof(tail)) == 0;
    return blockdev_probe_foreign(head, sizeof(head), have_tail ? tail : NULL, sizeof(tail));
}

#define NULL_CO_SIZE (1ULL << 30)

static bool is_null_driver(const char *name)
{
    return !strcmp(name, "null-co") || !strcmp(name, "null-aio");
}

static bool is_null_co(const char *filename, const struct blockdev_open_opts *opts)
{
    if (opts->protocol) {
        return is_null_driver(opts->protocol);
    }
    return !strncmp(filename, "null-co://", 10) || !strncmp(filename, "null-aio://", 11);
}

static int check_chain(const char *filename, struct hostfile *file,
                       const struct blockdev_open_opts *opts, struct error *err)
{
    int depth = 0;
    for (const struct blockdev *p = opts->parent; p; p = p->parent) {
        if (p->dev == file->dev && p->ino == file->ino) {
            return error_set(err, -ELOOP, "Backing file '%s' is part of a loop in the backing chain",
                             filename);
        }
        if (++depth >= MAX_CHAIN_DEPTH) {
            return error_set(err, -ELOOP, "Backing chain of '%s' is deeper than %d images",
                             filename, MAX_CHAIN_DEPTH);
        }
    }
    return 0;
}

/* Whether an NBD export holds a qcow2 image: its first sector probes so. */
static bool nbd_export_is_qcow2(struct blockdev *node)
{
    uint8_t buf[BLOCKDEV_PROBE_SIZE];
    struct error err = {0};
    if (blockdev_size(node) < sizeof(buf) || blockdev_pread(node, 0, buf, sizeof(buf), &err) < 0) {
        return false;
    }
    const struct blockdev_driver *drv = blockdev_probe_buf(buf);
    return drv && strcmp(drv->format_name, "qcow2") == 0;
}

/* An NBD export is the disk (raw), or holds an image of the format given or
 * probed: then that format node sits on the export's node, as in QEMU. */
static int open_nbd(struct blockdev **out, const char *filename,
                    const struct blockdev_open_opts *opts, struct error *err)
{
    if (opts->format && strcmp(opts->format, "raw") == 0) {
        return blockdev_nbd_open(out, filename, opts, err);
    }
    struct blockdev_open_opts o = *opts;
    o.blkdebug = NULL;
    o.format = "raw";
    struct blockdev *node;
    int ret = blockdev_nbd_open(&node, filename, &o, err);
    if (ret < 0) {
        return ret;
    }
    if (!opts->format && !nbd_export_is_qcow2(node)) {
        blockdev_close(node);   /* a probed raw export keeps its block-0 guard */
        return blockdev_nbd_open(out, filename, opts, err);
    }
    o.format = opts->format ? opts->format : "qcow2";
    o.file_child = node;
    ret = blockdev_open(out, filename, &o, err);
    if (ret == 0 && !opts->format) {
        (*out)->probed = true;
    }
    return ret;
}

int blockdev_open(struct blockdev **out, const char *filename, const struct blockdev_open_opts *opts,
                  struct error *err)
{
    static const struct blockdev_open_opts no_opts;
    if (!opts) {
        opts = &no_opts;
    }
    if (strncmp(filename, "json:", 5) == 0 && !opts->file_child) {
        int ret = blockdev_open_spec(out, filename, NULL, opts, err);
        if (ret == 0 && !(*out)->open_name) {
            (*out)->open_name = strdup(filename);
        }
        return ret;
    }
    char *stripped = opts->file_child ? NULL : hostfile_strip_prefix(filename);
    if (stripped) {
        /* An explicit file: names the file itself, colons and all. */
        int ret = blockdev_open(out, stripped, opts, err);
        free(stripped);
        return ret;
    }
    if (strncmp(filename, "blkdebug:", 9) == 0 && !opts->blkdebug && !opts->file_child) {
        /* blkdebug:CONFIG:FILE, as QEMU parses it. */
        char *config;
        const char *file;
        int ret = blkdebug_split_name(filename, &config, &file, err);
        if (ret < 0) {
            return ret;
        }
        struct blockdev_open_opts o = *opts;
        ret = blkdebug_new(&o.blkdebug, config, NULL, NULL, err);
        free(config);
        ret = ret < 0 ? ret : blockdev_open(out, file, &o, err);
        if (ret == 0 && !(*out)->open_name) {
            (*out)->open_name = strdup(filename);
        }
        if (ret == 0 && !(*out)->exact_name) {
            (*out)->exact_name = strdup(filename);
        }
        return ret;
    }
    if (blockdev_is_nbd_name(filename) && !opts->file_child) {
        blkdebug_free(opts->blkdebug);  /* no file under an NBD node to filter */
        return open_nbd(out, filename, opts, err);
    }
    if (opts->format && is_null_driver(opts->format)) {
        /* -f null-co: the protocol is the top node. */
        struct blockdev_open_opts o = *opts;
        o.protocol = o.protocol ? o.protocol : opts->format;
        o.protocol_top = true;
        o.format = "raw";
        return blockdev_open(out, filename, &o, err);
    }
    const struct blockdev_driver *drv = NULL;
    if (opts->format) {
        drv = blockdev_find_driver(opts->format);
        if (!drv) {
            blkdebug_free(opts->blkdebug);
            if (opts->file_child) {
                blockdev_close(opts->file_child);
            }
            return error_set(err, -EINVAL, "Unknown driver '%s'", opts->format);
        }
    }
    struct hostfile *file;
    bool read_only = opts->flags & BDEV_READ_ONLY;
    if ((opts->flags & BDEV_FORCE_SHARE) && !read_only) {
        blkdebug_free(opts->blkdebug);
        if (opts->file_child) {
            blockdev_close(opts->file_child);
        }
        return error_set(err, -EINVAL, "force-share=on can only be used with read-only images");
    }
    bool null_co = is_null_co(filename, opts);
    bool on_node = opts->file_child != NULL;
    int ret = null_co || on_node ? 0 : hostfile_open(&file, filename, read_only,
                                                     opts->flags & BDEV_NO_CACHE, err);
    if (ret < 0) {
        blkdebug_free(opts->blkdebug);
        return ret;
    }
    if (on_node) {
        file = hostfile_over_node(opts->file_child);
    }
    if (null_co) {
        file = hostfile_null_co(filename, opts->null_size ? opts->null_size : NULL_CO_SIZE,
                                opts->null_read_zeroes, read_only);
        /* What it reads without read-zeroes is undefined: nothing to probe. */
        drv = drv ? drv : blockdev_find_driver("raw");
    }
    file->dbg = opts->blkdebug;
    ret = check_chain(filename, file, opts, err);
    if (ret == 0 && !on_node) {     /* a child node holds its own locks */
        ret = blockdev_lock_file(file, opts->flags, err);
    }
    file->no_flush = opts->flags & BDEV_NO_FLUSH;
    if (ret < 0) {
        hostfile_close(file);
        return ret;
    }
    bool probed = !drv || (null_co && !opts->format);
    if (!drv) {
        drv = blockdev_probe_file(file);
        if (!drv || strcmp(drv->format_name, "raw") == 0) {
            const char *foreign = probe_foreign_file(file);
            if (foreign) {
                hostfile_close(file);
                return error_set(err, -ENOTSUP, "Image format '%s' is not supported (cowvisor "
                                 "reads qcow2 and raw images: convert it with qemu-img, or give "
                                 "the format raw to read the file's bytes as a disk)", foreign);
            }
            drv = blockdev_find_driver("raw");
        }
    }
    const char *qcow2_only = opts->compressed_cache_set ? "compressed-cache-size"
                             : opts->data_file ? "data-file.filename" : NULL;
    if (qcow2_only && strcmp(drv->format_name, "qcow2") != 0) {
        hostfile_close(file);
        return error_set(err, -EINVAL, "Block format '%s' does not support the option '%s'",
                         drv->format_name, qcow2_only);
    }
    struct blockdev *bd = NULL;
    ret = drv->open(&bd, file, filename, opts, err);
    if (ret < 0) {
        return ret; /* the driver closed the file */
    }
    bd->probed = probed;
    *out = bd;
    return 0;
}

struct blkdebug *blockdev_blkdebug(struct blockdev *bd)
{
    return bd->file ? bd->file->dbg : NULL;
}

bool blockdev_is_probed_raw(const struct blockdev *bd)
{
    return bd->probed && !bd->read_only && strcmp(bd->drv->format_name, "raw") == 0;
}

int blockdev_check_block0_write(const struct blockdev *bd, uint8_t *sector, uint64_t off, const void *buf,
                                size_t len, struct error *err)
{
    size_t n = len < BLOCKDEV_PROBE_SIZE - off ? len : BLOCKDEV_PROBE_SIZE - off;
    if (buf) {
        memcpy(sector + off, buf, n);
    } else {
        memset(sector + off, 0, n);
    }
    const struct blockdev_driver *drv = blockdev_probe_buf(sector);
    if ((drv && strcmp(drv->format_name, "raw") != 0) ||
        blockdev_probe_foreign(sector, BLOCKDEV_PROBE_SIZE, NULL, 0)) {
        return error_set(err, -EPERM, "Write to block 0 of '%s' refused: the image's format was "
                         "probed as raw, and the write would make it probe as another format "
                         "(specify the raw format explicitly to allow it)", bd->filename);
    }
    return 0;
}

void blockdev_warn_probed_raw(const struct blockdev *bd, const char *filename)
{
    if (blockdev_is_nbd_name(filename)) {
        filename = bd->filename;    /* QEMU names an NBD node by its URI */
    }
    if (blockdev_is_probed_raw(bd)) {
        warning_print("WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                      "         Automatically detecting the format is dangerous for raw images, "
                      "write operations on block 0 will be restricted.\n"
                      "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                      filename);
    }
}

void blockdev_init(struct blockdev *bd, const struct blockdev_driver *drv, const char *filename,
                   struct hostfile *file, const struct blockdev_open_opts *opts)
{
    bd->drv = drv;
    bd->file = file;
    bd->open_flags = opts->flags;
    bd->inactive = opts->flags & BDEV_INACTIVE;
    bd->filename = strdup(filename);
    bd->read_only = opts->flags & BDEV_READ_ONLY;
    bd->dev = file->dev;
    bd->ino = file->ino;
    bd->parent = opts->parent;
}

int blockdev_open_backing(struct blockdev *bd, const struct blockdev_open_opts *opts,
                          struct error *err)
{
    if (!bd->backing_filename || (opts->flags & BDEV_NO_BACKING)) {
        return 0;
    }
    if (opts->backing_format) {
        free(bd->backing_format);
        bd->backing_format = strdup(opts->backing_format);
    }
    char *path = blockdev_backing_path(bd->filename, bd->backing_filename);
    struct blockdev_open_opts bopts = {
        .format = bd->backing_format,
        /* Backing files are never written, except by commit which reopens. */
        .flags = BDEV_READ_ONLY | (opts->flags & (BDEV_FORCE_SHARE | BDEV_NO_CACHE | BDEV_NO_LOCK |
                                                   BDEV_NO_FLUSH | BDEV_INACTIVE)),
        .parent = bd,
    };
    int ret = blockdev_open(&bd->backing, path, &bopts, err);
    if (ret < 0) {
        error_prefix(err, "Could not open backing file");
    }
    free(path);
    return ret;
}

void blockdev_close(struct blockdev *bd)
{
    if (!bd) {
        return;
    }
    struct blockdev *backing = bd->backing;
    char *filename = bd->filename;
    char *backing_filename = bd->backing_filename;
    char *backing_format = bd->backing_format;
    char *open_name = bd->open_name;
    char *exact_name = bd->exact_name;
    blockdev_bitmaps_close(bd);
    bd->drv->close(bd);
    free(open_name);
    free(exact_name);
    free(filename);
    free(backing_filename);
    free(backing_format);
    blockdev_close(backing);
}

static int check_range(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err)
{
    if (off > bd->size || len > bd->size - off) {
        return error_set(err, -EIO, "Request out of range: offset %llu, length %llu, disk size %llu",
                         (unsigned long long)off, (unsigned long long)len,
                         (unsigned long long)bd->size);
    }
    return 0;
}

static int check_writable(struct blockdev *bd, struct error *err)
{
    if (bd->read_only) {
        return error_set(err, -EACCES, "Block node is read-only");
    }
    if (bd->inactive) {
        return error_set(err, -EPERM, "Block node '%s' is inactive: an incoming migration has not "
                         "handed it over yet, or it was handed to the destination", bd->filename);
    }
    return 0;
}

static int check_write(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err)
{
    int ret = check_writable(bd, err);
    return ret < 0 ? ret : check_range(bd, off, len, err);
}

int blockdev_pread(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err)
{
    int ret = check_range(bd, off, len, err);
    if (ret < 0 || len == 0) {
        return ret;
    }
    return bd->drv->pread(bd, off, buf, len, err);
}

int blockdev_pread_nowait(struct blockdev *bd, uint64_t off, void *buf, size_t len)
{
    int ret = check_range(bd, off, len, NULL);
    if (ret < 0 || len == 0) {
        return ret;
    }
    return bd->drv->pread_nowait ? bd->drv->pread_nowait(bd, off, buf, len) : -EAGAIN;
}

/* A layer showing a snapshot loaded read-only: a reopen for writing
 * would write its file's active disk (a block commit into a replay's
 * recording), a cache invalidation would drop the snapshot for it. */
static int refuse_snapshot_view(const struct blockdev *bd, struct error *err)
{
    return error_set(err, -EPERM, "Node '%s' is read only: it shows an internal snapshot loaded "
                     "temporarily, not the image's active disk", bd->filename);
}

int blockdev_reopen_layer_rw(const struct blockdev *layer, struct blockdev **out, struct error *err)
{
    if (layer->snapshot_view) {
        return refuse_snapshot_view(layer, err);
    }
    struct blockdev_open_opts opts = {
        .format = blockdev_format(layer),
        .flags = BDEV_NO_BACKING | BDEV_REOPEN,
    };
    int ret = blockdev_open(out, layer->open_name ? layer->open_name : layer->filename, &opts, err);
    if (ret < 0) {
        error_prefix(err, "Could not reopen '%s' for writing", layer->filename);
    }
    return ret;
}

void blockdev_set_write_notifier(struct blockdev *bd, const struct blockdev_write_notifier *n)
{
    bd->write_notifier = n;
}

/* The notifier's before() for a write that passed its checks; *n is the
 * notifier that needs its after() (NULL: none). */
static int notify_before(struct blockdev *bd, uint64_t off, uint64_t len,
                         const struct blockdev_write_notifier **n, struct error *err)
{
    *n = bd->write_notifier;
    if (!*n || !(*n)->before) {
        return 0;
    }
    int ret = (*n)->before((*n)->opaque, off, len, err);
    if (ret < 0) {
        *n = NULL;
    }
    return ret;
}

static int notify_after(const struct blockdev_write_notifier *n, uint64_t off, uint64_t len, int ret)
{
    if (n && n->after) {
        n->after(n->opaque, off, len);
    }
    return ret;
}

void blockdev_set_write_options(struct blockdev *bd, enum blockdev_detect_zeroes detect_zeroes, bool discard_ignore)
{
    bd->detect_zeroes = detect_zeroes;
    bd->discard_ignore = discard_ignore;
}

enum blockdev_detect_zeroes blockdev_detect_zeroes(const struct blockdev *bd)
{
    return bd->detect_zeroes;
}

bool blockdev_discard_ignored(const struct blockdev *bd)
{
    return bd->discard_ignore;
}

/* detect-zeroes: this write is one to turn into a write-zeroes. */
static bool detected_zeroes(const struct blockdev *bd, const void *buf, size_t len)
{
    return bd->detect_zeroes != BDEV_DETECT_ZEROES_OFF && mem_is_zero(buf, len);
}

/* After a write of any kind, failed ones too (it may have changed part of
 * the range): the dirty bitmaps and the highest offset written. */
static void written(struct blockdev *bd, uint64_t off, uint64_t len)
{
    blockdev_bitmaps_mark(bd, off, len);
    hostfile_atomic_max(&bd->wr_highest_offset, off + len);
}

int blockdev_pwrite(struct blockdev *bd, uint64_t off, const void *buf, size_t len, struct error *err)
{
    const struct blockdev_write_notifier *n;
    if (len && detected_zeroes(bd, buf, len)) {
        unsigned flags = bd->detect_zeroes == BDEV_DETECT_ZEROES_UNMAP ? BDEV_ZERO_MAY_UNMAP : 0;
        return blockdev_pwrite_zeroes(bd, off, len, flags, err);
    }
    int ret = check_write(bd, off, len, err);
    if (ret < 0 || len == 0 || (ret = notify_before(bd, off, len, &n, err)) < 0) {
        return ret;
    }
    ret = notify_after(n, off, len, bd->drv->pwrite(bd, off, buf, len, err));
    written(bd, off, len);
    return ret;
}

int blockdev_pwrite_nowait(struct blockdev *bd, uint64_t off, const void *buf, size_t len)
{
    int ret = check_write(bd, off, len, NULL);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (bd->write_notifier || !bd->drv->pwrite_nowait) {
        return -EAGAIN;     /* a job's before() may copy data out: not for a nowait caller */
    }
    if (detected_zeroes(bd, buf, len)) {
        return -EAGAIN;     /* blockdev_pwrite makes it a write-zeroes */
    }
    ret = bd->drv->pwrite_nowait(bd, off, buf, len);
    if (ret == -EAGAIN) {
        blockdev_bitmaps_mark(bd, off, len);    /* a part may be written; the redo counts it */
    } else {
        written(bd, off, len);
    }
    return ret;
}

int blockdev_pwrite_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                           struct error *err)
{
    const struct blockdev_write_notifier *n;
    int ret = check_write(bd, off, len, err);
    if (ret < 0 || len == 0 || (ret = notify_before(bd, off, len, &n, err)) < 0) {
        return ret;
    }
    if (bd->discard_ignore) {
        flags &= ~BDEV_ZERO_MAY_UNMAP;
    }
    ret = notify_after(n, off, len, bd->drv->pwrite_zeroes(bd, off, len, flags, err));
    written(bd, off, len);
    return ret;
}

int blockdev_pwrite_compressed(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                               struct error *err)
{
    int ret = check_write(bd, off, len, err);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (!bd->drv->pwrite_compressed) {
        return error_set(err, -ENOTSUP, "Compression is not supported for format '%s'",
                         bd->drv->format_name);
    }
    const struct blockdev_write_notifier *n;
    if ((ret = notify_before(bd, off, len, &n, err)) < 0) {
        return ret;
    }
    ret = notify_after(n, off, len, bd->drv->pwrite_compressed(bd, off, buf, len, err));
    written(bd, off, len);
    return ret;
}

int blockdev_discard(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err)
{
    const struct blockdev_write_notifier *n;
    int ret = check_write(bd, off, len, err);
    if (ret < 0 || len == 0 || bd->discard_ignore || (ret = notify_before(bd, off, len, &n, err)) < 0) {
        return ret;
    }
    ret = notify_after(n, off, len, bd->drv->discard(bd, off, len, err));
    blockdev_bitmaps_mark(bd, off, len);
    return ret;
}

int blockdev_flush(struct blockdev *bd, struct error *err)
{
    if (bd->read_only || bd->inactive) {
        return 0;
    }
    return bd->drv->flush(bd, err);
}

int blockdev_truncate(struct blockdev *bd, uint64_t size, bool shrink_ok,
                      enum blockdev_prealloc prealloc, struct error *err)
{
    int ret = check_writable(bd, err);
    if (ret == 0) {
        ret = blockdev_bitmaps_check_resize(bd, err);
    }
    if (ret < 0) {
        return ret;
    }
    ret = bd->drv->truncate(bd, size, shrink_ok, prealloc, err);
    if (ret == 0) {
        blockdev_bitmaps_resize(bd, bd->size);
    }
    return ret;
}

int blockdev_block_status(struct blockdev *bd, uint64_t off, uint64_t len, struct block_status *st,
                          struct error *err)
{
    int ret = check_range(bd, off, len, err);
    if (ret < 0) {
        return ret;
    }
    int depth = 0;
    uint64_t want = len;
    for (struct blockdev *b = bd; ; b = b->backing, depth++) {
        if (off >= b->size) {
            /* Beyond a shorter backing file: reads as zeros. */
            *st = (struct block_status){ .len = want, .depth = depth,
                                         .flags = BDEV_STATUS_ZERO | BDEV_STATUS_PAST_BACKING };
            return 0;
        }
        uint64_t n = want < b->size - off ? want : b->size - off;
        ret = b->drv->block_status(b, off, n, st, err);
        if (ret < 0) {
            return ret;
        }
        st->depth = depth;
        if (st->flags & BDEV_STATUS_ALLOCATED) {
            return 0;
        }
        if (!b->backing) {
            st->flags |= BDEV_STATUS_ZERO;  /* nothing beneath: reads as zeros */
            return 0;
        }
        /* Unallocated here: what lies beneath defines at most this run. */
        want = st->len;
    }
}

int blockdev_make_empty(struct blockdev *bd, struct error *err)
{
    int ret = check_writable(bd, err);
    if (ret < 0) {
        return ret;
    }
    if (!bd->drv->make_empty) {
        return error_set(err, -ENOTSUP, "Format '%s' cannot be emptied", bd->drv->format_name);
    }
    ret = bd->drv->make_empty(bd, err);
    blockdev_bitmaps_mark(bd, 0, bd->size);
    return ret;
}

int blockdev_invalidate_cache(struct blockdev *bd, struct error *err)
{
    if (bd->snapshot_view) {
        return refuse_snapshot_view(bd, err);
    }
    return bd->drv->invalidate_cache ? bd->drv->invalidate_cache(bd, err) : 0;
}

int blockdev_vmstate_read(struct blockdev *bd, uint64_t pos, void *buf, size_t len, struct error *err)
{
    if (!bd->drv->vmstate_read) {
        return error_set(err, -ENOTSUP, "Format '%s' has no VM state area", bd->drv->format_name);
    }
    return bd->drv->vmstate_read(bd, pos, buf, len, err);
}

int blockdev_vmstate_write(struct blockdev *bd, uint64_t pos, const void *buf, size_t len,
                           struct error *err)
{
    int ret = check_writable(bd, err);
    if (ret < 0) {
        return ret;
    }
    if (!bd->drv->vmstate_write) {
        return error_set(err, -ENOTSUP, "Format '%s' has no VM state area", bd->drv->format_name);
    }
    return bd->drv->vmstate_write(bd, pos, buf, len, err);
}

char *blockdev_backing_path(const char *image_filename, const char *backing_filename)
{
    if (backing_filename[0] == '/' || strstr(backing_filename, "://") ||
        strncmp(backing_filename, "json:", 5) == 0 || blockdev_is_nbd_name(backing_filename)) {
        return strdup(backing_filename);
    }
    /* QEMU's path_combine: the image's name up to its last slash, as
     * written ("./image:top.qcow2" gives "./base.qcow2", iotest 126). */
    const char *slash = strrchr(image_filename, '/');
    if (!slash) {
        return strdup(backing_filename);
    }
    char *path = NULL;
    if (asprintf(&path, "%.*s%s", (int)(slash + 1 - image_filename), image_filename,
                 backing_filename) < 0) {
        return NULL;
    }
    return path;
}

static const char *const prealloc_names[] = { "off", "metadata", "falloc", "full" };

int blockdev_prealloc_parse(const char *s, enum blockdev_prealloc *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, prealloc_names[i]) == 0) {
            *out = (enum blockdev_prealloc)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *blockdev_prealloc_name(enum blockdev_prealloc mode)
{
    return prealloc_names[mode];
}

/* What an open image is. */

uint64_t blockdev_size(const struct blockdev *bd) { return bd->size; }
const char *blockdev_format(const struct blockdev *bd)
{
    return bd->node_driver ? bd->node_driver : bd->drv->format_name;
}
bool blockdev_is_protocol_node(const struct blockdev *bd) { return bd->node_driver != NULL; }
const char *blockdev_filename(const struct blockdev *bd) { return bd->filename; }
const char *blockdev_exact_filename(const struct blockdev *bd)
{
    return bd->exact_name ? bd->exact_name : bd->filename;
}
uint32_t blockdev_cluster_size(const struct blockdev *bd) { return bd->cluster_size; }
bool blockdev_is_read_only(const struct blockdev *bd) { return bd->read_only; }
struct blockdev *blockdev_backing(const struct blockdev *bd) { return bd->backing; }
const char *blockdev_backing_filename(const struct blockdev *bd) { return bd->backing_filename; }
const char *blockdev_backing_format(const struct blockdev *bd) { return bd->backing_format; }

bool blockdev_same_file(const struct blockdev *a, const struct blockdev *b)
{
    return a->dev == b->dev && a->ino == b->ino;
}

int64_t blockdev_allocated_size(const struct blockdev *bd)
{
    return bd->drv->allocated_size ? bd->drv->allocated_size((struct blockdev *)bd) : -1;
}

void blockdev_file_stats(const struct blockdev *bd, struct blockdev_file_stats *out)
{
    struct hostfile *f = bd->file;
    *out = (struct blockdev_file_stats){ 0 };
    if (f) {
        out->nb_ok = __atomic_load_n(&f->discard_nb_ok, __ATOMIC_RELAXED);
        out->nb_failed = __atomic_load_n(&f->discard_nb_failed, __ATOMIC_RELAXED);
        out->bytes_ok = __atomic_load_n(&f->discard_bytes_ok, __ATOMIC_RELAXED);
        out->wr_highest_offset = __atomic_load_n(&f->wr_highest_offset, __ATOMIC_RELAXED);
    }
}

uint64_t blockdev_wr_highest_offset(const struct blockdev *bd)
{
    return __atomic_load_n(&bd->wr_highest_offset, __ATOMIC_RELAXED);
}

bool blockdev_is_dirty(const struct blockdev *bd)
{
    return bd->drv->is_dirty && bd->drv->is_dirty(bd);
}

bool blockdev_can_compress(const struct blockdev *bd) { return bd->drv->pwrite_compressed != NULL; }
bool blockdev_has_vmstate(const struct blockdev *bd) { return bd->drv->vmstate_write != NULL; }
bool blockdev_has_snapshots(const struct blockdev *bd) { return bd->drv->snapshot_list != NULL; }

bool blockdev_qemu_driver_known(const char *name)
{
    static const char *const names[] = {
        "blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress", "copy-before-write",
        "copy-on-read", "dmg", "file", "ftp", "ftps", "gluster", "host_cdrom", "host_device",
        "http", "https", "iscsi", "iser", "luks", "nbd", "nfs", "null-aio", "null-co", "nvme",
        "parallels", "preallocate", "qcow", "qcow2", "qed", "quorum", "raw", "rbd", "replication",
        "snapshot-access", "ssh", "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

bool blockdev_format_known(const char *format)
{
    return blockdev_find_driver(format) != NULL;
}

char *blockdev_format_specific_json(struct blockdev *bd)
{
    if (!bd->drv->info_json) {
        return NULL;
    }
    struct json_writer w;
    json_writer_init(&w, false);
    json_object_begin(&w, NULL);
    bd->drv->info_json(bd, &w);
    json_object_end(&w);
    char *s = strdup(json_writer_str(&w));
    json_writer_free(&w);
    return s;
}

void blockdev_write_format_specific(struct blockdev *bd, struct json_writer *w)
{
    if (!bd->drv->info_json) {
        return;
    }
    json_object_begin(w, "format-specific");
    json_write_string(w, "type", blockdev_format(bd));
    json_object_begin(w, "data");
    bd->drv->info_json(bd, w);
    json_object_end(w);
    json_object_end(w);
}

/* Format operations: dispatched to the driver, -ENOTSUP where it has none. */

static int no_op(const struct blockdev *bd, const char *what, struct error *err)
{
    return error_set(err, -ENOTSUP, "Format '%s' does not support %s", bd->drv->format_name, what);
}

void blockdev_create_opts_init(struct blockdev_create_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->cluster_size = 65536;
    o->version = 3;
    o->refcount_bits = 16;
    o->compression = BDEV_COMPRESSION_ZLIB;
    o->prealloc = PREALLOC_OFF;
}

int blockdev_create(const char *filename, const struct blockdev_create_opts *o, struct error *err)
{
    const char *format = o->format ? o->format : "qcow2";
    const struct blockdev_driver *drv = blockdev_find_driver(format);
    if (!drv || !drv->create) {
        return error_set(err, -EINVAL, "Unknown file format '%s'", format);
    }
    return drv->create(filename, o, err);
}

int blockdev_change_backing_file(struct blockdev *bd, const char *backing_file,
                                 const char *backing_fmt, struct error *err)
{
    if (!bd->drv->change_backing_file) {
        return no_op(bd, "backing files", err);
    }
    return bd->drv->change_backing_file(bd, backing_file, backing_fmt, err);
}

int blockdev_snapshot_list(struct blockdev *bd, struct blockdev_snapshot_info **list, int *count,
                           struct error *err)
{
    if (!bd->drv->snapshot_list) {
        *list = NULL;
        *count = 0;
        return no_op(bd, "internal snapshots", err);
    }
    return bd->drv->snapshot_list(bd, list, count, err);
}

void blockdev_snapshot_list_free(struct blockdev_snapshot_info *list, int count)
{
    for (int i = 0; list && i < count; i++) {
        free(list[i].name);
    }
    free(list);
}

int blockdev_snapshot_create(struct blockdev *bd, const char *name,
                             const struct blockdev_snapshot_vm *vm, struct error *err)
{
    return bd->drv->snapshot_create ? bd->drv->snapshot_create(bd, name, vm, err)
                                    : no_op(bd, "internal snapshots", err);
}

int blockdev_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    int ret = blockdev_bitmaps_check_apply(bd, err);
    if (ret < 0) {
        return ret;
    }
    return bd->drv->snapshot_apply ? bd->drv->snapshot_apply(bd, id_or_name, err)
                                   : no_op(bd, "internal snapshots", err);
}

int blockdev_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return bd->drv->snapshot_delete ? bd->drv->snapshot_delete(bd, id_or_name, err)
                                    : no_op(bd, "internal snapshots", err);
}

int blockdev_snapshot_rename(struct blockdev *bd, const char *id_or_name, const char *new_name,
                             struct error *err)
{
    return bd->drv->snapshot_rename ? bd->drv->snapshot_rename(bd, id_or_name, new_name, err)
                                    : no_op(bd, "internal snapshots", err);
}

int blockdev_snapshot_load_tmp(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    int ret = bd->drv->snapshot_load_tmp ? bd->drv->snapshot_load_tmp(bd, id_or_name, err)
                                         : no_op(bd, "internal snapshots", err);
    if (ret == 0) {
        bd->snapshot_view = true;
    }
    return ret;
}

int blockdev_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                   void *buf, size_t len, struct error *err)
{
    return bd->drv->snapshot_vmstate_read
        ? bd->drv->snapshot_vmstate_read(bd, id_or_name, pos, buf, len, err)
        : no_op(bd, "internal snapshots", err);
}

int blockdev_check(struct blockdev *bd, unsigned fix, struct blockdev_check_result *res,
                   struct error *err)
{
    return bd->drv->check ? bd->drv->check(bd, fix, res, err) : no_op(bd, "checks", err);
}

int blockdev_amend(struct blockdev *bd, const struct blockdev_amend_opts *o, struct error *err)
{
    return bd->drv->amend ? bd->drv->amend(bd, o, err) : no_op(bd, "amend", err);
}
