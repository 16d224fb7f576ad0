/* The qcow2 blockdev driver: open, close, flush, resize, block status, info. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/overlap_check.h"
#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/warning.h"

extern const struct blockdev_driver qcow2_driver;

#define L2_CACHE_MAX_BYTES (32u << 20)     /* QEMU's default ceiling */
/* Decompressed clusters by default: no more than the disk, at most 1/64 of
 * the host's memory and 256 MiB. Only slots that are filled take memory (2
 * MiB at a time): an image without compressed clusters costs nothing, and
 * memory grows with the compressed data actually read. Measured with
 * bench/boot-trace.sh on a 256 MiB disk (CPU time, zstd vs raw): 1.52x with
 * 64 MiB, 1.43x with 128 MiB, 1.33x with the whole disk; a miss costs a
 * whole-cluster decompression (~35 us per 64 KiB) where raw reads 4 KiB. */
#define ZCACHE_DEFAULT_BYTES (256u << 20)
#define ZCACHE_MIN_SLOTS 4

bool blockdev_is_qcow2(const struct blockdev *bd)
{
    return bd && bd->drv == &qcow2_driver;
}

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && ld_be32(buf) == QCOW2_MAGIC && ld_be32(buf + 4) >= 2 ? 100 : 0;
}

static int load_l1(struct qcow2 *s, struct error *err)
{
    size_t bytes = (size_t)s->l1_size * 8;
    s->l1_table = calloc(1, bytes ? bytes : 8);
    if (!s->l1_table) {
        return error_set(err, -ENOMEM, "Could not allocate the L1 table");
    }
    int ret = hostfile_pread(s->file, s->l1_table_offset, s->l1_table, bytes);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not read the L1 table");
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        s->l1_table[i] = be64_to_cpu(s->l1_table[i]);
    }
    return 0;
}

static uint64_t host_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

/* Slots of the decompressed-cluster cache: compressed-cache-size, or the default. */
static int zcache_slots(struct qcow2 *s, const struct blockdev_open_opts *opts, int *slots,
                        struct error *err)
{
    uint64_t disk = (qcow2_size_to_clusters(s, s->bd.size) + 1) << s->cluster_bits;
    uint64_t bytes = opts->compressed_cache_size;
    if (!opts->compressed_cache_set) {
        bytes = ZCACHE_DEFAULT_BYTES < host_memory() / 64 ? ZCACHE_DEFAULT_BYTES : host_memory() / 64;
        bytes = bytes < (uint64_t)ZCACHE_MIN_SLOTS << s->cluster_bits
                ? (uint64_t)ZCACHE_MIN_SLOTS << s->cluster_bits : bytes;
    } else if (bytes && bytes < s->cluster_size) {
        return error_set(err, -EINVAL, "compressed-cache-size must be 0 (no cache) or at least "
                         "one cluster (%u bytes), not %" PRIu64, s->cluster_size, bytes);
    } else if (bytes > host_memory() / 2) {
        return error_set(err, -EINVAL, "compressed-cache-size %" PRIu64 " is more than half "
                         "of the host's memory (%" PRIu64 " bytes)", bytes, host_memory());
    }
    bytes = bytes < disk ? bytes : disk;     /* more could never be used */
    *slots = (int)(bytes >> s->cluster_bits);
    return 0;
}

static int init_caches(struct qcow2 *s, const struct blockdev_open_opts *opts, struct error *err)
{
    /* Cover the whole disk (like QEMU's default), at most 32 MiB. */
    uint64_t tables = qcow2_size_to_l1(s, s->bd.size) + 1;
    uint64_t max_tables = L2_CACHE_MAX_BYTES / s->cluster_size;
    int l2_count = (int)(tables < max_tables ? tables : max_tables);
    if (l2_count < 4) {
        l2_count = 4;
    }
    int rb_count = l2_count / 4 < 4 ? 4 : l2_count / 4;
    int z_count = 0;
    int ret = zcache_slots(s, opts, &z_count, err);
    if (ret < 0) {
        return ret;
    }
    if (qcow2_cache_init(&s->l2_cache, l2_count, s->cluster_size, false) < 0 ||
        qcow2_cache_init(&s->refblock_cache, rb_count, s->cluster_size, false) < 0 ||
        qcow2_zcache_init(&s->zcache, z_count, s->cluster_size) < 0) {
        return error_set(err, -ENOMEM, "Could not allocate the qcow2 caches");
    }
    qcow2_readahead_init(s);
    s->readahead_ready = true;
    return 0;
}

