/* qemu-img amend for qcow2: compat level, lazy refcounts and refcount width
 * changed in place.
 *
 * The refcount width changes through a metadata transaction: the new
 * refcount structure is written aside and the header switches to it (and to
 * the new refcount_order) in one write. Compat and lazy refcounts are header
 * fields only; a downgrade first turns zero clusters into zero data, which
 * version 2 cannot express. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/overlap_check.h"
#include "block/qcow2_int.h"
#include "util/bswap.h"

/* new_version: the version the amend leaves the image at. */
static int change_refcount_bits(struct qcow2 *s, const struct blockdev_amend_opts *o,
                                int new_version, struct error *err)
{
    int bits = o->refcount_bits;
    if (bits < 1 || bits > 64 || (bits & (bits - 1))) {
        return error_set(err, -EINVAL, "Refcount width must be a power of two and may not exceed "
                         "64 bits");
    }
    if (new_version < 3 && bits != 16) {
        return error_set(err, -EINVAL, "Refcount widths other than 16 bits require "
                         "compatibility level 1.1 or above (use compat=1.1 or greater)");
    }
    uint32_t order = (uint32_t)__builtin_ctz((unsigned)bits);
    if (order == s->refcount_order) {
        return 0;
    }
    struct qcow2_txn t;
    int ret = qcow2_txn_begin(s, &t, err);
    if (ret < 0) {
        return ret;
    }
    t.width_change = true;
    t.passes = o->progress;
    t.passes_opaque = o->progress_opaque;
    uint32_t old_order = s->refcount_order;
    /* The transaction writes the blocks in the geometry of the new width. */
    s->refcount_order = order;
    qcow2_geometry_init(s);
    ret = qcow2_txn_commit(s, &t, err);
    if (ret < 0) {
        s->refcount_order = old_order;
        qcow2_geometry_init(s);
    }
    return ret;
}

/* new_version: the version the amend leaves the image at. */
static int set_lazy_refcounts(struct qcow2 *s, bool on, int new_version, struct error *err)
{
    bool now = s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (on == now) {
        return 0;
    }
    if (on && new_version < 3) {
        return error_set(err, -EINVAL, "Lazy refcounts only supported with compatibility level "
                         "1.1 and above (use compat=1.1 or greater)");
    }
    if (!on) {
        /* Make the refcounts on disk exact before promising they are. */
        int ret = qcow2_refcount_flush(s, err);
        if (ret == 0) {
            ret = hostfile_flush(s->file);
        }
        if (ret < 0) {
            return ret;
        }
        s->incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
        s->dirty_written = false;
        s->compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
    } else {
        s->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    s->lazy_refcounts = on && !s->bd.read_only;
    return qcow2_header_write(s, err);
}

/* Whether an L2 entry reads as zeros by flag (which version 2 lacks). */
static bool zero_flagged(const struct qcow2 *s, uint64_t entry, uint64_t bitmap)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        return false;
    }
    return s->extended_l2 ? (bitmap >> 32) != 0 : (entry & QCOW2_OFLAG_ZERO) != 0;
}

/* A zero cluster becomes zero data; one with no host cluster in an image
 * with no backing file just becomes unallocated, as qemu-img does it
 * (iotest 061): it reads as zeros either way. */
