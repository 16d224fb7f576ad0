/* Snapshot create / delete / rename as QEMU does them: refcounts and COPIED
 * flags updated in place, the snapshot table rewritten to a new cluster and
 * switched by one header write (QEMU's qcow2_update_snapshot_refcount and
 * qcow2_write_snapshots).
 *
 * Doing it in QEMU's order puts every cluster where QEMU puts it (the
 * snapshot's L1 copy first, then the table), so images stay laid out as
 * qemu-img lays them out, and scripts that know QEMU's layout keep working.
 * It keeps the image's promise (qcow2_int.h): a kill at any point leaves at
 * worst leaked clusters. Refcounts are raised and synced before the new
 * table names the snapshot, and lowered only once the table no longer does;
 * a COPIED flag cleared early only costs a copy on the next write. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/cluster_tally.h"
#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/warning.h"

int qcow2_inplace_begin(struct qcow2 *s, bool *batch, struct error *err)
{
    int ret = qcow2_prepare_write(s, err);
    if (ret == 0) {
        /* Batched L2 updates and deferred frees go out first; then every
         * update below is written (and ordered) as it happens. */
        ret = qcow2_refcount_flush(s, err);
    }
    *batch = s->l2_batch;
    s->l2_batch = false;
    return ret;
}

void qcow2_inplace_end(struct qcow2 *s, bool batch)
{
    s->l2_batch = batch;
}

static int sync_all(struct qcow2 *s, struct error *err)
{
    int ret = qcow2_refcount_flush(s, err);
    if (ret == 0) {
        ret = hostfile_flush(s->file);
        if (ret < 0) {
            error_set_errno(err, ret, "Could not flush '%s'", s->bd.filename);
        }
    }
    return ret;
}

static int read_table(struct qcow2 *s, uint64_t off, uint8_t *buf, struct error *err)
{
    if ((off & s->cluster_mask) || off < s->cluster_size) {
        return qcow2_signal_corruption(s, err, "L2 table offset 0x%" PRIx64 " is invalid", off);
    }
    int ret = hostfile_pread(s->file, off, buf, s->cluster_size);
    return ret < 0 ? error_set_errno(err, ret, "Could not read the L2 table at 0x%" PRIx64, off)
                   : 0;
}

/* The L2 table goes to the file directly (the cache was flushed by
 * qcow2_inplace_begin); a cached copy would be stale. */
static int write_table(struct qcow2 *s, uint64_t off, const uint8_t *buf, struct error *err)
{
    qcow2_cache_discard(&s->l2_cache, off);
    int ret = hostfile_pwrite(s->file, off, buf, s->cluster_size);
    return ret < 0 ? error_set_errno(err, ret, "Could not write the L2 table at 0x%" PRIx64, off)
                   : 0;
}

int qcow2_inplace_write_l1(struct qcow2 *s, struct error *err)
{
    if (s->l1_size == 0) {
        return 0;
    }
    uint64_t *disk = malloc((size_t)s->l1_size * 8);
    if (!disk) {
        return error_set(err, -ENOMEM, "out of memory for the L1 table");
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        disk[i] = cpu_to_be64(s->l1_table[i]);
    }
    int ret = qcow2_order_before_mapping(s, err);
    if (ret == 0) {
        hostfile_event(s->file, BLKDBG_L1_UPDATE);
        ret = hostfile_pwrite(s->file, s->l1_table_offset, disk, (size_t)s->l1_size * 8);
        if (ret < 0) {
            error_set_errno(err, ret, "Could not update the L1 table");
        }
    }
    free(disk);
    return ret;
}

/* The host range an L2 entry holds a reference to; false when none. */
static bool entry_range(struct qcow2 *s, uint64_t entry, uint64_t *off, uint64_t *len)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        uint32_t clen;
        qcow2_compressed_range(s, entry, off, &clen);
        *len = clen;
        return true;
    }
    *off = entry & QCOW2_L2E_OFFSET_MASK;
    *len = s->cluster_size;
    return *off != 0;
}

