/* Metadata transactions: a whole new refcount state computed in memory and
 * made live with one header write (see struct qcow2_txn in qcow2_int.h).
 * Used by snapshot apply, repair and amend (create, delete and rename are
 * done in place, in QEMU's order: qcow2_snapshot_refs.c).
 *
 * Every cluster written by a transaction is free both in the old state and
 * in the new one, so until the header write the old image is untouched, and
 * after it the new image is complete. What the old state used and the new
 * one does not is freed by that same header write. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"

#define MAX_CLUSTERS_PAST_EOF 65536

static int grow(struct qcow2_txn *t, uint64_t need, struct error *err)
{
    if (need <= t->n) {
        return 0;
    }
    uint64_t n = t->n * 2 > need ? t->n * 2 : need + 1024;
    uint64_t *rc = realloc(t->rc, n * 8);
    if (rc) {
        t->rc = rc;
    }
    uint64_t *old = rc ? realloc(t->old_rc, n * 8) : NULL;
    if (!rc || !old) {
        return error_set(err, -ENOMEM, "Out of memory for %" PRIu64 " refcounts", n);
    }
    t->old_rc = old;
    memset(t->rc + t->n, 0, (n - t->n) * 8);
    memset(t->old_rc + t->n, 0, (n - t->n) * 8);
    t->n = n;
    return 0;
}

void qcow2_txn_abort(struct qcow2_txn *t)
{
    free(t->rc);
    free(t->old_rc);
    free(t->l1);
    if (t->new_snapshots) {
        qcow2_snapshot_list_free_internal(t->snapshots, t->nb_snapshots);
    }
    memset(t, 0, sizeof(*t));
}

/* The refcount block of table entry rt_index as an offset, 0 if none, or an error. */
static int64_t block_offset(struct qcow2 *s, uint64_t rt_index, int64_t file_size,
                            struct error *err)
{
    uint64_t off = s->refcount_table[rt_index] & QCOW2_REFT_OFFSET_MASK;
    if (off == 0) {
        return 0;
    }
    if ((off & s->cluster_mask) || off >= (uint64_t)file_size) {
        return qcow2_signal_corruption(s, err, "refcount block %" PRIu64 " at 0x%" PRIx64
                                       " is invalid (run check -r all)", rt_index, off);
    }
    return (int64_t)off;
}

void qcow2_txn_init(struct qcow2 *s, struct qcow2_txn *t)
{
    memset(t, 0, sizeof(*t));
    t->hint = 1;
    t->size = s->bd.size;
    t->l1_size = s->l1_size;
    t->l1_offset = s->l1_table_offset;
    t->snapshots_offset = s->snapshots_offset;
    t->nb_snapshots = s->nb_snapshots;
}

int qcow2_txn_begin(struct qcow2 *s, struct qcow2_txn *t, struct error *err)
{
    qcow2_txn_init(s, t);
    int ret = qcow2_refcount_flush(s, err);
    if (ret < 0) {
        return ret;
    }
    int64_t file_size = hostfile_size(s->file);
    if (file_size < 0) {
        return error_set_errno(err, (int)file_size, "Could not get the image file size");
    }
    uint64_t file_clusters = qcow2_size_to_clusters(s, (uint64_t)file_size);
    ret = grow(t, file_clusters + 1, err);
    uint8_t *block = malloc(s->cluster_size);
    if (!block && ret == 0) {
        ret = error_set(err, -ENOMEM, "No memory for a refcount block");
    }
    for (uint64_t rt = 0; rt < s->refcount_table_size && ret == 0; rt++) {
        int64_t off = block_offset(s, rt, file_size, err);
        if (off <= 0) {
            ret = (int)off;
            continue;
        }
        ret = hostfile_pread(s->file, (uint64_t)off, block, s->cluster_size);
        if (ret < 0) {
            error_set_errno(err, ret, "Could not read a refcount block");
            break;
        }
        uint64_t base = rt << s->refblock_bits;
        for (uint64_t i = 0; i < s->refblock_size && ret == 0; i++) {
            uint64_t v = qcow2_refcount_entry_get(s, block, i);
            if (v && base + i > file_clusters + MAX_CLUSTERS_PAST_EOF) {
                /* A few may be past the end (allocated, not yet written); more is damage. */
                ret = qcow2_signal_corruption(s, err, "refcount for cluster 0x%" PRIx64 " far "
                                              "beyond the end of the file (run check -r all)",
                                              (base + i) << s->cluster_bits);
            } else if (v) {
                ret = grow(t, base + i + 1, err);
                t->old_rc[base + i] = v;
            }
        }
    }
    free(block);
    if (ret < 0) {
        qcow2_txn_abort(t);
        return ret;
    }
    memcpy(t->rc, t->old_rc, t->n * 8);
    return 0;
}