static int expand_zero_cluster(struct qcow2 *s, uint64_t off, uint64_t entry,
                               const uint8_t *zeros, struct error *err)
{
    if ((entry & QCOW2_L2E_OFFSET_MASK) || s->bd.backing_filename || off >= s->bd.size) {
        return qcow2_write_at(s, off, zeros, s->cluster_size, err);
    }
    uint64_t len = s->bd.size - off < s->cluster_size ? s->bd.size - off : s->cluster_size;
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_discard_locked(s, off, len, false, err);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Counts visited L1 entries over the active and every snapshot L1 table:
 * qemu-img's progress for a downgrade. */
struct expand_progress {
    const struct blockdev_amend_opts *o;
    uint64_t done, total;
};

static void expand_progress_step(struct expand_progress *p)
{
    p->done++;
    if (p->o->progress) {
        p->o->progress(p->o->progress_opaque, p->done, p->total);
    }
}

/* Zero clusters of the active image become clusters of zero data. */
static int expand_active(struct qcow2 *s, struct expand_progress *p, struct error *err)
{
    uint8_t *zeros = calloc(1, s->cluster_size);
    uint64_t l2_span = (uint64_t)s->cluster_size << s->l2_bits;
    uint32_t l1_size = s->l1_size;
    int ret = zeros ? 0 : error_set(err, -ENOMEM, "Out of memory");
    for (uint32_t i = 0; i < l1_size && ret == 0; i++) {
        for (uint64_t off = i * l2_span; off < (i + 1) * l2_span && ret == 0;
             off += s->cluster_size) {
            uint64_t entry, bitmap;
            pthread_mutex_lock(&s->lock);
            ret = qcow2_lookup(s, off, &entry, &bitmap, err);
            pthread_mutex_unlock(&s->lock);
            if (ret == 0 && zero_flagged(s, entry, bitmap)) {
                ret = expand_zero_cluster(s, off, entry, zeros, err);
            }
        }
        expand_progress_step(p);
    }
    free(zeros);
    return ret;
}

/* One zero entry of a snapshot's L2 table, as QEMU's
 * expand_zero_clusters_in_l1: the L2 table may be shared (l2_refs > 1), so
 * a new data cluster gets one reference per table holder. Sets *entry. */
static int expand_inactive_entry(struct qcow2 *s, uint64_t *entry, uint64_t l2_refs,
                                 const uint8_t *zeros, struct error *err)
{
    int64_t host = (int64_t)(*entry & QCOW2_L2E_OFFSET_MASK);
    if (!host) {
        if (!s->bd.backing_filename) {
            *entry = 0;     /* unallocated reads as zeros too */
            return 0;
        }
        host = qcow2_alloc_clusters(s, 1, err);
        if (host < 0) {
            return (int)host;
        }
        if (l2_refs > 1) {
            int ret = qcow2_update_refcount(s, (uint64_t)host, s->cluster_size,
                                            (int64_t)l2_refs - 1, err);
            if (ret < 0) {
                return ret;
            }
        }
    }
    int ret = qcow2_pre_write_overlap_check(s, 0, (uint64_t)host, s->cluster_size, err);
    if (ret == 0) {
        ret = hostfile_pwrite(s->file, (uint64_t)host, zeros, s->cluster_size);
    }
    *entry = (uint64_t)host | (l2_refs == 1 ? QCOW2_OFLAG_COPIED : 0);
    return ret;
}

/* Expands the zero entries of the L2 table at l2_off, on disk. */
static int expand_inactive_l2(struct qcow2 *s, uint64_t l2_off, uint8_t *l2,
                              const uint8_t *zeros, struct error *err)
{
    uint64_t refs;
    int ret = qcow2_get_refcount(s, l2_off >> s->cluster_bits, &refs, err);
    if (ret == 0) {
        ret = hostfile_pread(s->file, l2_off, l2, s->cluster_size);
    }
    bool dirty = false;
    for (uint32_t k = 0; ret == 0 && k < s->l2_size; k++) {
        uint64_t e, bm;
        qcow2_l2_read_entry(s, l2, k, &e, &bm);
        if (zero_flagged(s, e, bm)) {
            ret = expand_inactive_entry(s, &e, refs, zeros, err);
            ((uint64_t *)l2)[k] = cpu_to_be64(e);
            dirty = true;
        }
    }
    if (ret == 0 && dirty) {
        /* The new data clusters' references reach the disk before the
         * table naming them. */
        ret = qcow2_refcount_flush(s, err);
        if (ret == 0) {
            ret = qcow2_pre_write_overlap_check(s, BDEV_OL_INACTIVE_L2 | BDEV_OL_ACTIVE_L2,
                                                l2_off, s->cluster_size, err);
        }
        if (ret == 0) {
            ret = hostfile_pwrite(s->file, l2_off, l2, s->cluster_size);
        }
    }
    return ret;
}

/* Zero clusters of the snapshots become zero data in place: the L2 tables
 * are edited on disk, past the (flushed, then forgotten) L2 cache. */
static int expand_snapshots(struct qcow2 *s, struct expand_progress *p, struct error *err)
{
    uint8_t *l2 = malloc(s->cluster_size);
    uint8_t *zeros = calloc(1, s->cluster_size);
    /* The active expansion's deferred decrements land first: they tell
     * whether an L2 table is still shared. */
    int ret = l2 && zeros ? qcow2_order_commit(s, err) : error_set(err, -ENOMEM, "Out of memory");
    if (ret == 0) {
        ret = qcow2_cache_flush(s, &s->l2_cache, err);
    }
    for (uint32_t i = 0; i < s->nb_snapshots && ret == 0; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t *l1 = NULL;
        ret = qcow2_snapshot_check_l1_reported(s, sn, "Failed to turn zero into data clusters",
                                               err);
        if (ret == 0) {
            ret = qcow2_read_l1(s, sn->l1_table_offset, sn->l1_size, &l1, err);
        }
        for (uint32_t j = 0; ret == 0 && j < sn->l1_size; j++) {
            uint64_t l2_off = l1[j] & QCOW2_L1E_OFFSET_MASK;
            if (l2_off) {
                ret = expand_inactive_l2(s, l2_off, l2, zeros, err);
            }
            expand_progress_step(p);
        }
        free(l1);
    }
    qcow2_cache_invalidate(&s->l2_cache);
    free(l2);
    free(zeros);
    return ret;
}

/* Version 2 has no zero flag: zero clusters of the active image and of
 * every snapshot become zero data (or unallocated where that reads as
 * zeros). */
static int expand_zero_clusters(struct qcow2 *s, const struct blockdev_amend_opts *o,
                                struct error *err)
{
    struct expand_progress p = { .o = o, .total = s->l1_size };
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        p.total += s->snapshots[i].l1_size;
    }
    int ret = expand_active(s, &p, err);
    if (ret == 0) {
        pthread_mutex_lock(&s->lock);
        ret = expand_snapshots(s, &p, err);
        pthread_mutex_unlock(&s->lock);
    }
    return ret;
}

