/* Reference counts and the cluster allocator.
 *
 * The refcount table points to refcount blocks; a block counts the references
 * to refblock_size consecutive clusters. A missing block means refcount 0.
 * New blocks are placed at the first cluster of the range they describe, so a
 * block always describes itself; a refcount table that must grow moves to a
 * fresh area past everything else, together with the blocks describing it. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"

uint64_t qcow2_refcount_entry_get(const struct qcow2 *s, const uint8_t *block, uint64_t index)
{
    switch (s->refcount_order) {
    case 3: return block[index];
    case 4: return ld_be16(block + index * 2);
    case 5: return ld_be32(block + index * 4);
    case 6: return ld_be64(block + index * 8);
    default: {
        /* 1, 2 or 4 bits: packed from the least significant bit of each byte */
        uint32_t bits = s->refcount_bits;
        uint32_t per_byte = 8 / bits;
        uint32_t shift = (uint32_t)(index % per_byte) * bits;
        return (block[index / per_byte] >> shift) & ((1u << bits) - 1);
    }
    }
}

void qcow2_refcount_entry_set(const struct qcow2 *s, uint8_t *block, uint64_t index, uint64_t value)
{
    switch (s->refcount_order) {
    case 3: block[index] = (uint8_t)value; break;
    case 4: st_be16(block + index * 2, (uint16_t)value); break;
    case 5: st_be32(block + index * 4, (uint32_t)value); break;
    case 6: st_be64(block + index * 8, value); break;
    default: {
        uint32_t bits = s->refcount_bits;
        uint32_t per_byte = 8 / bits;
        uint32_t shift = (uint32_t)(index % per_byte) * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        block[index / per_byte] = (uint8_t)((block[index / per_byte] & ~mask) | (value << shift));
        break;
    }
    }
}

/* Byte range of a refcount block that holds entries [first, last]. */
static void entry_byte_range(const struct qcow2 *s, uint64_t first, uint64_t last,
                             uint32_t *start, uint32_t *len)
{
    uint64_t first_bit = first * s->refcount_bits;
    uint64_t end_bit = (last + 1) * s->refcount_bits;
    *start = (uint32_t)(first_bit / 8);
    *len = (uint32_t)((end_bit + 7) / 8 - *start);
}

int qcow2_refcount_init(struct qcow2 *s, struct error *err)
{
    uint64_t bytes = (uint64_t)s->refcount_table_clusters << s->cluster_bits;
    s->refcount_table_size = (uint32_t)(bytes / 8);
    s->refcount_table = malloc(bytes);
    if (!s->refcount_table) {
        return error_set(err, -ENOMEM, "Could not allocate the refcount table");
    }
    int ret = hostfile_pread(s->file, s->refcount_table_offset, s->refcount_table, bytes);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not read the refcount table");
    }
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        s->refcount_table[i] = be64_to_cpu(s->refcount_table[i]);
    }
    qcow2_refcount_table_changed(s);
    return 0;
}

void qcow2_refcount_table_changed(struct qcow2 *s)
{
    uint32_t n = s->refcount_table ? s->refcount_table_size : 0;
    while (n && !s->refcount_table[n - 1]) {
        n--;
    }
    s->refcount_table_used = n;
}

static void set_table_entry(struct qcow2 *s, uint64_t index, uint64_t block)
{
    s->refcount_table[index] = block;
    if (block && index >= s->refcount_table_used) {
        s->refcount_table_used = (uint32_t)index + 1;
    }
}

/* The refcount block for refcount table index i, or NULL when there is none. */
static int get_block(struct qcow2 *s, uint64_t rt_index, uint8_t **block, struct error *err)
{
    *block = NULL;
    if (rt_index >= s->refcount_table_size) {
        return 0;
    }
    uint64_t off = s->refcount_table[rt_index] & QCOW2_REFT_OFFSET_MASK;
    if (off == 0) {
        return 0;
    }
    if (off & s->cluster_mask) {
        return qcow2_signal_corruption(s, err, "Refblock offset %#" PRIx64
                                       " unaligned (reftable index: %#" PRIx64 ")",
                                       off, rt_index);
    }
    if (off == 0 || off < s->cluster_size) {
        return qcow2_signal_corruption(s, err, "refcount block %" PRIu64 " overlaps the header",
                                       rt_index);
    }
    return qcow2_cache_get(s, &s->refblock_cache, off, false, block, err);
}