/* +1 on everything the L2 table at l2_off references (read into l2), then
 * on the table; its COPIED flags go from l2 (everything is shared now).
 * *changed: l2 must be written back. */
static int share_l2(struct qcow2 *s, uint64_t l2_off, uint8_t *l2, bool *changed,
                    struct error *err)
{
    int ret = read_table(s, l2_off, l2, err);
    *changed = false;
    for (uint32_t i = 0; i < s->l2_size && ret == 0; i++) {
        uint8_t *p = l2 + (size_t)i * s->l2_entry_size;
        uint64_t entry = ld_be64(p), off, len;
        if (entry_range(s, entry, &off, &len)) {
            ret = qcow2_update_refcount(s, off, len, 1, err);
        }
        if (entry & QCOW2_OFLAG_COPIED) {
            st_be64(p, entry & ~QCOW2_OFLAG_COPIED);
            *changed = true;
        }
    }
    return ret == 0 ? qcow2_update_refcount(s, l2_off, s->cluster_size, 1, err) : ret;
}

/* fn on the host range of each entry of the L2 table at l2_off (read into
 * l2), then on the table itself, until one fails. */
static int each_reference(struct qcow2 *s, uint64_t l2_off, uint8_t *l2,
                          int (*fn)(struct qcow2 *s, void *opaque, uint64_t off, uint64_t len,
                                    struct error *err),
                          void *opaque, struct error *err)
{
    int ret = read_table(s, l2_off, l2, err);
    for (uint32_t i = 0; i < s->l2_size && ret == 0; i++) {
        uint64_t off, len;
        if (entry_range(s, ld_be64(l2 + (size_t)i * s->l2_entry_size), &off, &len)) {
            ret = fn(s, opaque, off, len, err);
        }
    }
    return ret == 0 ? fn(s, opaque, l2_off, s->cluster_size, err) : ret;
}

/* Whether cluster c can take count more references. A cluster without a
 * refcount block is referenced but counted nowhere (a corrupt image): QEMU
 * allocates the block and fails with -EAGAIN, or -EFBIG when the refcount
 * table could not grow that far (iotest 080); we fail alike, changing nothing. */
static int room_for(struct qcow2 *s, uint64_t c, uint64_t count, struct error *err)
{
    uint64_t rt_index = c >> s->refblock_bits;
    if (rt_index >= s->refcount_table_size ||
        !(s->refcount_table[rt_index] & QCOW2_REFT_OFFSET_MASK)) {
        uint64_t blocks = (c + s->refblock_size - 1) >> s->refblock_bits;
        return error_set(err, blocks > QCOW2_MAX_REFTABLE_BYTES / 8 ? -EFBIG : -EAGAIN,
                         "Cluster 0x%" PRIx64 " is referenced but has no refcount block",
                         c << s->cluster_bits);
    }
    uint64_t rc = 0;
    int ret = qcow2_get_refcount(s, c, &rc, err);
    if (ret == 0 && count > s->refcount_max - rc) {
        /* -EINVAL: QEMU's update_refcount fails so (qemu-img prints the code) */
        ret = error_set(err, -EINVAL, "Refcount of cluster 0x%" PRIx64 " would exceed %u bits "
                        "(raise refcount_bits with amend)", c << s->cluster_bits,
                        s->refcount_bits);
    }
    return ret;
}

/* fn on each L2 table the first n entries of l1 name, with one table-sized
 * buffer for all, until one fails. */
static int each_l2_table(struct qcow2 *s, const uint64_t *l1, uint32_t n,
                         int (*fn)(struct qcow2 *s, uint64_t l2_off, uint8_t *l2, void *opaque,
                                   struct error *err),
                         void *opaque, struct error *err)
{
    uint8_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        return error_set(err, -ENOMEM, "out of memory for an L2 table");
    }
    int ret = 0;
    for (uint32_t i = 0; i < n && ret == 0; i++) {
        uint64_t l2_off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (l2_off) {
            ret = fn(s, l2_off, l2, opaque, err);
        }
    }
    free(l2);
    return ret;
}