/* QEMU refuses a downgrade that would hide snapshot fields v2 programs do
 * not know to keep. */
static int check_snapshots_allow_v2(struct qcow2 *s, struct error *err)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->vm_state_size > UINT32_MAX || sn->disk_size != s->bd.size) {
            return error_set(err, -ENOTSUP, "Internal snapshots prevent downgrade of image");
        }
    }
    return 0;
}

/* In qcow2_downgrade's order, so the first refusal is QEMU's. */
static int downgrade(struct qcow2 *s, const struct blockdev_amend_opts *o, struct error *err)
{
    if (s->refcount_order != 4) {
        return error_set(err, -ENOTSUP, "compat=0.10 requires refcount_bits=16");
    }
    if (qcow2_has_data_file(s)) {
        return error_set(err, -ENOTSUP, "Cannot downgrade an image with a data file");
    }
    int ret = check_snapshots_allow_v2(s, err);
    if (ret < 0) {
        return ret;
    }
    /* As qemu-img, a downgrade drops lazy refcounts rather than refusing
     * (iotest 061): make the refcounts exact first. */
    pthread_mutex_lock(&s->lock);
    ret = set_lazy_refcounts(s, false, 2, err);
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    if (s->incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        return error_set(err, -EINVAL, "The image is dirty; repair it before downgrading");
    }
    uint64_t blocking = s->incompatible_features & ~QCOW2_INCOMPAT_COMPRESSION;
    if (blocking) {
        return error_set(err, -ENOTSUP, "Cannot downgrade an image with incompatible features "
                         "0x%" PRIx64 " set", blocking);
    }
    if (s->compression_type != BDEV_COMPRESSION_ZLIB) {
        return error_set(err, -ENOTSUP, "compat=0.10 does not support zstd compression");
    }
    ret = expand_zero_clusters(s, o, err);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&s->lock);
    ret = qcow2_refcount_flush(s, err);
    if (ret == 0) {
        s->version = 2;
        s->header_length = QCOW2_V2_HEADER_LEN;
        s->incompatible_features = 0;
        s->compatible_features = 0;
        s->autoclear_features = 0;
        s->header_tail_len = 0;
        ret = qcow2_header_write(s, err);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int upgrade(struct qcow2 *s, struct error *err)
{
    s->version = 3;
    s->header_length = QCOW2_V3_HEADER_LEN;
    s->refcount_order = 4;
    int ret = qcow2_header_write(s, err);
    bool incomplete = false;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        incomplete |= s->snapshots[i].extra_data_size < 16;
    }
    if (ret == 0 && incomplete) {
        /* v3 wants the disk size in every snapshot: rewrite the table
         * where QEMU would (serializing adds the known extra data). */
        bool batch;
        ret = qcow2_inplace_begin(s, &batch, err);
        if (ret == 0) {
            ret = qcow2_inplace_write_snapshots(s, qcow2_snapshots_copy(s, 0), s->nb_snapshots,
                                                err);
        }
        qcow2_inplace_end(s, batch);
    }
    return ret;
}

int qcow2_amend(struct blockdev *bd, const struct blockdev_amend_opts *o, struct error *err)
{
    if (!blockdev_is_qcow2(bd)) {
        return error_set(err, -ENOTSUP, "'%s' is not a qcow2 image", bd->filename);
    }
    if (bd->read_only) {
        return error_set(err, -EACCES, "'%s' is open read-only", bd->filename);
    }
    struct qcow2 *s = qcow2_of(bd);
    if (o->version && o->version != 2 && o->version != 3) {
        return error_set(err, -EINVAL, "Invalid compat version %d", o->version);
    }
    /* Refused before anything changes, as QEMU parses the options first. */
    int ret = qcow2_data_file_amend_check(s, o->data_file, o->data_file_raw, err);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&s->lock);
    ret = qcow2_prepare_write(s, err);
    if (ret == 0 && o->version == 3 && s->version == 2) {
        ret = upgrade(s, err);
    }
    int new_version = o->version ? o->version : (int)s->version;
    if (ret == 0 && o->lazy_refcounts >= 0) {
        ret = set_lazy_refcounts(s, o->lazy_refcounts, new_version, err);
    }
    if (ret == 0 && o->refcount_bits) {
        ret = change_refcount_bits(s, o, new_version, err);
    }
    pthread_mutex_unlock(&s->lock);
    /* qcow2_amend_options resizes before the downgrade (a snapshot of the
     * new size may then allow it) and keeps the new size if it fails. */
    if (ret == 0 && o->resize && o->size != s->bd.size) {
        ret = blockdev_truncate(bd, o->size, true, PREALLOC_OFF, err);
    }
    if (ret == 0 && o->version == 2 && s->version == 3) {
        ret = downgrade(s, o, err);
    }
    if (ret == 0 && (o->data_file || o->data_file_raw)) {
        pthread_mutex_lock(&s->lock);
        ret = qcow2_data_file_amend(s, o->data_file, o->data_file_raw, err);
        pthread_mutex_unlock(&s->lock);
    }
    return ret;     /* qemu-img prints the driver's message as it is */
}