int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster_index, uint64_t *refcount,
                       struct error *err)
{
    uint8_t *block;
    int ret = get_block(s, cluster_index >> s->refblock_bits, &block, err);
    if (ret < 0) {
        return ret;
    }
    *refcount = block ? qcow2_refcount_entry_get(s, block, cluster_index & (s->refblock_size - 1))
                      : 0;
    return 0;
}

static int write_table_entry(struct qcow2 *s, uint64_t rt_index, struct error *err)
{
    uint8_t b[8];
    st_be64(b, s->refcount_table[rt_index]);
    int ret = qcow2_order_before_mapping(s, err);
    if (ret < 0) {
        return ret;
    }
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC_HOOKUP);
    ret = hostfile_pwrite(s->file, s->refcount_table_offset + rt_index * 8, b, 8);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the refcount table");
    }
    return 0;
}

uint64_t qcow2_refcount_metadata_clusters(uint64_t clusters, uint64_t cluster_size,
                                          uint32_t refcount_bits, bool generous, uint64_t *blocks)
{
    uint64_t per_block = cluster_size * 8 / refcount_bits;
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t table = 0, n = 0, last;
    *blocks = 0;
    do {
        last = n;
        *blocks = (clusters + table + *blocks + per_block - 1) / per_block;
        table = (*blocks + per_table_cluster - 1) / per_table_cluster;
        n = clusters + *blocks + table;
        if (n == last && generous) {
            clusters += (table + 1) / 2;    /* room for the table to grow into */
            n = 0;
            generous = false;
        }
    } while (n != last);
    return *blocks + table;
}

/* Counts the clusters of [start, end) that the refcount block at off (for
 * table index i) describes: a new block is written whole, one the table
 * already has is updated. */
static int count_area_in_block(struct qcow2 *s, uint64_t i, uint64_t off, bool fresh,
                               uint64_t start, uint64_t end, struct error *err)
{
    uint64_t first = i << s->refblock_bits;
    uint64_t from = start > first ? start - first : 0;
    uint64_t to = end <= first ? 0 : end - first < s->refblock_size ? end - first : s->refblock_size;
    if (!fresh && from >= to) {
        return 0;
    }
    uint8_t *block;
    int ret = qcow2_cache_get(s, &s->refblock_cache, off, fresh, &block, err);
    for (uint64_t j = from; ret == 0 && j < to; j++) {
        qcow2_refcount_entry_set(s, block, j, 1);
    }
    return ret < 0 ? ret : qcow2_cache_update(s, &s->refblock_cache, block, 0, s->cluster_size,
                                              false, err);
}

/* Writes the table (host order) at table_off, names it in the header and
 * makes it the table in use; the old one is freed. Takes table. */
static int switch_refcount_table(struct qcow2 *s, uint64_t *table, uint64_t entries,
                                 uint64_t table_off, struct error *err)
{
    uint64_t bytes = entries * 8;
    uint64_t *disk = malloc(bytes);
    if (!disk) {
        free(table);
        return error_set(err, -ENOMEM, "Out of memory for a new refcount table");
    }
    for (uint64_t i = 0; i < entries; i++) {
        disk[i] = cpu_to_be64(table[i]);
    }
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
    int ret = hostfile_pwrite(s->file, table_off, disk, bytes);
    free(disk);
    if (ret == 0) {
        ret = hostfile_flush(s->file);  /* the new table is complete before the header names it */
    }
    if (ret < 0) {
        free(table);
        return error_set_errno(err, ret, "Could not write the new refcount table");
    }
    uint64_t old_off = s->refcount_table_offset;
    uint64_t old_clusters = s->refcount_table_clusters;
    s->refcount_table_offset = table_off;
    s->refcount_table_clusters = (uint32_t)(bytes >> s->cluster_bits);
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE);
    ret = qcow2_header_write_refcount_table(s, err);
    if (ret < 0) {
        s->refcount_table_offset = old_off;
        s->refcount_table_clusters = (uint32_t)old_clusters;
        free(table);
        return ret;
    }
    free(s->refcount_table);
    s->refcount_table = table;
    s->refcount_table_size = (uint32_t)entries;
    qcow2_refcount_table_changed(s);
    return qcow2_update_refcount(s, old_off, old_clusters << s->cluster_bits, -1, err);
}