/* One more reference to each cluster of off..off+len, checked as it is met
 * against all the references met so far: QEMU's order, without QEMU's
 * leak when a cluster named twice overflows half way. */
static int add_refs(struct qcow2 *s, void *tally, uint64_t off, uint64_t len, struct error *err)
{
    int ret = 0;
    for (uint64_t c = off >> s->cluster_bits;
         c <= (off + len - 1) >> s->cluster_bits && ret == 0; c++) {
        if ((c >> s->refblock_bits) >= s->refcount_table_size) {
            return room_for(s, c, 1, err);      /* uncounted: fails */
        }
        uint64_t count = cluster_tally_meet(tally, c);
        ret = count ? room_for(s, c, count, err)
                    : error_set(err, -ENOMEM, "out of memory for the refcount room check");
    }
    return ret;
}

static int collect_l2_refs(struct qcow2 *s, uint64_t l2_off, uint8_t *l2, void *opaque,
                           struct error *err)
{
    return each_reference(s, l2_off, l2, add_refs, opaque, err);
}

/* Refused before anything changes: a cluster whose refcount cannot take
 * all the references the snapshot adds to it (counted together: checked one
 * by one, a cluster named twice overflowed half way, leaking the rest).
 * The tally's memory follows the clusters met, not the references. */
int qcow2_inplace_check_room(struct qcow2 *s, uint32_t limit, struct error *err)
{
    struct cluster_tally tally;
    int ret = cluster_tally_init(&tally, s->refcount_table_size, s->refblock_bits);
    if (ret < 0) {
        return error_set(err, ret, "out of memory for the refcount room check");
    }
    ret = each_l2_table(s, s->l1_table, limit, collect_l2_refs, &tally, err);
    cluster_tally_free(&tally);
    return ret;
}

/* The L2 tables one pass of qcow2_inplace_share_active keeps in memory. */
#define SHARE_GROUP_BYTES (4u << 20)

/* Shares the L2 tables l1[first..end) names, with buf room for all of them:
 * their raised refcounts wait in the refcount-block cache and go out
 * together, one write per block (one per entry made a snapshot of a large
 * image 15 times slower than qemu-img's), synced; then the tables whose
 * COPIED flags went. That order (QEMU's: its L2 cache depends on the
 * refcount cache here) keeps a power loss from leaving an entry without
 * COPIED whose refcount is still 1; COPIED over a refcount of 2 until the
 * tables land is a window QEMU has too (a leak the snapshot has not taken
 * yet). A failure part way still writes the tables done. */
static int share_group(struct qcow2 *s, uint32_t first, uint32_t end, uint8_t *buf,
                       struct error *err)
{
    bool changed[SHARE_GROUP_BYTES / 512];
    uint32_t done = first;
    int ret = 0;
    s->l2_batch = true;     /* raised refcounts stay dirty in the cache */
    for (; done < end && ret == 0; done++) {
        uint64_t l2_off = s->l1_table[done] & QCOW2_L1E_OFFSET_MASK;
        changed[done - first] = false;
        if (l2_off) {
            ret = share_l2(s, l2_off, buf + (size_t)(done - first) * s->cluster_size,
                           &changed[done - first], err);
        }
    }
    s->l2_batch = false;
    done -= ret < 0;        /* the failed table is left as it is on disk */
    /* After a failure, its message stands (NULL: no other). */
    int flushed = sync_all(s, ret < 0 ? NULL : err);
    ret = ret < 0 ? ret : flushed;
    for (uint32_t i = first; i < done && flushed == 0; i++) {
        if (changed[i - first]) {
            int w = write_table(s, s->l1_table[i] & QCOW2_L1E_OFFSET_MASK,
                                buf + (size_t)(i - first) * s->cluster_size,
                                ret < 0 ? NULL : err);
            ret = ret < 0 ? ret : w;
        }
    }
    return ret;
}

