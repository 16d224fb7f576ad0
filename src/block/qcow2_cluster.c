/* Guest-to-host mapping: the L1 table, L2 tables and their entries. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"

enum qcow2_sc_type qcow2_sc_type(const struct qcow2 *s, uint64_t l2_entry, uint64_t l2_bitmap,
                                 uint32_t sc_index)
{
    if (l2_entry & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_SC_COMPRESSED;
    }
    bool host = qcow2_entry_has_host(s, l2_entry);
    if (!s->extended_l2) {
        if (l2_entry & QCOW2_OFLAG_ZERO) {
            return QCOW2_SC_ZERO;
        }
        return host ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOCATED;
    }
    bool alloc = (l2_bitmap >> sc_index) & 1;
    bool zero = (l2_bitmap >> (32 + sc_index)) & 1;
    if (alloc && (zero || !host)) {
        return QCOW2_SC_INVALID;
    }
    if (alloc) {
        return QCOW2_SC_NORMAL;
    }
    return zero ? QCOW2_SC_ZERO : QCOW2_SC_UNALLOCATED;
}

void qcow2_compressed_range(const struct qcow2 *s, uint64_t l2_entry, uint64_t *host_off,
                            uint32_t *len)
{
    *host_off = l2_entry & s->coffset_mask;
    uint32_t sectors = (uint32_t)((l2_entry >> s->csize_shift) & s->csize_mask) + 1;
    *len = sectors * QCOW2_SECTOR - (uint32_t)(*host_off & (QCOW2_SECTOR - 1));
}

void qcow2_l2_read_entry(const struct qcow2 *s, const uint8_t *table, uint32_t index,
                         uint64_t *entry, uint64_t *bitmap)
{
    const uint8_t *p = table + (size_t)index * s->l2_entry_size;
    *entry = ld_be64(p);
    *bitmap = s->extended_l2 ? ld_be64(p + 8) : 0;
}

int qcow2_l2_write_entry(struct qcow2 *s, uint8_t *table, uint32_t index, uint64_t entry,
                         uint64_t bitmap, struct error *err)
{
    uint8_t *p = table + (size_t)index * s->l2_entry_size;
    st_be64(p, entry);
    if (s->extended_l2) {
        st_be64(p + 8, bitmap);
    }
    return qcow2_cache_update(s, &s->l2_cache, table, index * s->l2_entry_size, s->l2_entry_size,
                              s->l2_batch, err);
}

static int write_l1_entry(struct qcow2 *s, uint64_t l1_index, struct error *err)
{
    uint8_t b[8];
    st_be64(b, s->l1_table[l1_index]);
    int ret = qcow2_order_before_mapping(s, err);
    if (ret < 0) {
        return ret;
    }
    hostfile_event(s->file, BLKDBG_L1_UPDATE);
    ret = hostfile_pwrite(s->file, s->l1_table_offset + l1_index * 8, b, 8);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the L1 table");
    }
    return 0;
}

int qcow2_grow_l1(struct qcow2 *s, uint64_t min_size, struct error *err)
{
    if (min_size <= s->l1_size) {
        return 0;
    }
    uint64_t new_size = (uint64_t)s->l1_size * 3 / 2;
    if (new_size < min_size) {
        new_size = min_size;
    }
    if (new_size > QCOW2_MAX_L1_BYTES / 8) {
        new_size = QCOW2_MAX_L1_BYTES / 8;
    }
    if (new_size < min_size) {
        return error_set(err, -EFBIG, "The L1 table cannot grow to %" PRIu64 " entries", min_size);
    }
    uint64_t clusters = (new_size * 8 + s->cluster_size - 1) >> s->cluster_bits;
    hostfile_event(s->file, BLKDBG_L1_GROW_ALLOC_TABLE);
    int64_t new_off = qcow2_alloc_clusters(s, clusters, err);
    if (new_off < 0) {
        return (int)new_off;
    }
    uint64_t bytes = clusters << s->cluster_bits;
    uint64_t *table = calloc(1, bytes);
    uint64_t *disk = calloc(1, bytes);
    if (!table || !disk) {
        free(table);
        free(disk);
        qcow2_free_clusters(s, (uint64_t)new_off, bytes, NULL);
        return error_set(err, -ENOMEM, "Could not allocate the new L1 table");
    }
    memcpy(table, s->l1_table, (size_t)s->l1_size * 8);
    for (uint64_t i = 0; i < new_size; i++) {
        disk[i] = cpu_to_be64(table[i]);
    }
    hostfile_event(s->file, BLKDBG_L1_GROW_WRITE_TABLE);
    int ret = hostfile_pwrite(s->file, (uint64_t)new_off, disk, bytes);
    free(disk);
    if (ret == 0) {
        ret = hostfile_flush(s->file);  /* complete before the header points to it */
    }
    if (ret < 0) {
        free(table);
        qcow2_free_clusters(s, (uint64_t)new_off, bytes, NULL);
        return error_set_errno(err, ret, "Could not write the new L1 table");
    }
    uint64_t old_off = s->l1_table_offset;
    uint64_t old_bytes = (uint64_t)s->l1_size * 8;
    uint32_t old_size = s->l1_size;
    uint64_t *old_table = s->l1_table;
    /* Table, size and offset change together: the header write flushes
     * refcounts first, and their overlap checks read the active L1. */
    s->l1_table_offset = (uint64_t)new_off;
    s->l1_size = (uint32_t)new_size;
    s->l1_table = table;
    hostfile_event(s->file, BLKDBG_L1_GROW_ACTIVATE_TABLE);
    ret = qcow2_header_write_l1(s, err);
    if (ret < 0) {
        s->l1_table_offset = old_off;
        s->l1_size = old_size;
        s->l1_table = old_table;
        free(table);
        return ret;
    }
    free(old_table);
    if (old_off && old_bytes) {
        return qcow2_free_clusters(s, old_off, old_bytes, err);
    }
    return 0;
}