/* QEMU's qcow2_refcount_area: a new refcount table, and the refcount blocks
 * missing from start (a cluster index past everything in use, at a block
 * boundary) on, placed at start, counting themselves and `additional`
 * clusters past them. The table gets half again the entries it needs, so
 * that it need not move again soon; new_block (if not 0) is entered at
 * new_index. *end: the first cluster past the new structures. */
static int refcount_area(struct qcow2 *s, uint64_t start, uint64_t additional,
                         uint64_t new_index, uint64_t new_block, uint64_t *end,
                         struct error *err)
{
    uint64_t total, per_table_cluster = s->cluster_size / 8;
    qcow2_refcount_metadata_clusters(start + additional, s->cluster_size, s->refcount_bits,
                                     true, &total);
    uint64_t entries = total + (total + 1) / 2;
    entries = (entries + per_table_cluster - 1) / per_table_cluster * per_table_cluster;
    if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES) {
        return error_set(err, -EFBIG, "The image is too large: the refcount table cannot grow");
    }
    uint64_t *table = calloc(entries, 8);
    if (!table) {
        return error_set(err, -ENOMEM, "Out of memory for a new refcount table");
    }
    uint64_t old = s->refcount_table_size < entries ? s->refcount_table_size : entries;
    memcpy(table, s->refcount_table, (size_t)old * 8);
    if (new_block) {
        table[new_index] = new_block;
    }
    uint64_t area_index = start >> s->refblock_bits, missing = 0;
    for (uint64_t i = area_index; i < total; i++) {
        missing += !table[i];
    }
    uint64_t table_start = start + missing;
    *end = table_start + entries / per_table_cluster;
    if (((*end + additional) << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET) {
        free(table);
        return error_set(err, -EFBIG, "The image is too large: the refcount table cannot grow");
    }
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
    uint64_t next = start;
    int ret = 0;
    for (uint64_t i = area_index; i < total && ret == 0; i++) {
        bool fresh = !table[i];
        if (fresh) {
            table[i] = next++ << s->cluster_bits;
        }
        ret = count_area_in_block(s, i, table[i] & QCOW2_REFT_OFFSET_MASK, fresh, start, *end,
                                  err);
    }
    if (ret < 0) {
        free(table);
        return ret;
    }
    return switch_refcount_table(s, table, entries, table_start << s->cluster_bits, err);
}

/* Writes a new refcount block at cluster `block` that counts only itself. */
static int write_self_counting_block(struct qcow2 *s, uint64_t block, struct error *err)
{
    uint64_t block_off = block << s->cluster_bits;
    if (block_off > QCOW2_MAX_HOST_OFFSET) {
        return error_set(err, -EFBIG, "Image file would exceed the maximum qcow2 size");
    }
    uint8_t *buf;
    int ret = qcow2_cache_get(s, &s->refblock_cache, block_off, true, &buf, err);
    if (ret < 0) {
        return ret;
    }
    qcow2_refcount_entry_set(s, buf, block & (s->refblock_size - 1), 1);
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC_WRITE);
    ret = qcow2_cache_update(s, &s->refblock_cache, buf, 0, s->cluster_size, false, err);
    if (ret < 0) {
        qcow2_cache_discard(&s->refblock_cache, block_off);
    }
    return ret;
}

/* The refcount table has no entry for rt_index: as QEMU's
 * alloc_refcount_block, the block for it goes to the first free cluster
 * (`after`, past the run being allocated) when that is in its range, and a
 * new table with the blocks that count it goes past that block's range. */