int qcow2_txn_ref(struct qcow2 *s, struct qcow2_txn *t, uint64_t off, uint64_t len, int delta,
                  struct error *err)
{
    if (len == 0 || delta == 0) {
        return 0;
    }
    uint64_t first = off >> s->cluster_bits;
    uint64_t last = (off + len - 1) >> s->cluster_bits;
    if (off > QCOW2_MAX_HOST_OFFSET || last >= t->n) {
        return qcow2_signal_corruption(s, err, "reference to host offset 0x%" PRIx64
                                       " beyond the allocated part of the file", off);
    }
    for (uint64_t c = first; c <= last; c++) {
        if (delta < 0 && t->rc[c] < (uint64_t)-delta) {
            return qcow2_signal_corruption(s, err, "refcount of cluster 0x%" PRIx64
                                           " would drop below zero", c << s->cluster_bits);
        }
        t->rc[c] += (uint64_t)(int64_t)delta;
    }
    return 0;
}

int64_t qcow2_txn_alloc(struct qcow2 *s, struct qcow2_txn *t, uint64_t n, struct error *err)
{
    uint64_t run = 0, start = 0, first_free = 0;
    for (uint64_t c = t->hint;; c++) {
        if ((c + n) << s->cluster_bits > QCOW2_MAX_HOST_OFFSET) {
            return error_set(err, -EFBIG, "No space left in the image file (maximum size reached)");
        }
        bool free_here = c >= t->n || (t->rc[c] == 0 && t->old_rc[c] == 0);
        if (!free_here) {
            run = 0;
            continue;
        }
        if (!first_free) {
            first_free = c;
        }
        if (run++ == 0) {
            start = c;
        }
        if (run == n) {
            break;
        }
    }
    int ret = grow(t, start + n + 1, err);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t c = start; c < start + n; c++) {
        t->rc[c] = 1;
    }
    t->hint = first_free == start ? start + n : first_free;
    return (int64_t)(start << s->cluster_bits);
}

int qcow2_read_l1(struct qcow2 *s, uint64_t offset, uint32_t l1_size, uint64_t **out,
                  struct error *err)
{
    uint64_t *l1 = calloc(l1_size ? l1_size : 1, 8);
    if (!l1) {
        return error_set(err, -ENOMEM, "No memory for an L1 table of %" PRIu32 " entries", l1_size);
    }
    int ret = l1_size ? hostfile_pread(s->file, offset, l1, (size_t)l1_size * 8) : 0;
    if (ret < 0) {
        free(l1);
        return error_set_errno(err, ret, "Could not read the L1 table at 0x%" PRIx64, offset);
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        l1[i] = be64_to_cpu(l1[i]);
    }
    *out = l1;
    return 0;
}

int qcow2_txn_ref_l2_data(struct qcow2 *s, struct qcow2_txn *t, const uint8_t *l2, int delta,
                          struct error *err)
{
    for (uint32_t i = 0; i < s->l2_size; i++) {
        uint64_t entry, bitmap;
        qcow2_l2_read_entry(s, l2, i, &entry, &bitmap);
        int ret = 0;
        if (entry & QCOW2_OFLAG_COMPRESSED) {
            uint64_t c_off;
            uint32_t c_len;
            qcow2_compressed_range(s, entry, &c_off, &c_len);
            ret = qcow2_txn_ref(s, t, c_off, c_len, delta, err);
        } else if ((entry & QCOW2_L2E_OFFSET_MASK) && !qcow2_has_data_file(s)) {
            uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
            if (host & s->cluster_mask) {
                return qcow2_signal_corruption(s, err, "data cluster offset 0x%" PRIx64
                                               " is unaligned", host);
            }
            ret = qcow2_txn_ref(s, t, host, s->cluster_size, delta, err);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int read_l2(struct qcow2 *s, uint64_t l2_off, uint8_t *buf, struct error *err)
{
    if ((l2_off & s->cluster_mask) || l2_off < s->cluster_size) {
        return qcow2_signal_corruption(s, err, "L2 table offset 0x%" PRIx64 " is invalid", l2_off);
    }
    int ret = hostfile_pread(s->file, l2_off, buf, s->cluster_size);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not read the L2 table at 0x%" PRIx64, l2_off);
    }
    return 0;
}

int qcow2_txn_ref_l1_tree(struct qcow2 *s, struct qcow2_txn *t, const uint64_t *l1,
                          uint32_t l1_size, int delta, struct error *err)
{
    uint8_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        return error_set(err, -ENOMEM, "No memory for an L2 table");
    }
    int ret = 0;
    for (uint32_t i = 0; i < l1_size && ret == 0; i++) {
        uint64_t l2_off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2_off) {
            continue;
        }
        ret = read_l2(s, l2_off, l2, err);
        if (ret == 0) {
            ret = qcow2_txn_ref(s, t, l2_off, s->cluster_size, delta, err);
        }
        if (ret == 0) {
            ret = qcow2_txn_ref_l2_data(s, t, l2, delta, err);
        }
    }
    free(l2);
    return ret;
}

