/* Emptying a qcow2 image after a commit (QEMU's make_completely_empty): the
 * file is cut back to a header, a refcount table, one refcount block and an
 * empty L1 table, instead of discarding every cluster one by one. The image
 * is marked dirty first: a failure half-way leaves refcounts that no longer
 * describe the file, and the next open repairs them, as with QEMU (iotest
 * 098 checks what is left on disk after each failing step). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"

/* The L1 table and three clusters (header, refcount table, one refcount
 * block) fit in what one refcount block counts; nothing else owns clusters
 * the emptied image must keep (snapshots, bitmaps, an encryption header). */
bool qcow2_can_empty_completely(const struct qcow2 *s, uint32_t l1_clusters)
{
    return s->version >= 3 && s->nb_snapshots == 0 && s->nb_bitmaps == 0 &&
           s->crypt_method == 0 && 3 + (uint64_t)l1_clusters <= s->refblock_size;
}

static int write_sync(struct qcow2 *s, uint64_t off, const void *buf, size_t len)
{
    int ret = hostfile_pwrite(s->file, off, buf, len);
    return ret < 0 ? ret : hostfile_flush(s->file);
}

/* Writes back and drops what the caches hold, then sets the dirty bit. */
static int prepare(struct qcow2 *s, struct error *err)
{
    int ret = qcow2_order_commit(s, err);
    if (ret == 0) {
        ret = qcow2_refcount_flush(s, err);
    }
    if (ret < 0) {
        return ret;
    }
    qcow2_cache_invalidate(&s->l2_cache);
    qcow2_cache_invalidate(&s->refblock_cache);
    qcow2_zcache_forget_range(s, 0, UINT64_MAX);
    s->incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    ret = qcow2_header_write_incompat(s, err);
    if (ret == 0) {
        s->dirty_written = true;
    }
    return ret;
}

/* Zeroes the L1 table, then the clusters the new reftable, refblock and L1
 * table take, and points the header at them. */
static int tear_down(struct qcow2 *s, uint32_t l1_clusters)
{
    uint64_t cs = s->cluster_size;
    hostfile_event(s->file, BLKDBG_L1_UPDATE);
    int ret = hostfile_zero_range(s->file, s->l1_table_offset, l1_clusters * cs, false);
    if (ret < 0) {
        return ret;
    }
    memset(s->l1_table, 0, (size_t)s->l1_size * 8);
    hostfile_event(s->file, BLKDBG_EMPTY_IMAGE_PREPARE);
    ret = hostfile_zero_range(s->file, cs, (2 + (uint64_t)l1_clusters) * cs, false);
    if (ret < 0) {
        return ret;
    }
    hostfile_event(s->file, BLKDBG_L1_UPDATE);
    hostfile_event(s->file, BLKDBG_REFTABLE_UPDATE);
    uint8_t h[20];      /* l1_table_offset, refcount_table_offset and _clusters */
    st_be64(h, 3 * cs);
    st_be64(h + 8, cs);
    st_be32(h + 16, 1);
    return write_sync(s, 40, h, sizeof(h));
}

/* Enters the first refcount block and counts the clusters in use. */
static int rebuild_refcounts(struct qcow2 *s, uint32_t l1_clusters, struct error *err)
{
    uint64_t cs = s->cluster_size;
    uint64_t *table = calloc(cs / 8, 8);
    if (!table) {
        return error_set(err, -ENOMEM, "Could not allocate a refcount table");
    }
    s->l1_table_offset = 3 * cs;
    free(s->refcount_table);
    s->refcount_table = table;
    s->refcount_table_offset = cs;
    s->refcount_table_clusters = 1;
    s->refcount_table_size = (uint32_t)(cs / 8);
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC);
    uint8_t entry[8];
    st_be64(entry, 2 * cs);
    int ret = write_sync(s, cs, entry, sizeof(entry));
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write the refcount table");
    }
    table[0] = 2 * cs;
    qcow2_refcount_table_changed(s);
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    return qcow2_update_refcount(s, 0, (3 + (uint64_t)l1_clusters) * cs, 1, err);
}

static int mark_clean(struct qcow2 *s, struct error *err)
{
    int ret = qcow2_refcount_flush(s, err);
    if (ret == 0) {
        ret = hostfile_flush(s->file);
    }
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write the refcounts of the emptied image");
    }
    s->incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    ret = qcow2_header_write_incompat(s, err);
    s->dirty_written = false;
    return ret;
}

/* Lock held. A failure after the tear-down started leaves the image broken:
 * s->broken stops every later write, close included, so that the dirty bit
 * stays and the next open repairs the image. */
int qcow2_empty_completely(struct qcow2 *s, uint32_t l1_clusters, struct error *err)
{
    int ret = prepare(s, err);
    if (ret < 0) {
        return ret;
    }
    ret = tear_down(s, l1_clusters);
    if (ret < 0) {
        s->broken = true;
        return error_set_errno(err, ret, "Could not clear the image's tables");
    }
    ret = rebuild_refcounts(s, l1_clusters, err);
    if (ret < 0) {
        s->broken = true;
        return ret;
    }
    ret = mark_clean(s, err);
    if (ret == 0) {
        ret = hostfile_truncate(s->file, (3 + (uint64_t)l1_clusters) * s->cluster_size);
        if (ret < 0) {
            error_set_errno(err, ret, "Could not shrink the emptied image file");
        }
    }
    return ret;
}