int qcow2_inplace_share_active(struct qcow2 *s, uint32_t limit, struct error *err)
{
    uint32_t group = SHARE_GROUP_BYTES / s->cluster_size ? SHARE_GROUP_BYTES / s->cluster_size : 1;
    group = group < limit ? group : limit ? limit : 1;
    uint8_t *buf = malloc((size_t)group * s->cluster_size);
    int ret = buf ? 0 : error_set(err, -ENOMEM, "out of memory for the L2 tables");
    for (uint32_t first = 0; first < limit && ret == 0; first += group) {
        ret = share_group(s, first, limit - first < group ? limit : first + group, buf, err);
    }
    free(buf);
    /* Shared now, or perhaps (a failure part way): no longer ours alone.
     * Dropping COPIED costs at worst a copy on the next write. */
    for (uint32_t i = 0; i < limit; i++) {
        s->l1_table[i] &= ~QCOW2_OFLAG_COPIED;
    }
    return ret == 0 ? qcow2_inplace_write_l1(s, err) : ret;
}

static int free_ref(struct qcow2 *s, void *opaque, uint64_t off, uint64_t len, struct error *err)
{
    return qcow2_free_clusters(s, off, len, err);
}

/* -1 on everything the L2 table at l2_off references, then on the table. */
static int unshare_l2(struct qcow2 *s, uint64_t l2_off, uint8_t *l2, void *opaque,
                      struct error *err)
{
    return each_reference(s, l2_off, l2, free_ref, NULL, err);
}

/* The table no longer naming the snapshot is on disk (synced by
 * qcow2_inplace_write_snapshots), so the lowered refcounts need no order of
 * their own: they wait in the refcount-block cache and go out once per block
 * at the end (one write per entry made a delete 6 times slower than
 * qemu-img's), and are synced before COPIED flags are set back on what they
 * free: a COPIED flag on the disk over a refcount of 2 is a corruption to
 * qemu-img check. (The other way round, refcount 1 without COPIED until
 * qcow2_inplace_fix_copied's writes land, is a window QEMU has too; it only
 * costs a copy on the next write.) */
int qcow2_inplace_release(struct qcow2 *s, const uint64_t *l1, uint32_t l1_size,
                          uint64_t l1_offset, struct error *err)
{
    s->refcounts_after_mappings = true;
    int ret = each_l2_table(s, l1, l1_size, unshare_l2, NULL, err);
    if (ret == 0 && l1_size) {
        ret = qcow2_free_clusters(s, l1_offset, (uint64_t)l1_size * 8, err);
    }
    s->refcounts_after_mappings = false;
    int synced = sync_all(s, ret < 0 ? NULL : err);
    return ret < 0 ? ret : synced;
}

static int refcount_of(struct qcow2 *s, uint64_t off, uint64_t *rc, struct error *err)
{
    return qcow2_get_refcount(s, off >> s->cluster_bits, rc, err);
}

/* COPIED set on the entries of one active L2 table whose cluster is counted once. */
static int fix_l2_copied(struct qcow2 *s, uint64_t l2_off, uint8_t *l2, struct error *err)
{
    int ret = read_table(s, l2_off, l2, err);
    bool changed = false;
    for (uint32_t i = 0; i < s->l2_size && ret == 0; i++) {
        uint8_t *p = l2 + (size_t)i * s->l2_entry_size;
        uint64_t entry = ld_be64(p), host = entry & QCOW2_L2E_OFFSET_MASK, rc = 0;
        if ((entry & QCOW2_OFLAG_COMPRESSED) || !host) {
            continue;
        }
        ret = refcount_of(s, host, &rc, err);
        uint64_t want = rc == 1 ? entry | QCOW2_OFLAG_COPIED : entry & ~QCOW2_OFLAG_COPIED;
        if (ret == 0 && want != entry) {
            st_be64(p, want);
            changed = true;
        }
    }
    return ret == 0 && changed ? write_table(s, l2_off, l2, err) : ret;
}