static void qcow2_free_state(struct qcow2 *s)
{
    if (s->readahead_ready) {
        qcow2_readahead_destroy(s);     /* its workers look tables up */
    }
    qcow2_cache_destroy(&s->l2_cache);
    free(s->deferred_frees);
    qcow2_cache_destroy(&s->refblock_cache);
    qcow2_zcache_destroy(&s->zcache);
    for (int i = 0; i < s->n_unknown_ext; i++) {
        free(s->unknown_ext[i].data);
    }
    free(s->unknown_ext);
    free(s->l1_table);
    free(s->refcount_table);
    qcow2_snapshots_free(s);
    qcow2_bitmaps_free(s);
    qcow2_data_file_close(s);
    hostfile_close(s->file);
    pthread_rwlock_destroy(&s->io_guard);
    pthread_mutex_destroy(&s->lock);
}

static int check_open_mode(struct qcow2 *s, const struct blockdev_open_opts *opts,
                           struct error *err)
{
    bool writable = !(opts->flags & BDEV_READ_ONLY);
    bool checking = opts->flags & BDEV_CHECK;
    if ((s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && writable && !checking) {
        return error_set(err, -EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
    }
    s->corrupt = s->incompatible_features & QCOW2_INCOMPAT_CORRUPT;
    s->checking = checking;
    if (opts->lazy_refcounts > 0 && s->version < 3) {
        return error_set(err, -EINVAL, "Lazy refcounts require a qcow2 image with at least "
                                       "qemu 1.1 compatibility level");
    }
    /* The runtime option overrides the header's default (QEMU's lazy-refcounts). */
    bool lazy = opts->lazy_refcounts ? opts->lazy_refcounts > 0
                                     : s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
    s->lazy_refcounts = writable && lazy;
    s->overlap_checks = opts->overlap_checks_set ? opts->overlap_checks : BDEV_OL_CACHED;
    s->dirty_written = s->incompatible_features & QCOW2_INCOMPAT_DIRTY;
    return 0;
}

/* What a writable open writes at once. Like QEMU, it drops the autoclear
 * bits we do not maintain (e.g. bitmaps): their data may go stale; and it
 * rebuilds lazy refcounts a crash left behind before anything is written. */
static int open_writable(struct qcow2 *s, const struct blockdev_open_opts *opts, struct error *err)
{
    int ret = 0;
    bool found_dirty = s->dirty_written;    /* not the bit the write below may set */
    if (s->autoclear_features || s->bitmaps_stale) {
        /* Like QEMU, a writable open drops the autoclear bits we do not
         * maintain (and a stale bitmaps extension) at once. */
        ret = qcow2_prepare_write(s, err);
    }
    if (ret == 0 && found_dirty && !(opts->flags & BDEV_CHECK)) {
        ret = qcow2_repair_dirty(s, err);
    }
    return ret;
}

static int qcow2_open(struct blockdev **out, struct hostfile *file, const char *filename,
                      const struct blockdev_open_opts *opts, struct error *err)
{
    struct qcow2 *s = calloc(1, sizeof(*s));
    s->file = file;
    pthread_mutex_init(&s->lock, NULL);
    pthread_rwlock_init(&s->io_guard, NULL);
    blockdev_init(&s->bd, &qcow2_driver, filename, file, opts);
    int ret = qcow2_header_parse(s, err);
    if (ret == 0) {
        ret = check_open_mode(s, opts, err);
    }
    if (ret == 0) {
        ret = qcow2_data_file_open(s, opts, err);
    }
    if (ret == 0) {
        s->bd.cluster_size = s->cluster_size;
        ret = load_l1(s, err);
    }
    if (ret == 0) {
        ret = qcow2_refcount_init(s, err);
    }
    if (ret == 0) {
        ret = init_caches(s, opts, err);
    }
    if (ret == 0) {
        ret = qcow2_snapshots_load(s, err);
    }
    if (ret == 0 && !(opts->flags & (BDEV_READ_ONLY | BDEV_INACTIVE))) {
        ret = open_writable(s, opts, err);     /* inactive: done at activation */
    }
    if (ret == 0 && !(opts->flags & BDEV_INACTIVE)) {
        /* An inactive image's bitmaps are still the source's: they load
         * when it is taken over (qcow2_activate), as in QEMU. */
        ret = qcow2_bitmaps_open(s, opts->flags, err);
    }
    if (ret == 0) {
        ret = blockdev_open_backing(&s->bd, opts, err);
    }
    if (ret < 0) {
        blockdev_bitmaps_free(&s->bd);
        free(s->bd.filename);
        free(s->bd.backing_filename);
        free(s->bd.backing_format);
        qcow2_free_state(s);
        free(s);
        return ret;
    }
    /* A writable image is one long write batch (qcow2_order.c). */
    s->l2_writeback = s->l2_batch = !s->bd.read_only;
    *out = &s->bd;
    return 0;
}

/* Writes back lazy refcounts and clears the dirty bit: the image is consistent. */
static int mark_clean(struct qcow2 *s, struct error *err)
{
    int ret = qcow2_refcount_flush(s, err);     /* commits the L2 batch first */
    if (ret == 0 && s->dirty_written && !s->corrupt) {
        ret = hostfile_flush(s->file);
        if (ret == 0) {
            s->incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
            ret = qcow2_header_write_incompat(s, err);
            s->dirty_written = false;
        }
    }
    return ret;
}

/* One write-back step of close and the flush after it; a failure is
 * reported in QEMU's words: close has no caller to return it to, and
 * scripts (iotest 026) read them. Lock held. */
static int close_step(struct qcow2 *s, int (*step)(struct qcow2 *, struct error *),
                      const char *what)
{
    struct error err = { 0 };
    int ret = step(s, &err);
    if (ret == 0) {
        ret = hostfile_flush(s->file);
    }
    if (ret < 0) {
        warning_print("%s: Failed to flush the %s: %s\n", program_invocation_short_name, what,
                      strerror(-ret));
    }
    return ret;
}

/* Writes back what close finds in memory in QEMU's two steps (the L2
 * batch, then the refcount blocks); the image is marked clean only when
 * both went out. Lock held. */
static void close_write_back(struct qcow2 *s)
{
    struct error err = { 0 };
    int l2 = close_step(s, qcow2_order_commit, "L2 table cache");
    int rb = close_step(s, qcow2_refcount_flush, "refcount block cache");
    if (l2 == 0 && rb == 0 && mark_clean(s, &err) < 0) {
        log_error("%s: %s", s->bd.filename, err.msg);
    }
}

static void qcow2_close(struct blockdev *bd)
{
    struct qcow2 *s = qcow2_of(bd);
    /* inactive: the file is another process's; broken: the next open repairs it */
    if (!bd->read_only && !bd->inactive && !s->broken) {
        pthread_mutex_lock(&s->lock);
        close_write_back(s);
        pthread_mutex_unlock(&s->lock);
        hostfile_flush(s->file);
    }
    if (s->data_file && !bd->read_only && !bd->inactive) {
        hostfile_flush(s->data_file);
    }
    qcow2_free_state(s);
    free(s);
}

static int qcow2_flush(struct blockdev *bd, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    /* The data first: the metadata flushed next may point to it. */
    int ret = s->data_file ? hostfile_flush(s->data_file) : 0;
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not flush the data file of '%s'", bd->filename);
    }
    /* While the dirty bit is set (lazy refcounts), refcounts need not be on
     * disk: a crash is repaired on open, and close writes them. */
    pthread_mutex_lock(&s->lock);
    ret = qcow2_order_commit(s, err);
    if (ret == 0 && !s->dirty_written) {
        ret = qcow2_refcount_flush(s, err);
    }
    pthread_mutex_unlock(&s->lock);
    if (ret == 0) {
        hostfile_event(s->file, BLKDBG_FLUSH_TO_DISK);
        ret = hostfile_flush(s->file);
        if (ret < 0) {
            error_set_errno(err, ret, "Could not flush '%s'", bd->filename);
        }
    }
    return ret;
}

static int write_size(struct qcow2 *s, uint64_t size, struct error *err)
{
    uint8_t b[8];
    st_be64(b, size);
    int ret = hostfile_pwrite(s->file, 24, b, 8);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the image size");
    }
    s->bd.size = size;
    return 0;
}

