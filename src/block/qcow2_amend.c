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

#include "block/qcow2_int.h"

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

/* Zero clusters of the active image become clusters of zero data. */
static int expand_zero_clusters(struct qcow2 *s, struct error *err)
{
    uint8_t *zeros = calloc(1, s->cluster_size);
    uint64_t end = qcow2_size_to_l1(s, s->bd.size) << (s->cluster_bits + s->l2_bits);
    int ret = 0;
    for (uint64_t off = 0; off < end && ret == 0; off += s->cluster_size) {
        uint64_t entry, bitmap;
        pthread_mutex_lock(&s->lock);
        ret = qcow2_lookup(s, off, &entry, &bitmap, err);
        pthread_mutex_unlock(&s->lock);
        if (ret == 0 && zero_flagged(s, entry, bitmap)) {
            ret = expand_zero_cluster(s, off, entry, zeros, err);
        }
    }
    free(zeros);
    return ret;
}

static int check_snapshots_allow_v2(struct qcow2 *s, struct error *err)
{
    uint8_t *l2 = malloc(s->cluster_size);
    int ret = 0;
    for (uint32_t i = 0; i < s->nb_snapshots && ret == 0; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->vm_state_size > UINT32_MAX || sn->disk_size != s->bd.size) {
            ret = error_set(err, -ENOTSUP, "Internal snapshots prevent downgrade of image");
            break;
        }
        uint64_t *l1 = NULL;
        ret = qcow2_snapshot_check_l1_reported(s, sn, "Failed to turn zero into data clusters",
                                               err);
        if (ret < 0) {
            break;
        }
        ret = qcow2_read_l1(s, sn->l1_table_offset, sn->l1_size, &l1, err);
        for (uint32_t j = 0; ret == 0 && j < sn->l1_size; j++) {
            uint64_t l2_off = l1[j] & QCOW2_L1E_OFFSET_MASK;
            if (!l2_off) {
                continue;
            }
            ret = hostfile_pread(s->file, l2_off, l2, s->cluster_size);
            for (uint32_t k = 0; ret == 0 && k < s->l2_size; k++) {
                uint64_t e, bm;
                qcow2_l2_read_entry(s, l2, k, &e, &bm);
                if (zero_flagged(s, e, bm)) {
                    ret = error_set(err, -ENOTSUP, "Snapshot '%s' has zero clusters, which "
                                    "compat=0.10 cannot express", sn->name);
                }
            }
        }
        free(l1);
    }
    free(l2);
    return ret;
}

static int downgrade(struct qcow2 *s, struct error *err)
{
    if (s->refcount_order != 4) {
        return error_set(err, -ENOTSUP, "compat=0.10 requires refcount_bits=16");
    }
    if (s->extended_l2 || s->compression_type != BDEV_COMPRESSION_ZLIB) {
        return error_set(err, -ENOTSUP, "compat=0.10 supports neither extended L2 entries nor "
                         "zstd compression");
    }
    /* As qemu-img, a downgrade drops lazy refcounts rather than refusing
     * (iotest 061): make the refcounts exact first. */
    pthread_mutex_lock(&s->lock);
    int lazy_ret = set_lazy_refcounts(s, false, 2, err);
    pthread_mutex_unlock(&s->lock);
    if (lazy_ret < 0) {
        return lazy_ret;
    }
    if (s->incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        return error_set(err, -EINVAL, "The image is dirty; repair it before downgrading");
    }
    pthread_mutex_lock(&s->lock);
    int ret = check_snapshots_allow_v2(s, err);
    pthread_mutex_unlock(&s->lock);
    if (ret == 0) {
        ret = expand_zero_clusters(s, err);
    }
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
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_prepare_write(s, err);
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
    if (ret == 0 && o->version == 2 && s->version == 3) {
        ret = downgrade(s, err);
    }
    return ret;     /* qemu-img prints the driver's message as it is */
}