int qcow2_inplace_fix_copied(struct qcow2 *s, struct error *err)
{
    uint8_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        return error_set(err, -ENOMEM, "out of memory for an L2 table");
    }
    bool changed = false;
    int ret = 0;
    for (uint32_t i = 0; i < s->l1_size && ret == 0; i++) {
        uint64_t l2_off = s->l1_table[i] & QCOW2_L1E_OFFSET_MASK, rc = 0;
        if (!l2_off) {
            continue;
        }
        ret = refcount_of(s, l2_off, &rc, err);
        if (ret == 0 && rc == 1) {
            /* Only a table counted once is ours to change. */
            ret = fix_l2_copied(s, l2_off, l2, err);
        }
        uint64_t want = rc == 1 ? l2_off | QCOW2_OFLAG_COPIED : l2_off;
        changed |= want != s->l1_table[i];
        s->l1_table[i] = want;
    }
    free(l2);
    return ret == 0 && changed ? qcow2_inplace_write_l1(s, err) : ret;
}

/* The replaced table's clusters go. A table read from past the end of the
 * file (iotest 080) was never counted: QEMU's update_refcount refuses to
 * take its count below zero with -EINVAL, freeing nothing and flagging no
 * corruption; so do we. */
static int free_old_table(struct qcow2 *s, uint64_t off, uint64_t len, struct error *err)
{
    int64_t file_size = hostfile_size(s->file);
    if (file_size >= 0 && off >= (uint64_t)file_size) {
        return error_set(err, -EINVAL, "The old snapshot table lies past the end of the file");
    }
    return qcow2_free_clusters(s, off, len, err);
}

int qcow2_inplace_write_snapshots(struct qcow2 *s, struct qcow2_snapshot *list, uint32_t count,
                                  struct error *err)
{
    uint8_t *buf = NULL;
    uint64_t len = 0;
    int64_t off = 0;
    if (!list) {    /* a copy that failed for want of memory */
        return error_set(err, -ENOMEM, "Could not allocate memory for the snapshot table");
    }
    int ret = qcow2_snapshots_serialize(list, count, &buf, &len, err);
    if (ret == 0 && count) {
        off = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, len), err);
        ret = off < 0 ? (int)off : hostfile_pwrite(s->file, (uint64_t)off, buf, len);
        if (off >= 0 && ret < 0) {
            error_set_errno(err, ret, "Could not write the snapshot table");
        }
    }
    free(buf);
    if (ret == 0) {
        /* The table and every refcount it relies on are on disk before the header names it. */
        ret = sync_all(s, err);
    }
    if (ret == 0) {
        uint8_t h[12];
        st_be32(h, count);
        st_be64(h + 4, (uint64_t)off);
        ret = hostfile_pwrite(s->file, 60, h, sizeof(h));
        ret = ret < 0 ? error_set_errno(err, ret, "Could not update the qcow2 header") : 0;
    }
    if (ret < 0) {
        qcow2_snapshot_list_free_internal(list, count);
        return ret;
    }
    uint64_t old_off = s->snapshots_offset, old_size = s->snapshots_size;
    bool had_table = s->nb_snapshots > 0;
    qcow2_snapshots_free(s);
    s->snapshots = list;
    s->nb_snapshots = count;
    s->snapshots_offset = (uint64_t)off;
    s->snapshots_size = len;
    if (had_table) {
        ret = sync_all(s, err);
        ret = ret == 0 ? free_old_table(s, old_off, old_size, err) : ret;
        if (ret < 0) {
            /* QEMU's words: the old table is leaked, the new one is in place. */
            warning_print("qcow2_free_clusters failed: %s\n", strerror(-ret));
            error_clear(err);
        }
    }
    return 0;
}