/* Allocates every unallocated cluster of [start, end) (preallocation). */
static int preallocate(struct qcow2 *s, uint64_t start, uint64_t end, enum blockdev_prealloc mode,
                       struct error *err)
{
    uint64_t file_end = 0;
    for (uint64_t pos = qcow2_start_of_cluster(s, start); pos < end; pos += s->cluster_size) {
        uint8_t *table;
        uint32_t index;
        int ret = qcow2_get_l2_slot(s, pos, true, &table, &index, err);
        if (ret < 0) {
            return ret;
        }
        uint64_t entry, bitmap;
        qcow2_l2_read_entry(s, table, index, &entry, &bitmap);
        if (qcow2_entry_has_host(s, entry) || (entry & QCOW2_OFLAG_COMPRESSED)) {
            continue;
        }
        if (pos < start && s->bd.backing && !s->extended_l2) {
            continue;   /* a data cluster would hide the backing data before start */
        }
        int64_t host = s->data_file ? (int64_t)qcow2_data_file_host(pos) : qcow2_alloc_clusters(s, 1, err);
        if (host < 0) {
            return (int)host;
        }
        if (mode == PREALLOC_FALLOC || mode == PREALLOC_FULL) {
            ret = hostfile_allocate(qcow2_data(s), (uint64_t)host, s->cluster_size,
                                    mode == PREALLOC_FULL);
            if (ret < 0) {
                return error_set_errno(err, ret, "Could not preallocate data");
            }
            qcow2_order_note_target(s);
        }
        /* With subclusters the bitmap stays (as QEMU leaves it): unallocated
         * subclusters still read from the backing file, or as zeros. */
        ret = qcow2_l2_write_entry(s, table, index, (uint64_t)host | QCOW2_OFLAG_COPIED, bitmap,
                                   err);
        if (ret < 0) {
            return ret;
        }
        if ((uint64_t)host + s->cluster_size > file_end) {
            file_end = (uint64_t)host + s->cluster_size;
        }
    }
    int64_t size = hostfile_size(qcow2_data(s));
    if (file_end && size >= 0 && (uint64_t)size < file_end) {
        return hostfile_truncate(qcow2_data(s), file_end);
    }
    return 0;
}