static int grow_for_block(struct qcow2 *s, uint64_t cluster_index, uint64_t after,
                          struct error *err)
{
    uint64_t rt_index = cluster_index >> s->refblock_bits;
    uint64_t block = after >> s->refblock_bits == rt_index ? after : rt_index << s->refblock_bits;
    int ret = write_self_counting_block(s, block, err);
    if (ret < 0) {
        return ret;
    }
    hostfile_event(s->file, BLKDBG_REFTABLE_GROW);
    uint64_t used = (cluster_index > block ? cluster_index : block) + 1;
    uint64_t meta = (used + s->refblock_size - 1) >> s->refblock_bits << s->refblock_bits;
    uint64_t end;
    return refcount_area(s, meta, 0, rt_index, block << s->cluster_bits, &end, err);
}

/* Makes sure the refcount block for cluster_index exists. *created tells
 * whether metadata was allocated (which may have taken clusters); `after`:
 * the first cluster past the clusters being counted. */
static int ensure_block(struct qcow2 *s, uint64_t cluster_index, uint64_t after, bool *created,
                        struct error *err)
{
    uint64_t rt_index = cluster_index >> s->refblock_bits;
    if (rt_index >= s->refcount_table_size) {
        int ret = grow_for_block(s, cluster_index, after, err);
        *created = ret == 0;
        return ret;
    }
    if (s->refcount_table[rt_index] & QCOW2_REFT_OFFSET_MASK) {
        return 0;
    }
    /* The block goes to the first cluster of its own range and counts itself. */
    uint64_t block_off = (rt_index << s->refblock_bits) << s->cluster_bits;
    int ret = write_self_counting_block(s, rt_index << s->refblock_bits, err);
    if (ret < 0) {
        return ret;
    }
    qcow2_order_note_target(s);
    set_table_entry(s, rt_index, block_off);
    ret = write_table_entry(s, rt_index, err);
    if (ret < 0) {
        s->refcount_table[rt_index] = 0;
        return ret;
    }
    *created = true;
    return 0;
}

static void forget_freed_cluster(struct qcow2 *s, uint64_t cluster_index)
{
    uint64_t off = cluster_index << s->cluster_bits;
    /* Reads that looked it up before it was unmapped finish first (see
     * io_guard); the lock held keeps new ones from starting meanwhile. */
    pthread_rwlock_wrlock(&s->io_guard);
    pthread_rwlock_unlock(&s->io_guard);
    qcow2_cache_discard(&s->l2_cache, off);
    qcow2_cache_discard(&s->refblock_cache, off);
    qcow2_zcache_forget_range(s, off, s->cluster_size);
    if (cluster_index < s->free_cluster_index) {
        s->free_cluster_index = cluster_index;
    }
    if (s->free_byte_offset && qcow2_start_of_cluster(s, s->free_byte_offset) == off) {
        s->free_byte_offset = 0;
    }
}

/* Updates the entries of one refcount block for clusters [first, first+n). */
static int update_block(struct qcow2 *s, uint64_t first, uint64_t n, int64_t addend,
                        struct error *err)
{
    bool created = false;
    /* QEMU reports it for every block an update looks up, present or new. */
    hostfile_event(s->file, BLKDBG_REFBLOCK_ALLOC);
    int ret = addend > 0 ? ensure_block(s, first, first + n, &created, err)
                         : qcow2_order_before_decrement(s, err);
    if (ret < 0) {
        return ret;
    }
    /* Only an update reports the load, cached or not, as QEMU's
     * load_refcount_block: its plain lookups (qcow2_get_refcount) do not, so
     * the free-cluster search reads the block before a refblock_load rule
     * fires and the failure lands on a later write (iotest 026). */
    hostfile_event(s->file, BLKDBG_REFBLOCK_LOAD);
    uint8_t *block;
    ret = get_block(s, first >> s->refblock_bits, &block, err);
    if (ret < 0) {
        return ret;
    }
    if (!block) {
        return qcow2_signal_corruption(s, err, "freeing cluster 0x%" PRIx64
                                       " which has no refcount block", first << s->cluster_bits);
    }
    uint64_t base = first & (s->refblock_size - 1);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t old = qcow2_refcount_entry_get(s, block, base + i);
        if ((addend < 0 && old < (uint64_t)-addend) ||
            (addend > 0 && s->refcount_max - old < (uint64_t)addend)) {
            if (addend > 0) {
                return error_set(err, -ERANGE, "Refcount of cluster 0x%" PRIx64 " would exceed "
                                 "%u bits", (first + i) << s->cluster_bits, s->refcount_bits);
            }
            return qcow2_signal_corruption(s, err, "refcount of cluster 0x%" PRIx64
                                           " would drop below zero", (first + i) << s->cluster_bits);
        }
        qcow2_refcount_entry_set(s, block, base + i, old + (uint64_t)addend);
    }
    uint32_t start, len;
    entry_byte_range(s, base, base + n - 1, &start, &len);
    /* Raised refcounts wait in the cache within a batch, as in QEMU's
     * refcount cache: qcow2_order_before_mapping writes them before
     * anything points to the clusters (one block write per batch instead of
     * one per allocation). Lowered ones go out at once, after their sync. */
    bool writeback = s->lazy_refcounts || s->refcounts_after_mappings ||
                     (addend > 0 && s->l2_batch);
    ret = qcow2_cache_update(s, &s->refblock_cache, block, start, len, writeback, err);
    if (ret < 0) {
        return ret;
    }
    if (addend > 0) {
        qcow2_order_note_target(s);
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (qcow2_refcount_entry_get(s, block, base + i) == 0) {
            forget_freed_cluster(s, first + i);
        }
    }
    return 0;
}