/* Sets COPIED on the entries of an L2 table whose cluster the new state
 * counts once, clears it elsewhere; returns how many entries changed. */
static int fix_l2_flags(struct qcow2 *s, struct qcow2_txn *t, uint8_t *l2)
{
    int changed = 0;
    for (uint32_t i = 0; i < s->l2_size; i++) {
        uint8_t *p = l2 + (size_t)i * s->l2_entry_size;
        uint64_t entry = ld_be64(p);
        uint64_t want = entry & ~QCOW2_OFLAG_COPIED;
        uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
        bool counted_once = qcow2_has_data_file(s) ||     /* data file: never shared */
                            ((host >> s->cluster_bits) < t->n && t->rc[host >> s->cluster_bits] == 1);
        if (qcow2_entry_has_host(s, entry) && counted_once) {
            want |= QCOW2_OFLAG_COPIED;
        }
        if (want != entry) {
            st_be64(p, want);
            changed++;
        }
    }
    return changed;
}

static int write_l1(struct qcow2 *s, struct qcow2_txn *t, const uint64_t *l1, uint32_t size,
                    struct error *err)
{
    uint64_t clusters = qcow2_size_to_clusters(s, (uint64_t)size * 8);
    if (clusters == 0) {
        t->l1_offset = 0;
        return 0;
    }
    int64_t off = qcow2_txn_alloc(s, t, clusters, err);
    if (off < 0) {
        return (int)off;
    }
    uint64_t *disk = calloc(clusters, s->cluster_size);
    if (!disk) {
        return error_set(err, -ENOMEM, "No memory for the new L1 table");
    }
    for (uint32_t i = 0; i < size; i++) {
        disk[i] = cpu_to_be64(l1[i]);
    }
    int ret = hostfile_pwrite(s->file, (uint64_t)off, disk, clusters << s->cluster_bits);
    free(disk);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write the new L1 table");
    }
    t->l1_offset = (uint64_t)off;
    return 0;
}

int64_t qcow2_txn_fix_copied(struct qcow2 *s, struct qcow2_txn *t, struct error *err)
{
    bool staged = t->l1 != NULL;
    uint32_t size = staged ? t->l1_size : s->l1_size;
    uint64_t *l1 = calloc(size ? size : 1, 8);
    uint8_t *l2 = malloc(s->cluster_size);
    if (!l1 || !l2) {
        free(l1);
        free(l2);
        return error_set(err, -ENOMEM, "No memory for the L1 and L2 tables");
    }
    memcpy(l1, staged ? t->l1 : s->l1_table, (size_t)size * 8);
    int64_t changed = 0;
    int ret = 0;
    for (uint32_t i = 0; i < size && ret == 0; i++) {
        uint64_t l2_off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2_off || (l2_off & s->cluster_mask) || (l2_off >> s->cluster_bits) >= t->n) {
            continue;   /* nothing to fix here (check reports a broken entry) */
        }
        /* Counted as check does: the flag against the count, before any copy. */
        changed += (t->rc[l2_off >> s->cluster_bits] == 1) != !!(l1[i] & QCOW2_OFLAG_COPIED);
        ret = read_l2(s, l2_off, l2, err);
        int n = ret == 0 ? fix_l2_flags(s, t, l2) : 0;
        if (n > 0) {
            /* The live table must not change: the new flags go to a copy. */
            changed += n;
            int64_t copy = qcow2_txn_alloc(s, t, 1, err);
            ret = copy < 0 ? (int)copy : 0;
            if (ret == 0) {
                ret = hostfile_pwrite(s->file, (uint64_t)copy, l2, s->cluster_size);
                if (ret < 0) {
                    error_set_errno(err, ret, "Could not write an L2 table");
                }
            }
            if (ret == 0) {
                ret = qcow2_txn_ref(s, t, l2_off, s->cluster_size, -1, err);
                l2_off = (uint64_t)copy;
            }
        }
        l1[i] = l2_off | (t->rc[l2_off >> s->cluster_bits] == 1 ? QCOW2_OFLAG_COPIED : 0);
    }
    free(l2);
    bool differs = memcmp(l1, staged ? t->l1 : s->l1_table, (size_t)size * 8) != 0;
    if (ret == 0 && (staged || differs)) {
        if (!staged) {
            /* The live L1 table is replaced: it is free in the new state. */
            ret = qcow2_txn_ref(s, t, s->l1_table_offset, (uint64_t)s->l1_size * 8, -1, err);
        }
        if (ret == 0) {
            ret = write_l1(s, t, l1, size, err);
        }
        if (ret == 0) {
            free(t->l1);
            t->l1 = l1;
            t->l1_size = size;
            l1 = NULL;
        }
    }
    free(l1);
    return ret < 0 ? ret : changed;
}