/* Whether growing from old to size would show backing data in the new
 * area: the backing file is longer than the image was. */
static bool backing_shows_through(struct qcow2 *s, uint64_t old, uint64_t size)
{
    return size > old && s->bd.backing && blockdev_size(s->bd.backing) > old;
}

static bool data_beyond(struct qcow2 *s, uint64_t size)
{
    for (uint64_t pos = size; pos < s->bd.size; pos += s->cluster_size) {
        uint64_t entry, bitmap;
        if (qcow2_lookup(s, qcow2_start_of_cluster(s, pos), &entry, &bitmap, NULL) < 0) {
            return true;
        }
        if (entry || bitmap) {
            return true;
        }
    }
    return false;
}

static int shrink(struct qcow2 *s, uint64_t size, bool shrink_ok, struct error *err)
{
    if (!shrink_ok && data_beyond(s, size)) {
        return error_set(err, -EINVAL, "Shrinking would discard data beyond %" PRIu64
                         " bytes; use --shrink to do it anyway", size);
    }
    uint64_t from = (size + s->cluster_size - 1) & ~s->cluster_mask;
    qcow2_order_batch_begin(s);
    int ret = qcow2_discard_locked(s, from, s->bd.size - from, false, err);
    ret = qcow2_order_batch_finish(s, ret, err);
    if (ret == 0) {
        ret = write_size(s, size, err);
    }
    if (ret == 0) {
        /* Give the tail of the file back, as QEMU does. */
        int64_t end = qcow2_refcount_end(s, err);
        int64_t file_size = hostfile_size(s->file);
        if (end > 0 && file_size > end) {
            hostfile_truncate(s->file, (uint64_t)end);
        }
    }
    return ret;
}