int qcow2_update_refcount(struct qcow2 *s, uint64_t offset, uint64_t len, int64_t addend,
                          struct error *err)
{
    if (len == 0 || addend == 0) {
        return 0;
    }
    if (addend < 0 && qcow2_order_defer_free(s, offset, len, addend, false)) {
        return 0;
    }
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    while (first <= last) {
        uint64_t block_end = ((first >> s->refblock_bits) + 1) << s->refblock_bits;
        uint64_t n = (last + 1 < block_end ? last + 1 : block_end) - first;
        int ret = update_block(s, first, n, addend, err);
        if (ret < 0) {
            return ret;
        }
        first += n;
    }
    return 0;
}

static void give_back_flush(struct qcow2 *s)
{
    if (s->give_back_len) {
        hostfile_discard(s->file, s->give_back_off, s->give_back_len);
        s->give_back_len = 0;
    }
}

/* Host range [off, off + len) is free: to the host now, or (merging) with
 * the waiting run it extends. */
static void give_back(struct qcow2 *s, uint64_t off, uint64_t len)
{
    if (s->give_back_merging && s->give_back_len && off == s->give_back_off + s->give_back_len) {
        s->give_back_len += len;
        return;
    }
    give_back_flush(s);
    if (s->give_back_merging) {
        s->give_back_off = off;
        s->give_back_len = len;
    } else {
        hostfile_discard(s->file, off, len);
    }
}

void qcow2_give_back_begin(struct qcow2 *s)
{
    s->give_back_merging++;
}

void qcow2_give_back_end(struct qcow2 *s)
{
    if (--s->give_back_merging == 0) {
        give_back_flush(s);
    }
}

int qcow2_free_clusters(struct qcow2 *s, uint64_t offset, uint64_t len, struct error *err)
{
    if (len && qcow2_order_defer_free(s, offset, len, -1, true)) {
        return 0;
    }
    hostfile_event(s->file, BLKDBG_CLUSTER_FREE);
    int ret = qcow2_update_refcount(s, offset, len, -1, err);
    if (ret < 0) {
        return ret;
    }
    /* Give freed space back to the host (like QEMU's pass-discard). */
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    for (uint64_t ci = first; ci <= last; ci++) {
        uint64_t rc;
        if (qcow2_get_refcount(s, ci, &rc, NULL) == 0 && rc == 0) {
            give_back(s, ci << s->cluster_bits, s->cluster_size);
        }
    }
    return 0;
}

int qcow2_free_unused_clusters(struct qcow2 *s, uint64_t offset, uint64_t len, struct error *err)
{
    if (len && qcow2_order_defer_free(s, offset, len, -1, false)) {
        return 0;
    }
    hostfile_event(s->file, BLKDBG_CLUSTER_FREE);
    return qcow2_update_refcount(s, offset, len, -1, err);
}

/* Within a batch the refcount drops at the commit, but the host may have
 * the cluster now: nothing in memory maps it any more, and until the drop
 * nothing can reuse it. After a power loss a mapping on the disk may still
 * point here and read zeros, which is what the discard or zero write asked
 * for. Metadata is never given back early: a stale header or table would
 * then point at zeros. */
