/* QEMU's pre-write overlap check (qcow2_check_metadata_overlap): which of
 * the chosen metadata structures a host range would overwrite. The order of
 * the checks is QEMU's, so the structure named in the corruption message is
 * the one QEMU names. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "block/overlap_check.h"
#include "block/qcow2_int.h"

struct range {
    uint64_t off, len;      /* whole clusters, as QEMU widens the write */
};

static bool hits(const struct range *r, uint64_t off, uint64_t len)
{
    return len && off < r->off + r->len && r->off < off + len;
}

static bool hits_l2_tables(const struct qcow2 *s, const struct range *r, const uint64_t *l1,
                           uint32_t l1_size)
{
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2 = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (l2 && hits(r, l2, s->cluster_size)) {
            return true;
        }
    }
    return false;
}

static bool hits_refcount_blocks(const struct qcow2 *s, const struct range *r)
{
    uint32_t used = s->refcount_table_used < s->refcount_table_size ? s->refcount_table_used : s->refcount_table_size;
    for (uint32_t i = 0; s->refcount_table && i < used; i++) {
        uint64_t block = s->refcount_table[i] & QCOW2_REFT_OFFSET_MASK;
        if (block && hits(r, block, s->cluster_size)) {
            return true;
        }
    }
    return false;
}

static bool hits_inactive_l1(const struct qcow2 *s, const struct range *r)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        if (hits(r, s->snapshots[i].l1_table_offset, (uint64_t)s->snapshots[i].l1_size * 8)) {
            return true;
        }
    }
    return false;
}

/* Reads each snapshot's L1 table: a table that cannot be checked fails
 * the write (its negative errno), as in QEMU. */
static int hits_inactive_l2(struct qcow2 *s, const struct range *r)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t *l1 = NULL;
        int ret = qcow2_snapshot_check_l1(s, sn, NULL);
        if (ret == 0) {
            ret = qcow2_read_l1(s, sn->l1_table_offset, sn->l1_size, &l1, NULL);
        }
        if (ret < 0) {
            return ret;
        }
        bool hit = hits_l2_tables(s, r, l1, sn->l1_size);
        free(l1);
        if (hit) {
            return 1;
        }
    }
    return 0;
}

/* The first structure of checks that [off, off+len) overlaps, as its bit;
 * 0: none; a negative errno when the check itself failed. */
static int find_overlap(struct qcow2 *s, unsigned checks, uint64_t off, uint64_t len)
{
    if (!len) {
        return 0;
    }
    if ((checks & BDEV_OL_MAIN_HEADER) && off < s->cluster_size) {
        return BDEV_OL_MAIN_HEADER;
    }
    uint64_t start = qcow2_start_of_cluster(s, off);
    struct range r = { start, qcow2_size_to_clusters(s, off + len - start) << s->cluster_bits };
    if ((checks & BDEV_OL_ACTIVE_L1) && hits(&r, s->l1_table_offset, (uint64_t)s->l1_size * 8)) {
        return BDEV_OL_ACTIVE_L1;
    }
    if ((checks & BDEV_OL_REFCOUNT_TABLE) &&
        hits(&r, s->refcount_table_offset, (uint64_t)s->refcount_table_size * 8)) {
        return BDEV_OL_REFCOUNT_TABLE;
    }
    if ((checks & BDEV_OL_SNAPSHOT_TABLE) && hits(&r, s->snapshots_offset, s->snapshots_size)) {
        return BDEV_OL_SNAPSHOT_TABLE;
    }
    if ((checks & BDEV_OL_INACTIVE_L1) && hits_inactive_l1(s, &r)) {
        return BDEV_OL_INACTIVE_L1;
    }
    if ((checks & BDEV_OL_ACTIVE_L2) && s->l1_table && hits_l2_tables(s, &r, s->l1_table, s->l1_size)) {
        return BDEV_OL_ACTIVE_L2;
    }
    if ((checks & BDEV_OL_REFCOUNT_BLOCK) && hits_refcount_blocks(s, &r)) {
        return BDEV_OL_REFCOUNT_BLOCK;
    }
    if (checks & BDEV_OL_INACTIVE_L2) {
        int ret = hits_inactive_l2(s, &r);
        if (ret != 0) {
            return ret < 0 ? ret : BDEV_OL_INACTIVE_L2;
        }
    }
    if ((checks & BDEV_OL_BITMAP_DIRECTORY) && (s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) &&
        hits(&r, s->bitmap_dir_offset, s->bitmap_dir_size)) {
        return BDEV_OL_BITMAP_DIRECTORY;
    }
    return 0;
}

bool qcow2_overlaps_metadata(struct qcow2 *s, uint64_t off, uint64_t len)
{
    return (s->overlap_checks & BDEV_OL_INACTIVE_L2) ||
           find_overlap(s, s->overlap_checks, off, len) != 0;
}

int qcow2_pre_write_overlap_check(struct qcow2 *s, unsigned ignore, uint64_t off, uint64_t len,
                                  struct error *err)
{
    int found = find_overlap(s, s->overlap_checks & ~ignore, off, len);
    if (found < 0) {
        return error_set_errno(err, found, "Could not check the write at 0x%" PRIx64
                               " against the metadata", off);
    }
    if (found > 0) {
        return qcow2_signal_corruption(s, err, "Preventing invalid write on metadata (overlaps "
                                       "with %s)", blockdev_overlap_name((unsigned)found));
    }
    return 0;
}