/* A new L2 table for L1 entry l1_index: empty, or a copy of the table it
 * shares with a snapshot. */
static int allocate_l2(struct qcow2 *s, uint64_t l1_index, uint8_t **table, struct error *err)
{
    uint64_t old_off = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    uint8_t *copy = NULL;
    if (old_off) {
        uint8_t *old;
        hostfile_event(s->file, BLKDBG_L2_ALLOC_COW_READ);
        int ret = qcow2_cache_get(s, &s->l2_cache, old_off, false, &old, err);
        if (ret < 0) {
            return ret;
        }
        copy = malloc(s->cluster_size);
        memcpy(copy, old, s->cluster_size);
    }
    int64_t new_off = qcow2_alloc_clusters(s, 1, err);
    if (new_off == 0) {
        /* Cluster 0 (the header) has no reference: the refcounts are broken,
         * and L1 could not name the table anyway (0 means unallocated). */
        free(copy);
        return qcow2_signal_corruption(s, err, "Preventing invalid allocation of L2 table at offset 0");
    }
    /* Even under lazy refcounts an L2 table is counted on disk before L1
     * names it (as QEMU does), so a crash never leaves it unaccounted. */
    int ret = new_off < 0 ? (int)new_off : qcow2_refcount_flush(s, err);
    if (ret < 0) {
        free(copy);
        return ret;
    }
    ret = qcow2_cache_get(s, &s->l2_cache, (uint64_t)new_off, true, table, err);
    if (ret == 0) {
        if (copy) {
            memcpy(*table, copy, s->cluster_size);
        }
        hostfile_event(s->file, BLKDBG_L2_ALLOC_WRITE);
        ret = qcow2_cache_update(s, &s->l2_cache, *table, 0, s->cluster_size, false, err);
    }
    free(copy);
    if (ret < 0) {
        qcow2_cache_discard(&s->l2_cache, (uint64_t)new_off);
        return ret;
    }
    qcow2_order_note_target(s);
    /* Only now may L1 point to it; the old table loses the active reference after. */
    uint64_t old_l1e = s->l1_table[l1_index];
    s->l1_table[l1_index] = (uint64_t)new_off | QCOW2_OFLAG_COPIED;
    ret = write_l1_entry(s, l1_index, err);
    if (ret < 0) {
        /* Memory must not run ahead of the disk: later writes would land in
         * a table no L1 on the disk names. The new table leaks. */
        s->l1_table[l1_index] = old_l1e;
        qcow2_cache_discard(&s->l2_cache, (uint64_t)new_off);
        return ret;
    }
    if (old_off) {
        return qcow2_free_clusters(s, old_off, s->cluster_size, err);
    }
    return 0;
}

int qcow2_get_l2_slot(struct qcow2 *s, uint64_t off, bool allocate, uint8_t **table,
                      uint32_t *index, struct error *err)
{
    uint64_t l1_index = off >> (s->cluster_bits + s->l2_bits);
    *index = (uint32_t)((off >> s->cluster_bits) & (s->l2_size - 1));
    *table = NULL;
    if (l1_index >= s->l1_size) {
        if (!allocate) {
            return 0;
        }
        int ret = qcow2_grow_l1(s, l1_index + 1, err);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t l1e = s->l1_table[l1_index];
    uint64_t l2_off = l1e & QCOW2_L1E_OFFSET_MASK;
    if (l2_off & s->cluster_mask) {
        return qcow2_signal_corruption(s, err, "L2 table offset 0x%" PRIx64 " unaligned (L1 index "
                                       "%" PRIu64 ")", l2_off, l1_index);
    }
    if (l2_off && l2_off < s->cluster_size) {
        return qcow2_signal_corruption(s, err, "L2 table of L1 index %" PRIu64
                                       " overlaps the header", l1_index);
    }
    if (l2_off && (!allocate || (l1e & QCOW2_OFLAG_COPIED))) {
        return qcow2_cache_get(s, &s->l2_cache, l2_off, false, table, err);
    }
    if (!allocate) {
        return 0;
    }
    return allocate_l2(s, l1_index, table, err);
}

int qcow2_lookup(struct qcow2 *s, uint64_t off, uint64_t *entry, uint64_t *bitmap,
                 struct error *err)
{
    uint8_t *table;
    uint32_t index;
    int ret = qcow2_get_l2_slot(s, off, false, &table, &index, err);
    if (ret < 0) {
        return ret;
    }
    if (!table) {
        *entry = 0;
        *bitmap = 0;
        return 0;
    }
    qcow2_l2_read_entry(s, table, index, entry, bitmap);
    return 0;
}

int qcow2_lookup_cached(struct qcow2 *s, uint64_t off, uint64_t *entry, uint64_t *bitmap)
{
    uint64_t l1_index = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_off = l1_index < s->l1_size ? s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK : 0;
    *entry = 0;
    *bitmap = 0;
    if (!l2_off) {
        return 0;
    }
    uint8_t *table = (l2_off & s->cluster_mask) || l2_off < s->cluster_size
                         ? NULL : qcow2_cache_peek(&s->l2_cache, l2_off);
    if (!table) {
        return -EAGAIN;
    }
    qcow2_l2_read_entry(s, table, (uint32_t)((off >> s->cluster_bits) & (s->l2_size - 1)), entry, bitmap);
    return 0;
}