int qcow2_free_discarded_cluster(struct qcow2 *s, uint64_t offset, struct error *err)
{
    uint64_t rc;
    if (!s->l2_batch || qcow2_get_refcount(s, offset >> s->cluster_bits, &rc, NULL) < 0 || rc != 1 ||
        !qcow2_order_defer_free(s, offset, s->cluster_size, -1, false)) {
        return qcow2_free_clusters(s, offset, s->cluster_size, err);
    }
    hostfile_event(s->file, BLKDBG_CLUSTER_FREE);
    give_back(s, offset, s->cluster_size);
    return 0;
}

/* First run of n free clusters at or after the hint. */
static int find_free_run(struct qcow2 *s, uint64_t n, uint64_t *found, struct error *err)
{
    /* From cluster 0 as QEMU: a zeroed refcount of the header cluster makes
     * it look free, and the callers report that as corruption. */
    uint64_t start = s->free_cluster_index;
    uint64_t run = 0;
    for (uint64_t ci = start; ; ci++) {
        if ((ci + 1) << s->cluster_bits > QCOW2_MAX_HOST_OFFSET) {
            return error_set(err, -EFBIG, "No space left in the image file (maximum size reached)");
        }
        uint64_t rc;
        int ret = qcow2_get_refcount(s, ci, &rc, err);
        if (ret < 0) {
            return ret;
        }
        run = rc == 0 ? run + 1 : 0;
        if (run == n) {
            *found = ci + 1 - n;
            return 0;
        }
    }
}

enum run_blocks { RUN_UNCOUNTED, RUN_PARTLY_COUNTED, RUN_COUNTED };

/* Which refcount blocks the table has for the clusters [start, start+n). */
static enum run_blocks blocks_for_run(struct qcow2 *s, uint64_t start, uint64_t n)
{
    uint64_t have = 0, ranges = 0;
    for (uint64_t i = start >> s->refblock_bits; i <= (start + n - 1) >> s->refblock_bits; i++) {
        ranges++;
        have += i < s->refcount_table_size && (s->refcount_table[i] & QCOW2_REFT_OFFSET_MASK);
    }
    return have == 0 ? RUN_UNCOUNTED : have == ranges ? RUN_COUNTED : RUN_PARTLY_COUNTED;
}

/* Takes the free clusters [start, start+n), whose refcount blocks exist. */
static int64_t counted_run(struct qcow2 *s, uint64_t start, uint64_t n, struct error *err)
{
    int ret = qcow2_update_refcount(s, start << s->cluster_bits, n << s->cluster_bits, 1, err);
    return ret < 0 ? ret : (int64_t)(start << s->cluster_bits);
}

/* Enters the new refcount blocks [block0, block0+blocks) of alloc_area for
 * the ranges from first_range on. A power loss keeps any subset of unsynced
 * writes, and an entry that lands without the one for the range holding its
 * block leaves a referenced block with refcount 0. The blocks sit in the
 * last one or two of the ranges (the range holding a block is never below
 * the range it counts), so the entries go from the last range down, and
 * those of ranges holding blocks go out behind a sync before the next. */
static int hook_up_area_blocks(struct qcow2 *s, uint64_t first_range, uint64_t blocks,
                               uint64_t block0, struct error *err)
{
    uint64_t counting = block0 >> s->refblock_bits;     /* first range holding a block */
    for (uint64_t b = blocks; b-- > 0;) {
        set_table_entry(s, first_range + b, (block0 + b) << s->cluster_bits);
        int ret = write_table_entry(s, first_range + b, err);
        if (ret < 0) {
            return ret;
        }
        if (first_range + b >= counting) {
            qcow2_order_note_target(s);     /* the entries below depend on it */
        }
    }
    return 0;
}

/* n clusters in a fresh area past everything in use, with the refcount blocks
 * that count them placed right after them. For runs too long to fit between
 * the self-describing blocks of the normal search (a large L1 table with small
 * clusters and wide refcounts). */