static int qcow2_truncate(struct blockdev *bd, uint64_t size, bool shrink_ok,
                          enum blockdev_prealloc prealloc, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    if (size % QCOW2_SECTOR) {
        return error_set(err, -EINVAL, "The new size must be a multiple of 512");
    }
    if (s->nb_snapshots && s->version < 3) {
        return error_set(err, -ENOTSUP, "Can't resize a v2 image which has snapshots");
    }
    if (qcow2_size_to_l1(s, size) > QCOW2_MAX_L1_BYTES / 8) {
        return error_set(err, -EFBIG, "Image size %" PRIu64 " is too large for this cluster size",
                         size);
    }
    uint64_t old = bd->size;
    bool hide_backing = size > old && backing_shows_through(s, old, size);
    if (hide_backing && s->version < 3 && size > qcow2_start_of_cluster(s, old + s->cluster_mask)) {
        /* v2 has no zero clusters (QEMU fails the same way, after growing L1) */
        return error_set_errno(err, -ENOTSUP, "Failed to zero out new clusters");
    }
    if (size > old && qcow2_data_file_is_raw(s) && prealloc == PREALLOC_OFF) {
        /* The L2 tables must map the grown area 1:1 too (QEMU's reason:
         * the raw data file and the image read the same). */
        prealloc = PREALLOC_METADATA;
    }
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_prepare_write(s, err);
    if (ret == 0 && size < old) {
        ret = shrink(s, size, shrink_ok, err);
    } else if (ret == 0 && size > old) {
        ret = qcow2_grow_l1(s, qcow2_size_to_l1(s, size), err);
        if (ret == 0 && s->data_file && prealloc == PREALLOC_OFF &&
            (ret = hostfile_truncate(s->data_file, size)) < 0) {
            error_set_errno(err, ret, "Could not resize the data file");
        }
        if (ret == 0 && prealloc != PREALLOC_OFF) {
            qcow2_order_batch_begin(s);
            ret = preallocate(s, old, size, prealloc, err);
            ret = qcow2_order_batch_finish(s, ret, err);
        }
        if (ret == 0 && hide_backing) {
            pthread_mutex_unlock(&s->lock);
            ret = qcow2_zero_grown_area(s, old, size, err);
            pthread_mutex_lock(&s->lock);
        }
        if (ret == 0) {
            ret = write_size(s, size, err);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static unsigned status_flags(const struct qcow2 *s, uint64_t entry, uint64_t bitmap, uint32_t sc)
{
    switch (qcow2_sc_type(s, entry, bitmap, sc)) {
    case QCOW2_SC_NORMAL:
        return BDEV_STATUS_DATA | BDEV_STATUS_ALLOCATED | BDEV_STATUS_OFFSET_VALID;
    case QCOW2_SC_ZERO:
        return BDEV_STATUS_ZERO | BDEV_STATUS_ALLOCATED |
               (qcow2_entry_has_host(s, entry) ? BDEV_STATUS_OFFSET_VALID : 0);
    case QCOW2_SC_COMPRESSED:
        return BDEV_STATUS_DATA | BDEV_STATUS_ALLOCATED | BDEV_STATUS_COMPRESSED;
    case QCOW2_SC_UNALLOCATED:
        /* A subcluster of a cluster this image owns (extended L2) still has
         * its place in the file: QEMU reports it (UNALLOCATED_ALLOC), and
         * map --output=json prints it. */
        return qcow2_entry_has_host(s, entry) ? BDEV_STATUS_OFFSET_VALID : 0;
    default:
        return 0;
    }
}

static int qcow2_block_status(struct blockdev *bd, uint64_t off, uint64_t len,
                              struct block_status *st, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    uint64_t run = 0;
    unsigned flags = 0;
    uint64_t first_host = 0;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    while (run < len) {
        uint64_t pos = off + run;
        uint64_t entry, bitmap;
        ret = qcow2_lookup(s, pos, &entry, &bitmap, err);
        if (ret < 0) {
            break;
        }
        uint32_t in_cluster = (uint32_t)qcow2_offset_in_cluster(s, pos);
        uint32_t sc = in_cluster >> s->subcluster_bits;
        unsigned f = status_flags(s, entry, bitmap, sc);
        uint64_t host = (entry & QCOW2_L2E_OFFSET_MASK) + in_cluster;
        if (run == 0) {
            flags = f;
            first_host = host;
        } else if (f != flags || ((f & BDEV_STATUS_OFFSET_VALID) && host != first_host + run)) {
            break;
        }
        uint64_t step = ((uint64_t)(sc + 1) << s->subcluster_bits) - in_cluster;
        if (f & BDEV_STATUS_COMPRESSED) {
            step = s->cluster_size - in_cluster;
        }
        run += step;
    }
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    *st = (struct block_status){
        .len = run < len ? run : len,
        .flags = flags,
        .host_offset = first_host,
        .file = s->data_file_name ? s->data_file_name : bd->filename,
    };
    return 0;
}

/* Both files, as QEMU sums a format node's children. */
static int64_t qcow2_allocated_size(struct blockdev *bd)
{
    struct qcow2 *s = qcow2_of(bd);
    int64_t image = hostfile_allocated_bytes(s->file);
    int64_t data = s->data_file ? hostfile_allocated_bytes(s->data_file) : 0;
    return image < 0 || data < 0 ? -1 : image + data;
}

static void qcow2_info_json(struct blockdev *bd, struct json_writer *w)
{
    struct qcow2 *s = qcow2_of(bd);
    json_write_string(w, "compat", s->version >= 3 ? "1.1" : "0.10");
    json_write_string(w, "compression-type", s->compression_type ? "zstd" : "zlib");
    if (s->version >= 3) {
        json_write_bool(w, "lazy-refcounts", s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
    }
    qcow2_bitmaps_info_json(s, w);
    json_write_uint(w, "refcount-bits", s->refcount_bits);
    qcow2_data_file_info_json(s, w);
    if (s->version >= 3) {
        json_write_bool(w, "corrupt", s->incompatible_features & QCOW2_INCOMPAT_CORRUPT);
        json_write_bool(w, "extended-l2", s->extended_l2);
    }
}

static int check_vmstate_range(struct qcow2 *s, uint64_t pos, size_t len, struct error *err)
{
    uint64_t base = qcow2_vmstate_offset(s);
    uint64_t limit = (uint64_t)(QCOW2_MAX_L1_BYTES / 8) << (s->cluster_bits + s->l2_bits);
    if (pos > limit || len > limit - pos || base > limit - pos - len) {
        return error_set(err, -EINVAL, "VM state offset %" PRIu64 " is out of range", pos);
    }
    return 0;
}

static int qcow2_vmstate_read(struct blockdev *bd, uint64_t pos, void *buf, size_t len,
                              struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    int ret = check_vmstate_range(s, pos, len, err);
    return ret < 0 ? ret : qcow2_read_at(s, qcow2_vmstate_offset(s) + pos, buf, len, err);
}

static int qcow2_vmstate_write(struct blockdev *bd, uint64_t pos, const void *buf, size_t len,
                               struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    int ret = check_vmstate_range(s, pos, len, err);
    return ret < 0 ? ret : qcow2_write_at(s, qcow2_vmstate_offset(s) + pos, buf, len, err);
}

int qcow2_change_backing_file(struct blockdev *bd, const char *backing_file,
                              const char *backing_fmt, struct error *err)
{
    if (!blockdev_is_qcow2(bd)) {
        return error_set(err, -ENOTSUP, "'%s' is not a qcow2 image", bd->filename);
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    char *old_file = bd->backing_filename, *old_fmt = bd->backing_format;
    bd->backing_filename = backing_file && *backing_file ? strdup(backing_file) : NULL;
    bd->backing_format = bd->backing_filename && backing_fmt ? strdup(backing_fmt) : NULL;
    int ret = qcow2_prepare_write(s, err);
    if (ret == 0) {
        ret = qcow2_header_write(s, err);
    }
    if (ret < 0) {
        free(bd->backing_filename);
        free(bd->backing_format);
        bd->backing_filename = old_file;
        bd->backing_format = old_fmt;
    } else {
        free(old_file);
        free(old_fmt);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The header fields a writer of the image changes as it runs (size, L1 and
 * refcount tables, snapshots, feature bits), read again through a full,
 * checked parse of the header into scratch state. */
static int reread_header(struct qcow2 *s, struct error *err)
{
    struct qcow2 *n = calloc(1, sizeof(*n));
    if (!n) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    n->file = s->file;
    n->bd.filename = s->bd.filename;     /* for messages only */
    int ret = qcow2_header_parse(n, err);
    if (ret == 0 && n->cluster_bits != s->cluster_bits) {
        ret = error_set(err, -EINVAL, "The image's cluster size changed from %u to %u bytes",
                        s->cluster_size, 1u << n->cluster_bits);
    }
    if (ret == 0) {
        s->bd.size = n->bd.size;
        s->l1_size = n->l1_size;
        s->l1_table_offset = n->l1_table_offset;
        s->refcount_table_offset = n->refcount_table_offset;
        s->refcount_table_clusters = n->refcount_table_clusters;
        s->nb_snapshots = n->nb_snapshots;
        s->snapshots_offset = n->snapshots_offset;
        s->incompatible_features = n->incompatible_features;
        s->compatible_features = n->compatible_features;
        s->autoclear_features = n->autoclear_features;
        s->nb_bitmaps = n->nb_bitmaps;      /* the caller freed the old directory */
        s->bitmap_dir_offset = n->bitmap_dir_offset;
        s->bitmap_dir_size = n->bitmap_dir_size;
        s->bitmaps_stale = n->bitmaps_stale;
    }
    for (int i = 0; i < n->n_unknown_ext; i++) {
        free(n->unknown_ext[i].data);
    }
    free(n->unknown_ext);
    free(n->image_data_file);
    free(n->bd.backing_filename);
    free(n->bd.backing_format);
    free(n);
    return ret;
}

/* Reads the tables another open of the file may have changed (size, L1,
 * refcount table) and drops every cached table. Called with s->lock. */
static int reload_tables(struct qcow2 *s, struct error *err)
{
    uint8_t h[72];
    int ret = hostfile_pread(s->file, 0, h, sizeof(h));
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not reread the qcow2 header");
    }
    uint64_t *l1 = s->l1_table, *rt = s->refcount_table;
    uint32_t l1_size = s->l1_size, rt_clusters = s->refcount_table_clusters, rt_size = s->refcount_table_size;
    uint64_t l1_off = s->l1_table_offset, rt_off = s->refcount_table_offset, size = s->bd.size;
    s->bd.size = ld_be64(h + 24);
    s->l1_size = ld_be32(h + 36);
    s->l1_table_offset = ld_be64(h + 40);
    s->refcount_table_offset = ld_be64(h + 48);
    s->refcount_table_clusters = ld_be32(h + 56);
    ret = load_l1(s, err);
    if (ret == 0) {
        ret = qcow2_refcount_init(s, err);
    }
    if (ret < 0) {
        free(s->l1_table);
        s->l1_table = l1;
        s->refcount_table = rt;
        s->l1_size = l1_size;
        s->l1_table_offset = l1_off;
        s->refcount_table_offset = rt_off;
        s->refcount_table_clusters = rt_clusters;
        s->refcount_table_size = rt_size;
        s->bd.size = size;
        qcow2_refcount_table_changed(s);
    } else {
        free(l1);
        free(rt);
        qcow2_cache_invalidate(&s->l2_cache);
        qcow2_cache_invalidate(&s->refblock_cache);
        qcow2_zcache_forget_range(s, 0, UINT64_MAX);
    }
    return ret;
}

static int qcow2_invalidate_cache(struct blockdev *bd, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int ret = reload_tables(s, err);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The source hands the image over: what it kept in memory only (lazy
 * refcounts, the dirty bit) goes to the file, as QEMU's qcow2_inactivate. */
static int qcow2_inactivate(struct blockdev *bd, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int ret = mark_clean(s, err);
    pthread_mutex_unlock(&s->lock);
    if (ret == 0 && (ret = hostfile_flush(s->file)) < 0) {
        error_set_errno(err, ret, "Could not flush '%s'", bd->filename);
    }
    return ret;
}

/* The destination takes the image over: nothing read while the source
 * still wrote is trusted; then what a writable open does (drop autoclear
 * bits, repair a dirty image) that the inactive open left out. */
static int qcow2_activate(struct blockdev *bd, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    struct blockdev_open_opts opts = { .flags = bd->open_flags & ~BDEV_INACTIVE };
    pthread_mutex_lock(&s->lock);
    qcow2_bitmaps_free(s);
    int ret = reread_header(s, err);
    if (ret == 0) {
        ret = check_open_mode(s, &opts, err);
    }
    if (ret == 0) {
        ret = reload_tables(s, err);
    }
    if (ret == 0) {
        qcow2_snapshots_free(s);
        ret = qcow2_snapshots_load(s, err);
    }
    pthread_mutex_unlock(&s->lock);
    /* Unlocked: a repair takes the lock itself; nothing else uses the
     * image before it is active. */
    if (ret == 0 && !bd->read_only) {
        ret = open_writable(s, &opts, err);
    }
    if (ret == 0) {
        /* The bitmaps the source stored as it let go, flagged in use now
         * that they are this side's. Any copy in memory is older. */
        blockdev_bitmaps_drop_persistent(bd);
        ret = qcow2_bitmaps_open(s, opts.flags, err);
    }
    return ret;
}

static int qcow2_make_empty(struct blockdev *bd, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    uint32_t l1_clusters = (uint32_t)(((uint64_t)s->l1_size * 8 + s->cluster_size - 1) >>
                                      s->cluster_bits);
    int ret = qcow2_prepare_write(s, err);
    if (ret == 0 && qcow2_can_empty_completely(s, l1_clusters)) {
        ret = qcow2_empty_completely(s, l1_clusters, err);
    } else if (ret == 0) {
        qcow2_order_batch_begin(s);
        ret = qcow2_discard_locked(s, 0, bd->size, false, err);
        ret = qcow2_order_batch_finish(s, ret, err);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

bool qcow2_is_dirty(const struct blockdev *bd)
{
    return blockdev_is_qcow2(bd) &&
           (qcow2_of((struct blockdev *)bd)->incompatible_features & QCOW2_INCOMPAT_DIRTY);
}

const struct blockdev_driver qcow2_driver = {
    .format_name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_pread,
    .pread_nowait = qcow2_pread_nowait,
    .pwrite_nowait = qcow2_pwrite_nowait,
    .pwrite = qcow2_pwrite,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .pwrite_compressed = qcow2_pwrite_compressed,
    .discard = qcow2_discard,
    .flush = qcow2_flush,
    .truncate = qcow2_truncate,
    .block_status = qcow2_block_status,
    .make_empty = qcow2_make_empty,
    .invalidate_cache = qcow2_invalidate_cache,
    .inactivate = qcow2_inactivate,
    .activate = qcow2_activate,
    .allocated_size = qcow2_allocated_size,
    .info_json = qcow2_info_json,
    .vmstate_read = qcow2_vmstate_read,
    .vmstate_write = qcow2_vmstate_write,
    .is_dirty = qcow2_is_dirty,
    .change_backing_file = qcow2_change_backing_file,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .snapshot_rename = qcow2_snapshot_rename,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .snapshot_vmstate_read = qcow2_snapshot_vmstate_read,
    .check = qcow2_check,
    .amend = qcow2_amend,
    .create = qcow2_create,
    .bitmap_can_store = qcow2_bitmap_can_store,
    .bitmap_remove = qcow2_bitmap_remove,
    .bitmaps_store = qcow2_bitmaps_store,
};