int qcow2_txn_set_snapshots(struct qcow2 *s, struct qcow2_txn *t, struct qcow2_snapshot *list,
                            uint32_t count, struct error *err)
{
    uint8_t *buf = NULL;
    uint64_t len = 0;
    if (!list) {    /* a copy that failed for want of memory */
        return error_set(err, -ENOMEM, "Could not allocate memory for the snapshot table");
    }
    int ret = qcow2_snapshots_serialize(list, count, &buf, &len, err);
    int64_t off = 0;
    if (ret == 0 && count) {
        off = qcow2_txn_alloc(s, t, qcow2_size_to_clusters(s, len), err);
        ret = off < 0 ? (int)off : 0;
        if (ret == 0) {
            ret = hostfile_pwrite(s->file, (uint64_t)off, buf, len);
            if (ret < 0) {
                error_set_errno(err, ret, "Could not write the snapshot table");
            }
        }
    }
    free(buf);
    if (ret == 0 && s->nb_snapshots) {
        ret = qcow2_txn_ref(s, t, s->snapshots_offset, s->snapshots_size, -1, err);
    }
    if (ret < 0) {
        qcow2_snapshot_list_free_internal(list, count);
        return ret;
    }
    t->snapshots = list;
    t->nb_snapshots = count;
    t->snapshots_offset = (uint64_t)off;
    t->snapshots_size = len;
    t->new_snapshots = true;
    return 0;
}

/* Frees the old refcount table and blocks in the new state (they are
 * replaced); entries that were invalid were never counted. */
static void drop_old_refcount_structure(struct qcow2 *s, struct qcow2_txn *t)
{
    uint64_t first = s->refcount_table_offset >> s->cluster_bits;
    for (uint64_t c = first; c < first + s->refcount_table_clusters && c < t->n; c++) {
        if (t->rc[c]) {
            t->rc[c]--;
        }
    }
    for (uint64_t rt = 0; rt < s->refcount_table_size; rt++) {
        uint64_t off = s->refcount_table[rt] & QCOW2_REFT_OFFSET_MASK;
        uint64_t c = off >> s->cluster_bits;
        if (off && !(off & s->cluster_mask) && c < t->n && t->rc[c]) {
            t->rc[c]--;
        }
    }
}

static bool range_used(const struct qcow2_txn *t, uint64_t first, uint64_t count)
{
    for (uint64_t c = first; c < first + count && c < t->n; c++) {
        if (t->rc[c]) {
            return true;
        }
    }
    return false;
}

/* Places refcount blocks for every range with a nonzero count, and a table
 * big enough for them; both count themselves. */
static void report_pass(struct qcow2_txn *t, uint64_t done, uint64_t total)
{
    if (t->passes) {
        t->passes(t->passes_opaque, done, total);
    }
}