static int64_t alloc_area(struct qcow2 *s, uint64_t n, struct error *err)
{
    uint64_t per_block = s->refblock_size;
    for (int attempt = 0; attempt < 64; attempt++) {
        int64_t used_end = qcow2_refcount_end(s, err);
        int64_t file_size = hostfile_size(s->file);
        if (used_end < 0 || file_size < 0) {
            return used_end < 0 ? used_end : error_set_errno(err, (int)file_size, "Could not "
                                                             "get the image file size");
        }
        uint64_t end = (uint64_t)(used_end > file_size ? used_end : file_size);
        uint64_t start = ((end + s->cluster_size - 1) >> s->cluster_bits) + (uint64_t)attempt * per_block;
        start = (start + per_block - 1) / per_block * per_block;
        uint64_t blocks = 1;
        while ((n + blocks + per_block - 1) / per_block > blocks) {
            blocks++;
        }
        uint64_t first_range = start / per_block;
        if (((start + n + blocks) << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET) {
            return error_set(err, -EFBIG, "Image file would exceed the maximum qcow2 size");
        }
        if (first_range + blocks > s->refcount_table_size) {
            /* As QEMU's preallocation: the new table's blocks count the run
             * placed past them. */
            uint64_t run;
            int ret = refcount_area(s, start, n, 0, 0, &run, err);
            return ret < 0 ? ret : counted_run(s, run, n, err);
        }
        switch (blocks_for_run(s, start, n + blocks)) {
        case RUN_COUNTED:   /* blocks a table growth made ahead count it */
            return counted_run(s, start, n, err);
        case RUN_PARTLY_COUNTED:
            continue;
        case RUN_UNCOUNTED:
            break;
        }
        uint8_t *buf = malloc(s->cluster_size);
        int ret = 0;
        for (uint64_t b = 0; b < blocks && ret == 0; b++) {
            memset(buf, 0, s->cluster_size);
            for (uint64_t i = 0; i < per_block && b * per_block + i < n + blocks; i++) {
                qcow2_refcount_entry_set(s, buf, i, 1);
            }
            ret = hostfile_pwrite(s->file, (start + n + b) << s->cluster_bits, buf, s->cluster_size);
        }
        free(buf);
        qcow2_order_note_target(s);     /* the table entries below point to them */
        if (ret == 0) {
            ret = hook_up_area_blocks(s, first_range, blocks, start + n, err);
        }
        if (ret < 0) {
            return error_set_errno(err, ret, "Could not write refcount blocks for a new area");
        }
        return (int64_t)(start << s->cluster_bits);
    }
    return error_set(err, -ENOSPC, "Could not find room for %" PRIu64 " contiguous clusters", n);
}

int64_t qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, struct error *err)
{
    give_back_flush(s);     /* a waiting cluster may be the one handed out */
    hostfile_event(s->file, BLKDBG_CLUSTER_ALLOC);
    /* Long runs cannot fit between the blocks that new ranges start with. */
    if (n >= s->refblock_size / 2) {
        return alloc_area(s, n, err);
    }
    for (int searches = 0; ; searches++) {
        if (searches == 16) {
            return alloc_area(s, n, err);
        }
        uint64_t first = 0;
        int ret = find_free_run(s, n, &first, err);
        if (ret == 0) {
            ret = qcow2_order_before_reuse(s, (first + n) << s->cluster_bits, err);
        }
        if (ret < 0) {
            return ret;
        }
        if (ret == 1) {
            continue;   /* clusters below the run were freed: search again */
        }
        /* Creating refcount blocks may take clusters of the run: search again. */
        bool created = false;
        for (uint64_t ci = first; ci < first + n; ci++) {
            ret = ensure_block(s, ci, first + n, &created, err);
            if (ret < 0) {
                return ret;
            }
        }
        if (created) {
            continue;
        }
        ret = qcow2_update_refcount(s, first << s->cluster_bits, n << s->cluster_bits, 1, err);
        if (ret < 0) {
            return ret;
        }
        /* The next search starts past the run, as QEMU's free_cluster_index:
         * a hole skipped for being too short waits for a free below it. */
        s->free_cluster_index = first + n;
        return (int64_t)(first << s->cluster_bits);
    }
}