static int layout_refcounts(struct qcow2 *s, struct qcow2_txn *t, uint64_t **blocks_out,
                            uint64_t *entries_out, uint64_t *table_off, uint64_t *table_clusters,
                            struct error *err)
{
    uint64_t cap = 0, entries = 0, tclusters = 0;
    uint64_t *blocks = NULL;
    int64_t toff = -1;
    for (int iter = 0; iter < 1000; iter++) {
        /* This pass, and at least one more to find the layout stable, and
         * the one that writes it: QEMU's count of walks. */
        report_pass(t, iter, iter + 2 > 3 ? iter + 2 : 3);
        bool placed = false;
        uint64_t ranges = (t->n + s->refblock_size - 1) >> s->refblock_bits;
        if (ranges > cap) {
            blocks = realloc(blocks, ranges * 8);
            memset(blocks + cap, 0, (ranges - cap) * 8);
            cap = ranges;
        }
        for (uint64_t r = 0; r < ranges; r++) {
            if (!blocks[r] && range_used(t, r << s->refblock_bits, s->refblock_size)) {
                int64_t b = qcow2_txn_alloc(s, t, 1, err);
                if (b < 0) {
                    free(blocks);
                    return (int)b;
                }
                blocks[r] = (uint64_t)b;
                placed = true;
            }
        }
        uint64_t last = 0;
        for (uint64_t r = 0; r < cap; r++) {
            if (blocks[r]) {
                last = r + 1;
            }
        }
        report_pass(t, iter + 1, iter + 2 > 3 ? iter + 2 : 3);
        if (toff >= 0 && last <= entries && !placed) {
            t->layout_passes = iter + 1;
            if (entries > cap) {
                blocks = realloc(blocks, entries * 8);
                memset(blocks + cap, 0, (entries - cap) * 8);
            }
            *blocks_out = blocks;
            *entries_out = entries;
            *table_off = (uint64_t)toff;
            *table_clusters = tclusters;
            return 0;
        }
        if (toff < 0 || last > entries) {
            if (toff >= 0) {
                for (uint64_t c = 0; c < tclusters; c++) {
                    t->rc[((uint64_t)toff >> s->cluster_bits) + c] = 0;
                }
            }
            /* Room to grow, so that the allocator rarely moves the table. */
            uint64_t want = last + last / 2 + 1;
            tclusters = qcow2_size_to_clusters(s, want * 8);
            if ((tclusters << s->cluster_bits) > QCOW2_MAX_REFTABLE_BYTES) {
                free(blocks);
                return error_set(err, -EFBIG, "The refcount table would be too large");
            }
            entries = (tclusters << s->cluster_bits) / 8;
            toff = qcow2_txn_alloc(s, t, tclusters, err);
            if (toff < 0) {
                free(blocks);
                return (int)toff;
            }
        }
    }
    free(blocks);
    return error_set(err, -EIO, "internal error: the refcount layout does not converge");
}

static int write_refcounts(struct qcow2 *s, struct qcow2_txn *t, const uint64_t *blocks,
                           uint64_t entries, uint64_t table_off, uint64_t table_clusters,
                           struct error *err)
{
    uint8_t *buf = malloc(s->cluster_size);
    uint64_t *table = calloc(table_clusters, s->cluster_size);
    int ret = buf && table ? 0 : -ENOMEM;
    for (uint64_t r = 0; r < entries && ret == 0; r++) {
        if (!blocks[r] || (r << s->refblock_bits) >= t->n) {
            continue;
        }
        memset(buf, 0, s->cluster_size);
        uint64_t base = r << s->refblock_bits;
        for (uint64_t i = 0; i < s->refblock_size && base + i < t->n; i++) {
            qcow2_refcount_entry_set(s, buf, i, t->rc[base + i]);
        }
        ret = hostfile_pwrite(s->file, blocks[r], buf, s->cluster_size);
        table[r] = cpu_to_be64(blocks[r]);
    }
    if (ret == 0) {
        ret = hostfile_pwrite(s->file, table_off, table, table_clusters << s->cluster_bits);
    }
    free(buf);
    free(table);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write the new refcount structure");
    }
    return 0;
}

static int switch_header(struct qcow2 *s, struct qcow2_txn *t, uint64_t table_off,
                         uint64_t table_clusters, struct error *err)
{
    uint8_t h[104];
    st_be64(h + 24, t->size);
    st_be32(h + 32, s->crypt_method);
    st_be32(h + 36, t->l1_size);
    st_be64(h + 40, t->l1_offset);
    st_be64(h + 48, table_off);
    st_be32(h + 56, (uint32_t)table_clusters);
    st_be32(h + 60, t->nb_snapshots);
    st_be64(h + 64, t->snapshots_offset);
    uint32_t end = 72;
    if (s->version >= 3) {
        st_be64(h + 72, s->incompatible_features);
        st_be64(h + 80, s->compatible_features);
        st_be64(h + 88, s->autoclear_features);
        st_be32(h + 96, s->refcount_order);
        st_be32(h + 100, s->header_length);
        end = 104;
    }
    /* One write: the old state or the new one, never a mix. */
    int ret = hostfile_flush(s->file);
    if (ret == 0) {
        ret = hostfile_pwrite(s->file, 24, h + 24, end - 24);
    }
    if (ret == 0) {
        ret = hostfile_flush(s->file);
    }
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the qcow2 header");
    }
    return 0;
}

/* The new state is live: make the in-memory state match it (the refcount
 * table was allocated before the header switch, which must not be followed
 * by a failure). */
static void switch_memory(struct qcow2 *s, struct qcow2_txn *t, uint64_t *table,
                          uint64_t table_off, uint64_t table_clusters)
{
    s->bd.size = t->size;
    if (t->l1) {
        free(s->l1_table);
        s->l1_table = t->l1;
        t->l1 = NULL;
    }
    s->l1_size = t->l1_size;
    s->l1_table_offset = t->l1_offset;
    free(s->refcount_table);
    s->refcount_table = table;
    s->refcount_table_size = (uint32_t)((table_clusters << s->cluster_bits) / 8);
    qcow2_refcount_table_changed(s);
    s->refcount_table_offset = table_off;
    s->refcount_table_clusters = (uint32_t)table_clusters;
    if (t->new_snapshots) {
        qcow2_snapshots_free(s);
        s->snapshots = t->snapshots;
        s->snapshots_size = t->snapshots_size;
        t->new_snapshots = false;
    }
    s->nb_snapshots = t->nb_snapshots;
    s->snapshots_offset = t->snapshots_offset;
    qcow2_cache_invalidate(&s->l2_cache);
    qcow2_cache_invalidate(&s->refblock_cache);
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    /* Freed runs go back to the host, as qcow2_free_clusters does. */
    for (uint64_t c = 0; c < t->n; c++) {
        uint64_t end = c;
        while (end < t->n && t->old_rc[end] && !t->rc[end]) {
            end++;
        }
        if (end > c) {
            uint64_t len = (end - c) << s->cluster_bits;
            qcow2_zcache_forget_range(s, c << s->cluster_bits, len);
            hostfile_discard(s->file, c << s->cluster_bits, len);
            c = end;
        }
    }
}

int qcow2_txn_commit(struct qcow2 *s, struct qcow2_txn *t, struct error *err)
{
    drop_old_refcount_structure(s, t);
    uint64_t *blocks = NULL, entries = 0, table_off = 0, table_clusters = 0;
    int ret = layout_refcounts(s, t, &blocks, &entries, &table_off, &table_clusters, err);
    for (uint64_t c = 0; ret == 0 && c < t->n; c++) {
        if (t->rc[c] > s->refcount_max && t->width_change) {
            ret = error_set(err, -EINVAL, "Cannot decrease refcount entry width to %u bits: "
                            "Cluster at offset %#" PRIx64 " has a refcount of %" PRIu64,
                            s->refcount_bits, c << s->cluster_bits, t->rc[c]);
        } else if (t->rc[c] > s->refcount_max) {
            ret = error_set(err, -ERANGE, "Refcount of cluster 0x%" PRIx64 " would exceed %u "
                            "bits (raise refcount_bits with amend)", c << s->cluster_bits,
                            s->refcount_bits);
        }
    }
    if (ret == 0) {
        report_pass(t, t->layout_passes, t->layout_passes + 1);
        ret = write_refcounts(s, t, blocks, entries, table_off, table_clusters, err);
    }
    if (ret == 0) {
        report_pass(t, t->layout_passes + 1, t->layout_passes + 1);
    }
    uint64_t *table = ret == 0 ? calloc(table_clusters, s->cluster_size) : NULL;
    if (ret == 0 && !table) {
        ret = error_set(err, -ENOMEM, "No memory for the new refcount table");
    }
    if (ret == 0) {
        memcpy(table, blocks, entries * 8);
        ret = switch_header(s, t, table_off, table_clusters, err);
    }
    if (ret == 0) {
        switch_memory(s, t, table, table_off, table_clusters);
    } else {
        free(table);
    }
    free(blocks);
    qcow2_txn_abort(t);
    return ret;
}