int64_t qcow2_alloc_clusters_at(struct qcow2 *s, uint64_t off, uint64_t n, struct error *err)
{
    give_back_flush(s);     /* a waiting cluster may be the one handed out */
    uint64_t first = off >> s->cluster_bits;
    for (int tries = 0; tries < 16; tries++) {
        uint64_t got = 0, rc = 0;
        while (got < n && ((first + got + 1) << s->cluster_bits) <= QCOW2_MAX_HOST_OFFSET) {
            int ret = qcow2_get_refcount(s, first + got, &rc, err);
            if (ret < 0) {
                return ret;
            }
            if (rc) {
                break;
            }
            got++;
        }
        if (got == 0) {
            return 0;
        }
        /* Creating refcount blocks may take clusters of the run: count again. */
        bool created = false;
        for (uint64_t ci = first; ci < first + got; ci++) {
            int ret = ensure_block(s, ci, first + got, &created, err);
            if (ret < 0) {
                return ret;
            }
        }
        if (!created) {
            int ret = qcow2_update_refcount(s, off, got << s->cluster_bits, 1, err);
            return ret < 0 ? ret : (int64_t)got;
        }
    }
    return 0;
}

/* Whether the cluster at host offset off can take one more reference. */
static bool can_share(struct qcow2 *s, uint64_t off)
{
    uint64_t rc;
    return qcow2_get_refcount(s, off >> s->cluster_bits, &rc, NULL) == 0 && rc > 0 &&
           rc < s->refcount_max;
}

int64_t qcow2_alloc_bytes(struct qcow2 *s, uint32_t len, struct error *err)
{
    give_back_flush(s);     /* a waiting cluster may be the one handed out */
    hostfile_event(s->file, BLKDBG_CLUSTER_ALLOC_BYTES);
    uint64_t fbo = s->free_byte_offset;
    if (fbo && !can_share(s, fbo)) {
        fbo = 0;    /* narrow refcounts (e.g. 1 bit) cannot count another user */
    }
    if (fbo && qcow2_offset_in_cluster(s, fbo) + len <= s->cluster_size) {
        /* Fits in the current cluster: one more reference to it. */
        int ret = qcow2_update_refcount(s, fbo, 1, 1, err);
        if (ret < 0) {
            return ret;
        }
        s->free_byte_offset = (fbo + len) & s->cluster_mask ? fbo + len : 0;
        return (int64_t)fbo;
    }
    int64_t cluster = qcow2_alloc_clusters(s, 1, err);
    if (cluster < 0) {
        return cluster;
    }
    if (cluster == 0) {
        return qcow2_signal_corruption(s, err, "Preventing invalid allocation of compressed cluster at offset 0");
    }
    uint64_t start = (uint64_t)cluster;
    if (fbo && qcow2_start_of_cluster(s, fbo) + s->cluster_size == (uint64_t)cluster) {
        /* The new cluster continues the current one: span both. */
        int ret = qcow2_update_refcount(s, fbo, 1, 1, err);
        if (ret < 0) {
            return ret;
        }
        start = fbo;
    }
    uint64_t end = start + len;
    s->free_byte_offset = end & s->cluster_mask ? end : 0;
    return (int64_t)start;
}

int qcow2_refcount_flush(struct qcow2 *s, struct error *err)
{
    /* Callers want the metadata on the disk complete: the L2 batch too. */
    int ret = qcow2_order_commit(s, err);
    if (ret < 0) {
        return ret;
    }
    return qcow2_cache_flush(s, &s->refblock_cache, err);
}

int64_t qcow2_refcount_end(struct qcow2 *s, struct error *err)
{
    for (int64_t rt = (int64_t)s->refcount_table_size - 1; rt >= 0; rt--) {
        uint8_t *block;
        int ret = get_block(s, (uint64_t)rt, &block, err);
        if (ret < 0) {
            return ret;
        }
        if (!block) {
            continue;
        }
        for (int64_t i = (int64_t)s->refblock_size - 1; i >= 0; i--) {
            if (qcow2_refcount_entry_get(s, block, (uint64_t)i)) {
                uint64_t ci = ((uint64_t)rt << s->refblock_bits) + (uint64_t)i;
                return (int64_t)((ci + 1) << s->cluster_bits);
            }
        }
    }
    return 0;
}
