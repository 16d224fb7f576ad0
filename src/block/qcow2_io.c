/* Guest I/O on qcow2: reads through the backing chain, copy-on-write
 * allocation, zero writes, discard and compressed writes.
 *
 * Requests are split at cluster boundaries. Each piece looks its mapping up
 * under the lock; reads, and writes to clusters this image owns alone
 * (COPIED), do their data I/O with the lock dropped. Allocating writes keep
 * the lock so that no two requests allocate the same cluster. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"

#define ALL_SUBCLUSTERS 0xffffffffULL

static uint64_t sc_range_mask(uint32_t first, uint32_t last)
{
    return ((ALL_SUBCLUSTERS >> (31 - last)) >> first) << first;
}

/* nowait: see blockdev_pread_nowait (no message, no waiting, no corrupt bit). */
static int read_backing(struct qcow2 *s, uint64_t off, uint8_t *buf, size_t len, bool nowait,
                        struct error *err)
{
    struct blockdev *backing = s->bd.backing;
    size_t from_backing = 0;
    if (backing && off < backing->size) {
        from_backing = backing->size - off < len ? (size_t)(backing->size - off) : len;
        int ret = nowait ? blockdev_pread_nowait(backing, off, buf, from_backing)
                         : blockdev_pread(backing, off, buf, from_backing, err);
        if (ret < 0) {
            return ret;
        }
    }
    memset(buf + from_backing, 0, len - from_backing);
    return 0;
}

/* Where the L2 table mapping guest offset off lies (for messages). */
static uint64_t l2_table_offset(const struct qcow2 *s, uint64_t off)
{
    uint64_t l1_index = off >> (s->cluster_bits + s->l2_bits);
    return l1_index < s->l1_size ? s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK : 0;
}

/* Whether an entry's host offset is where a data file keeps guest_off's
 * cluster (QEMU's identity mapping; always true without a data file). */
static bool data_file_mapping_ok(const struct qcow2 *s, uint64_t entry, uint64_t guest_off)
{
    return !s->data_file || !qcow2_entry_has_host(s, entry) ||
           (entry & QCOW2_L2E_OFFSET_MASK) == qcow2_data_file_host(qcow2_start_of_cluster(s, guest_off));
}

static int check_host_offset(struct qcow2 *s, uint64_t entry, uint64_t guest_off,
                             struct error *err)
{
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    if (host & s->cluster_mask) {
        return qcow2_signal_corruption(s, err, "Cluster allocation offset %#" PRIx64
                                       " unaligned (L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                       host, l2_table_offset(s, guest_off),
                                       (unsigned)((guest_off >> s->cluster_bits) & (s->l2_size - 1)));
    }
    uint64_t cluster_off = qcow2_start_of_cluster(s, guest_off);
    if (!data_file_mapping_ok(s, entry, guest_off)) {
        /* QEMU's words, its unbalanced parenthesis too. */
        return qcow2_signal_corruption(s, err, "External data file host cluster offset %#" PRIx64
                                       " does not match guest cluster offset: %#" PRIx64
                                       ", L2 index: %#x)", host, cluster_off,
                                       (unsigned)((guest_off >> s->cluster_bits) & (s->l2_size - 1)));
    }
    return 0;
}

/* Reads [off, off+len) inside one cluster whose L2 entry is given. Needs no
 * lock; generation: the decompressed cache's, read when entry was looked up. */
static int read_in_cluster(struct qcow2 *s, uint64_t off, uint8_t *buf, size_t len,
                           uint64_t entry, uint64_t bitmap, uint64_t generation, bool nowait,
                           struct error *err)
{
    uint32_t in_cluster = (uint32_t)qcow2_offset_in_cluster(s, off);
    if ((entry & QCOW2_OFLAG_COMPRESSED) && s->data_file) {
        return nowait ? -EAGAIN
                      : qcow2_signal_corruption(s, err, "Compressed cluster entry found in image "
                                                "with external data file (L2 offset: %#" PRIx64
                                                ", L2 index: %#x)", l2_table_offset(s, off),
                                                (unsigned)((off >> s->cluster_bits) & (s->l2_size - 1)));
    }
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        return nowait ? qcow2_read_compressed_nowait(s, entry, in_cluster, buf, len)
                      : qcow2_read_compressed(s, entry, generation, in_cluster, buf, len, err);
    }
    /* As QEMU, an unaligned host offset is corruption whatever the
     * subclusters read: zero and unallocated ones too. */
    if (((entry & QCOW2_L2E_OFFSET_MASK & s->cluster_mask) || !data_file_mapping_ok(s, entry, off)) &&
        nowait) {
        return -EAGAIN;
    }
    int checked = check_host_offset(s, entry, off, err);
    if (checked < 0) {
        return checked;
    }
    while (len > 0) {
        uint32_t sc = in_cluster >> s->subcluster_bits;
        enum qcow2_sc_type type = qcow2_sc_type(s, entry, bitmap, sc);
        /* Extend over following subclusters of the same kind. */
        uint32_t end = (sc + 1) << s->subcluster_bits;
        while (end < s->cluster_size && end - in_cluster < len &&
               qcow2_sc_type(s, entry, bitmap, end >> s->subcluster_bits) == type) {
            end += s->subcluster_size;
        }
        size_t n = end - in_cluster < len ? end - in_cluster : len;
        int ret = 0;
        switch (type) {
        case QCOW2_SC_NORMAL:
            if (nowait) {
                ret = hostfile_pread_nowait(qcow2_data(s), (entry & QCOW2_L2E_OFFSET_MASK) + in_cluster,
                                            buf, n);
                break;
            }
            hostfile_event(s->file, BLKDBG_READ_AIO);
            ret = hostfile_pread(qcow2_data(s), (entry & QCOW2_L2E_OFFSET_MASK) + in_cluster, buf, n);
            if (ret < 0) {
                error_set_errno(err, ret, "Could not read guest data at 0x%" PRIx64, off);
            }
            break;
        case QCOW2_SC_ZERO:
            memset(buf, 0, n);
            break;
        case QCOW2_SC_UNALLOCATED:
            ret = read_backing(s, off, buf, n, nowait, err);
            break;
        default:
            if (nowait) {
                return -EAGAIN;
            }
            /* QEMU's two wordings differ by a space; scripts match both. */
            ret = qcow2_signal_corruption(s, err, "Invalid cluster entry found  (L2 offset: %#"
                                          PRIx64 ", L2 index: %#x)", l2_table_offset(s, off),
                                          (unsigned)((off >> s->cluster_bits) & (s->l2_size - 1)));
        }
        if (ret < 0) {
            return ret;
        }
        buf += n;
        off += n;
        in_cluster += (uint32_t)n;
        len -= n;
    }
    return 0;
}

/* Whether [in_cluster, in_cluster+len) of a cluster is plain data at its host offset. */
static bool is_plain_data(const struct qcow2 *s, uint64_t entry, uint64_t bitmap,
                          uint32_t in_cluster, size_t len)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        return false;
    }
    uint32_t last = (uint32_t)((in_cluster + len - 1) >> s->subcluster_bits);
    for (uint32_t sc = in_cluster >> s->subcluster_bits; sc <= last; sc++) {
        if (qcow2_sc_type(s, entry, bitmap, sc) != QCOW2_SC_NORMAL) {
            return false;
        }
    }
    return !((entry & QCOW2_L2E_OFFSET_MASK) & s->cluster_mask);
}

/* An owned cluster that reads as zeros by its L2 entry though it keeps its
 * host cluster (QEMU's ZERO_ALLOC), written whole: QEMU writes it in place,
 * in one host write with its neighbours, and then drops the zero flags
 * (zero_flags_over); copying it to a new cluster would split the write and
 * leave the old cluster's place unused. */
static bool is_zero_alloc_overwrite(const struct qcow2 *s, uint64_t entry, uint64_t bitmap,
                                    uint32_t in_cluster, size_t len)
{
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    if (in_cluster != 0 || len != s->cluster_size || !qcow2_entry_has_host(s, entry) ||
        (host & s->cluster_mask) ||
        (entry & QCOW2_OFLAG_COMPRESSED) || !(entry & QCOW2_OFLAG_COPIED)) {
        return false;
    }
    for (uint32_t sc = 0; sc < s->subclusters; sc++) {
        enum qcow2_sc_type t = qcow2_sc_type(s, entry, bitmap, sc);
        if (t != QCOW2_SC_NORMAL && t != QCOW2_SC_ZERO) {
            return false;
        }
    }
    return true;
}

/* Extends a plain-data piece over following clusters stored right after it
 * on the host, so that a large read becomes one host read; for a write
 * (in_place), only over clusters it may write in place: owned (COPIED),
 * clear of metadata. Lock held. */
static size_t extend_contiguous(struct qcow2 *s, uint64_t off, size_t n, size_t len,
                                uint64_t host_end, bool in_place)
{
    while (n < len) {
        uint64_t entry, bitmap;
        size_t step = len - n < s->cluster_size ? len - n : s->cluster_size;
        if (qcow2_lookup(s, off + n, &entry, &bitmap, NULL) < 0 ||
            !(is_plain_data(s, entry, bitmap, 0, step) ||
              (in_place && is_zero_alloc_overwrite(s, entry, bitmap, 0, step))) ||
            (entry & QCOW2_L2E_OFFSET_MASK) != host_end ||
            (in_place && (!(entry & QCOW2_OFLAG_COPIED) ||
                          qcow2_data_overlaps_metadata(s, host_end, step)))) {
            break;
        }
        n += step;
        host_end += s->cluster_size;
    }
    return n;
}

static int read_at(struct qcow2 *s, uint64_t off, void *buf, size_t len, bool nowait, struct error *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        uint32_t in_cluster = (uint32_t)qcow2_offset_in_cluster(s, off);
        size_t n = s->cluster_size - in_cluster;
        if (n > len) {
            n = len;
        }
        uint64_t entry, bitmap;
        if (nowait && pthread_mutex_trylock(&s->lock) != 0) {
            return -EAGAIN;
        } else if (!nowait) {
            pthread_mutex_lock(&s->lock);
        }
        int ret = nowait ? qcow2_lookup_cached(s, off, &entry, &bitmap) : qcow2_lookup(s, off, &entry, &bitmap, err);
        bool compressed = ret == 0 && (entry & QCOW2_OFLAG_COMPRESSED);
        uint64_t generation = compressed ? qcow2_zcache_generation(s) : 0;
        bool plain = ret == 0 && is_plain_data(s, entry, bitmap, in_cluster, n) &&
                     data_file_mapping_ok(s, entry, off);
        uint64_t host = (entry & QCOW2_L2E_OFFSET_MASK) + in_cluster;
        if (plain && !nowait && n == s->cluster_size - in_cluster) {
            n = extend_contiguous(s, off, n, len, host + n, false);
        }
        /* Taken before the lock is dropped: the mapping stays valid until released. */
        if (nowait ? pthread_rwlock_tryrdlock(&s->io_guard) != 0
                   : pthread_rwlock_rdlock(&s->io_guard) != 0) {
            pthread_mutex_unlock(&s->lock);
            return -EAGAIN;
        }
        pthread_mutex_unlock(&s->lock);
        if (compressed) {
            qcow2_readahead_note(s, off >> s->cluster_bits, nowait);
        }
        if (plain && nowait) {
            ret = hostfile_pread_nowait(qcow2_data(s), host, p, n);
        } else if (plain) {
            hostfile_event(s->file, BLKDBG_READ_AIO);
            ret = hostfile_pread(qcow2_data(s), host, p, n);
            if (ret < 0) {
                error_set_errno(err, ret, "Could not read guest data at 0x%" PRIx64, off);
            }
        } else if (ret == 0) {
            ret = read_in_cluster(s, off, p, n, entry, bitmap, generation, nowait, err);
        }
        pthread_rwlock_unlock(&s->io_guard);
        if (ret < 0) {
            return ret;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int qcow2_read_at(struct qcow2 *s, uint64_t off, void *buf, size_t len, struct error *err)
{
    return read_at(s, off, buf, len, false, err);
}

int qcow2_pread(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err)
{
    return read_at(qcow2_of(bd), off, buf, len, false, err);
}

int qcow2_pread_nowait(struct blockdev *bd, uint64_t off, void *buf, size_t len)
{
    return read_at(qcow2_of(bd), off, buf, len, true, NULL);
}

/* Frees what an L2 entry pointed to, once nothing points there any more;
 * discarded: a discard or zero write dropped it (QEMU gives the host the
 * cluster at once then). */
static int release_mapping(struct qcow2 *s, uint64_t entry, bool discarded, struct error *err)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        uint64_t c_off;
        uint32_t c_len;
        qcow2_zcache_forget(s, entry);  /* the data is gone, though its host cluster may stay */
        qcow2_compressed_range(s, entry, &c_off, &c_len);
        return qcow2_update_refcount(s, c_off, c_len, -1, err);
    }
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    if (!qcow2_entry_has_host(s, entry)) {
        return 0;
    }
    if (s->data_file) {
        /* Not refcounted: a discard goes through to the data file, as
         * QEMU passes guest discards down. */
        if (discarded && !qcow2_data_file_is_raw(s)) {
            hostfile_discard(s->data_file, host, s->cluster_size);     /* advisory */
        }
        return 0;
    }
    return discarded ? qcow2_free_discarded_cluster(s, host, err)
                     : qcow2_free_clusters(s, host, s->cluster_size, err);
}

static int release_old_mapping(struct qcow2 *s, uint64_t entry, struct error *err)
{
    return release_mapping(s, entry, false, err);
}

/* Content of [start, end) of the cluster: the old data with buf laid over
 * [w_start, w_end). */
static int merge_old_content(struct qcow2 *s, uint64_t cluster_off, uint32_t start, uint32_t end,
                             uint32_t w_start, uint32_t w_end, const uint8_t *buf, uint64_t entry,
                             uint64_t bitmap, uint8_t *out, struct error *err)
{
    int ret = 0;
    uint64_t generation = qcow2_zcache_generation(s);     /* the lock is held */
    if (w_start > start) {
        ret = read_in_cluster(s, cluster_off + start, out, w_start - start, entry, bitmap,
                              generation, false, err);
    }
    if (ret == 0 && end > w_end) {
        ret = read_in_cluster(s, cluster_off + w_end, out + (w_end - start), end - w_end, entry,
                              bitmap, generation, false, err);
    }
    memcpy(out + (w_start - start), buf, w_end - w_start);
    return ret;
}

static int write_host(struct qcow2 *s, uint64_t host, const void *buf, size_t len,
                      struct error *err)
{
    int ret = qcow2_data_overlap_check(s, host, len, err);
    if (ret < 0) {
        return ret;
    }
    hostfile_event(s->file, BLKDBG_WRITE_AIO);
    ret = hostfile_pwrite(qcow2_data(s), host, buf, len);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write guest data");
    }
    return 0;
}

/* A write inside one cluster, lock held. When the data can go in place to
 * owned, allocated subclusters, returns 1 with *direct_host set and leaves
 * the write to the caller (after unlocking). */
/* Clusters allocated in one run for the pieces of a multi-cluster write,
 * so that they lie contiguously in the file (as QEMU places them). */
struct cluster_run {
    uint64_t next, end;
    uint64_t written;   /* clusters of the run below it already hold their data */
};

/* Up to *count new clusters for a write, as QEMU's handle_alloc places
 * them: right after the ones the write took last (run->end) if free there,
 * else wherever *count fit. The run is set to them. */
static int64_t alloc_for_run(struct qcow2 *s, struct cluster_run *run, uint64_t *count,
                             struct error *err)
{
    int64_t got = run->end ? qcow2_alloc_clusters_at(s, run->end, *count, err) : 0;
    int64_t host = got > 0 ? (int64_t)run->end : got;
    if (got == 0) {
        host = qcow2_alloc_clusters(s, *count, err);
    } else if (got > 0) {
        *count = (uint64_t)got;
    }
    if (host >= 0) {
        *run = (struct cluster_run){ (uint64_t)host, (uint64_t)host + (*count << s->cluster_bits), 0 };
    }
    return host;
}

static int64_t take_cluster(struct qcow2 *s, struct cluster_run *run, struct error *err)
{
    if (run->next == run->end) {
        uint64_t one = 1;
        int64_t host = alloc_for_run(s, run, &one, err);
        if (host < 0) {
            return host;
        }
    }
    uint64_t host = run->next;
    run->next += s->cluster_size;
    return (int64_t)host;
}

/* How many clusters from off on a write of len bytes needs new (lock held).
 * The L2 table is allocated first and the run stays within it, so that the
 * table precedes its data in the file, as with QEMU. A failure to allocate
 * it is the write's error: retried by the write, a table whose L1 update
 * failed would be allocated twice (one leaked) and the error lost. */
static int clusters_to_allocate(struct qcow2 *s, uint64_t off, size_t len, uint64_t *count,
                                struct error *err)
{
    uint8_t *table;
    uint32_t index;
    *count = 0;
    int ret = qcow2_get_l2_slot(s, off, true, &table, &index, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t n = 0;
    uint64_t pos = qcow2_start_of_cluster(s, off);
    uint64_t max = s->refblock_size / 2 - 1 < 256 ? s->refblock_size / 2 - 1 : 256;
    if (max > s->l2_size - index) {
        max = s->l2_size - index;
    }
    for (; pos < off + len && n < max; pos += s->cluster_size, n++) {
        uint64_t entry, bitmap;
        if (qcow2_lookup(s, pos, &entry, &bitmap, NULL) < 0) {
            break;
        }
        bool owned = qcow2_entry_has_host(s, entry) && (entry & QCOW2_OFLAG_COPIED);
        if (owned) {
            break;
        }
    }
    *count = n;
    return 0;
}

/* Widens the written subclusters [*first_sc, *last_sc] of a cluster moving
 * to a new host cluster over the allocated ones it must take along. */
static void copied_subclusters(uint64_t bitmap, uint32_t *first_sc, uint32_t *last_sc)
{
    uint32_t alloc = (uint32_t)(bitmap & ALL_SUBCLUSTERS);
    if (alloc) {
        uint32_t first_alloc = (uint32_t)__builtin_ctz(alloc);
        uint32_t last_alloc = 31 - (uint32_t)__builtin_clz(alloc);
        *first_sc = first_alloc < *first_sc ? first_alloc : *first_sc;
        *last_sc = last_alloc > *last_sc ? last_alloc : *last_sc;
    }
}

/* Whether [off, off+len) of bd reads as zeros by block status, through its chain. */
static bool reads_as_zero(struct blockdev *bd, uint64_t off, uint64_t len)
{
    while (len > 0) {
        struct block_status st;
        if (blockdev_block_status(bd, off, len, &st, NULL) < 0 || st.len == 0 ||
            !(st.flags & BDEV_STATUS_ZERO)) {
            return false;
        }
        uint64_t n = st.len < len ? st.len : len;
        off += n;
        len -= n;
    }
    return true;
}

/* Whether [from, to) of the cluster at cluster_off reads as zeros without
 * reading data: zero subclusters, or unallocated ones over a backing file
 * whose block status says zeros there (or none). Plain entries only. */
static bool reads_as_zero_unread(struct qcow2 *s, uint64_t cluster_off, uint64_t entry,
                                 uint64_t bitmap, uint32_t from, uint32_t to)
{
    struct blockdev *backing = s->bd.backing;
    uint32_t unalloc_from = to, unalloc_to = from;     /* the span the backing file shows in */
    for (uint32_t pos = from; pos < to; pos = ((pos >> s->subcluster_bits) + 1) << s->subcluster_bits) {
        enum qcow2_sc_type t = qcow2_sc_type(s, entry, bitmap, pos >> s->subcluster_bits);
        if (t != QCOW2_SC_ZERO && t != QCOW2_SC_UNALLOCATED) {
            return false;
        }
        if (t == QCOW2_SC_UNALLOCATED) {
            uint32_t sc_end = ((pos >> s->subcluster_bits) + 1) << s->subcluster_bits;
            unalloc_from = pos < unalloc_from ? pos : unalloc_from;
            unalloc_to = sc_end < to ? sc_end : to;
        }
    }
    uint64_t start = cluster_off + unalloc_from, end = cluster_off + unalloc_to;
    if (!backing || unalloc_from >= unalloc_to || start >= backing->size) {
        return true;
    }
    /* The backing file's lock is taken under ours, as read_backing does. */
    return reads_as_zero(backing, start, (end < backing->size ? end : backing->size) - start);
}

/* Writes the new content of [start, end) of a cluster moving to (or
 * rewritten at) new_host: the guest's bytes over [w_start, w_end), the old
 * content around them. When the old content around reads as zeros, as
 * QEMU's handle_alloc_space the range is zeroed on the host (past the end
 * of the file: only the size grows) and only the guest's bytes are written,
 * instead of a cluster-sized buffer mostly of zeros. */
static int write_new_content(struct qcow2 *s, uint64_t cluster_off, uint64_t new_host,
                             uint32_t start, uint32_t end, uint32_t w_start, uint32_t w_end,
                             const uint8_t *buf, uint64_t entry, uint64_t bitmap,
                             struct error *err)
{
    bool around = w_start > start || end > w_end;
    if (around && reads_as_zero_unread(s, cluster_off, entry, bitmap, start, w_start) &&
        reads_as_zero_unread(s, cluster_off, entry, bitmap, w_end, end) &&
        !qcow2_data_overlaps_metadata(s, new_host + start, end - start)) {
        hostfile_event(s->file, BLKDBG_CLUSTER_ALLOC_SPACE);
        int ret = hostfile_zero_range(qcow2_data(s), new_host + start, end - start, false);
        if (ret < 0) {
            return error_set_errno(err, ret, "Could not zero guest data at host offset 0x%"
                                   PRIx64, new_host + start);
        }
        return write_host(s, new_host + w_start, buf, w_end - w_start, err);
    }
    uint8_t *data = around ? malloc(end - start) : (uint8_t *)buf;
    if (!data) {
        return error_set(err, -ENOMEM, "Out of memory for a copy-on-write of %u bytes", end - start);
    }
    int ret = around ? merge_old_content(s, cluster_off, start, end, w_start, w_end, buf, entry,
                                         bitmap, data, err) : 0;
    if (ret == 0) {
        ret = write_host(s, new_host + start, data, end - start, err);
    }
    if (data != buf) {
        free(data);
    }
    return ret;
}

static int write_in_cluster(struct qcow2 *s, uint64_t off, const uint8_t *buf, size_t len,
                            struct cluster_run *run, uint64_t *direct_host, struct error *err)
{
    uint8_t *table;
    uint32_t index;
    int ret = qcow2_get_l2_slot(s, off, true, &table, &index, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t entry, bitmap;
    qcow2_l2_read_entry(s, table, index, &entry, &bitmap);
    uint64_t cluster_off = qcow2_start_of_cluster(s, off);
    uint32_t w_start = (uint32_t)(off - cluster_off);
    uint32_t w_end = w_start + (uint32_t)len;
    uint32_t first_sc = w_start >> s->subcluster_bits;
    uint32_t last_sc = (w_end - 1) >> s->subcluster_bits;
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    bool compressed = entry & QCOW2_OFLAG_COMPRESSED;
    bool has_host = qcow2_entry_has_host(s, entry);
    bool owned = has_host && (entry & QCOW2_OFLAG_COPIED);

    bool all_normal = true;
    for (uint32_t sc = first_sc; sc <= last_sc; sc++) {
        enum qcow2_sc_type t = qcow2_sc_type(s, entry, bitmap, sc);
        if (t == QCOW2_SC_INVALID) {
            return qcow2_signal_corruption(s, err, "Invalid cluster entry found (L2 offset: %#"
                                           PRIx64 ", L2 index: %#x)", l2_table_offset(s, off),
                                           index);
        }
        all_normal &= t == QCOW2_SC_NORMAL;
    }
    if (owned) {
        ret = check_host_offset(s, entry, off, err);
        if (ret < 0) {
            return ret;
        }
        if (all_normal) {
            ret = qcow2_data_overlap_check(s, host + w_start, len, err);
            if (ret < 0) {
                return ret;
            }
            *direct_host = host + w_start;
            return 1;
        }
        if (is_zero_alloc_overwrite(s, entry, bitmap, w_start, len) &&
            !qcow2_data_overlaps_metadata(s, host, len)) {
            *direct_host = host;
            return 1;
        }
    }

    /* The range written: whole subclusters, or the whole cluster when old
     * data must move to a new cluster; with subclusters only from the first
     * to the last allocated one (QEMU's calculate_l2_meta), the others stay
     * zero or unallocated in the new cluster. */
    bool whole = !s->extended_l2 || compressed;
    if (s->extended_l2 && has_host && !owned) {
        copied_subclusters(bitmap, &first_sc, &last_sc);
    }
    uint32_t start = whole ? 0 : first_sc << s->subcluster_bits;
    uint32_t end = whole ? s->cluster_size : (last_sc + 1) << s->subcluster_bits;
    uint64_t new_host = host;
    bool allocated = false;
    if (!owned && s->data_file) {
        if (has_host) {
            ret = check_host_offset(s, entry, off, err);
        }
        new_host = qcow2_data_file_host(cluster_off);     /* nothing to allocate or free */
    } else if (!owned) {
        int64_t alloc = take_cluster(s, run, err);
        ret = alloc < 0 ? (int)alloc : 0;
        new_host = (uint64_t)alloc;
        allocated = ret == 0;
    }
    /* Only the run's own clusters can hold data write_run_data wrote: a
     * run taken anew (possibly below the old one, in a hole) starts with
     * nothing written. */
    bool written = allocated && new_host + s->cluster_size <= run->written &&
                   start == 0 && w_start == 0 && w_end == s->cluster_size;
    if (ret == 0 && !written) {
        ret = write_new_content(s, cluster_off, new_host, start, end, w_start, w_end, buf, entry,
                                bitmap, err);
    }
    if (ret == 0) {
        qcow2_order_note_target(s);    /* the L2 entry changed below must not land before it */
    }
    if (ret < 0) {
        if (allocated) {
            qcow2_free_unused_clusters(s, new_host, s->cluster_size, NULL);
        }
        return ret;
    }
    uint64_t new_bitmap = 0;
    if (s->extended_l2) {
        uint64_t range = compressed ? ALL_SUBCLUSTERS
                                    : sc_range_mask(start >> s->subcluster_bits,
                                                    (end - 1) >> s->subcluster_bits);
        uint64_t old_alloc = compressed ? 0 : bitmap & ALL_SUBCLUSTERS;
        uint64_t old_zero = compressed ? 0 : bitmap >> 32;
        new_bitmap = (old_alloc | range) | ((old_zero & ~range) << 32);
    }
    ret = qcow2_l2_write_entry(s, table, index, new_host | QCOW2_OFLAG_COPIED, new_bitmap, err);
    if (ret < 0 || owned || (s->data_file && new_host == host)) {
        return ret;
    }
    return release_old_mapping(s, entry, err);
}

/* The whole clusters a run of new clusters starts with get their data in
 * one host write, before their pieces are mapped one by one (a 1 MiB
 * allocating write was 16 writes). Every piece of the run takes the run's
 * next cluster, so the k-th whole cluster's data is at the k-th cluster. */
static int write_run_data(struct qcow2 *s, struct cluster_run *run, uint64_t off,
                          const uint8_t *buf, size_t len, struct error *err)
{
    uint64_t whole = (uint64_t)len & ~s->cluster_mask;
    uint64_t n = whole < run->end - run->next ? whole : run->end - run->next;
    if (qcow2_offset_in_cluster(s, off) || n < 2 * (uint64_t)s->cluster_size) {
        return 0;   /* one cluster goes out with its piece */
    }
    int ret = write_host(s, run->next, buf, n, err);
    if (ret == 0) {
        run->written = run->next + n;
        qcow2_order_note_target(s);
    }
    return ret;
}

/* In-place data changes no metadata: it goes out unlocked, once the batch so
 * far is written (lock held on entry and on return). Over clusters still
 * zero by their L2 entries (keep_lock) the lock stays held until the
 * entries say data: a partial write there meanwhile would zero the whole
 * host cluster over this one's data. */
static int write_in_place(struct qcow2 *s, uint64_t host, const void *buf, size_t len,
                          uint64_t guest_off, bool keep_lock, struct error *err)
{
    int ret = qcow2_order_batch_end(s, err);
    if (!keep_lock) {
        pthread_rwlock_rdlock(&s->io_guard);    /* host stays this cluster's until the write is done */
        pthread_mutex_unlock(&s->lock);
    }
    if (ret == 0) {
        hostfile_event(s->file, BLKDBG_WRITE_AIO);
    }
    if (ret == 0 && (ret = hostfile_pwrite(qcow2_data(s), host, buf, len)) < 0) {
        error_set_errno(err, ret, "Could not write guest data at 0x%" PRIx64, guest_off);
    }
    if (!keep_lock) {
        pthread_rwlock_unlock(&s->io_guard);
        pthread_mutex_lock(&s->lock);
    }
    qcow2_order_batch_begin(s);
    return ret;
}

/* The clusters an in-place write over [off, off + len) overwrites whole
 * that are zeros by their L2 entries: counted, or (clear) made data. The
 * entries change after the data is on the disk (qcow2_order.c). */
static int zero_flags_over(struct qcow2 *s, uint64_t off, size_t len, bool clear, struct error *err)
{
    /* Only whole clusters are written over zeros (is_zero_alloc_overwrite);
     * a partly written one at either end may keep zero subclusters. */
    uint64_t first = qcow2_start_of_cluster(s, off + s->cluster_size - 1);
    int count = 0;
    for (uint64_t pos = first; pos + s->cluster_size <= off + len; pos += s->cluster_size) {
        uint8_t *table;
        uint32_t index;
        uint64_t entry, bitmap;
        int ret = qcow2_lookup(s, pos, &entry, &bitmap, err);
        if (ret < 0) {
            return ret;
        }
        if (is_plain_data(s, entry, bitmap, 0, s->cluster_size)) {
            continue;
        }
        count++;
        if (!clear) {
            continue;
        }
        ret = qcow2_get_l2_slot(s, pos, true, &table, &index, err);
        if (ret < 0) {
            return ret;
        }
        qcow2_order_note_target(s);
        ret = qcow2_l2_write_entry(s, table, index, entry & ~QCOW2_OFLAG_ZERO,
                                   s->extended_l2 ? ALL_SUBCLUSTERS : 0, err);
        if (ret < 0) {
            return ret;
        }
    }
    return count;
}

/* The lock is held through the request, except around in-place data, so
 * that its L2 updates form one batch (qcow2_order.c) that nobody else sees
 * half written on the disk. */
int qcow2_write_at(struct qcow2 *s, uint64_t off, const void *buf, size_t len, struct error *err)
{
    const uint8_t *p = buf;
    struct cluster_run run = { 0, 0, 0 };
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_prepare_write(s, err);
    qcow2_order_batch_begin(s);
    while (ret == 0 && len > 0) {
        size_t n = s->cluster_size - qcow2_offset_in_cluster(s, off);
        if (n > len) {
            n = len;
        }
        uint64_t direct_host = 0;
        if (run.next == run.end && len > n && !s->data_file) {
            uint64_t count;
            ret = clusters_to_allocate(s, off, len, &count, err);
            int64_t first = ret == 0 && count > 1 ? alloc_for_run(s, &run, &count, err) : 0;
            ret = first < 0 ? (int)first : ret;
            if (first > 0) {
                ret = write_run_data(s, &run, off, p, len, err);
            }
        }
        if (ret == 0) {
            ret = write_in_cluster(s, off, p, n, &run, &direct_host, err);
        }
        if (ret == 1) {
            if (n == s->cluster_size - qcow2_offset_in_cluster(s, off)) {
                n = extend_contiguous(s, off, n, len, direct_host + n, true);    /* one host write */
            }
            int zeros = zero_flags_over(s, off, n, false, err);
            ret = zeros < 0 ? zeros : write_in_place(s, direct_host, p, n, off, zeros > 0, err);
            if (run.next == run.end) {
                /* What the write allocates next goes right after, if free there. */
                run.next = run.end = qcow2_start_of_cluster(s, direct_host + n - 1) + s->cluster_size;
            }
            if (ret == 0 && zeros > 0) {
                ret = zero_flags_over(s, off, n, true, err);
                ret = ret < 0 ? ret : 0;
            }
        }
        p += n;
        off += n;
        len -= n;
    }
    if (run.next < run.end) {
        /* An error stopped the write: the clusters not used go back. */
        qcow2_free_unused_clusters(s, run.next, run.end - run.next, NULL);
    }
    int end = qcow2_order_batch_end(s, ret == 0 ? err : NULL);
    pthread_mutex_unlock(&s->lock);
    return ret == 0 ? end : ret;
}

int qcow2_pwrite(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                 struct error *err)
{
    return qcow2_write_at(qcow2_of(bd), off, buf, len, err);
}

/* Whether a write may go in place without the write path: nothing left for
 * qcow2_prepare_write to do, and the range is owned plain data. Lock held. */
static bool writes_in_place(struct qcow2 *s, uint64_t entry, uint64_t bitmap, uint32_t in_cluster, size_t len)
{
    uint64_t host = (entry & QCOW2_L2E_OFFSET_MASK) + in_cluster;
    return !s->corrupt && s->autoclear_cleared && (!s->lazy_refcounts || s->dirty_written) &&
           (entry & QCOW2_OFLAG_COPIED) && is_plain_data(s, entry, bitmap, in_cluster, len) &&
           !qcow2_data_overlaps_metadata(s, host, len);
}

/* One cluster's piece of a nowait write. */
static int write_piece_nowait(struct qcow2 *s, uint64_t off, const uint8_t *p, size_t n)
{
    uint32_t in_cluster = (uint32_t)qcow2_offset_in_cluster(s, off);
    uint64_t entry, bitmap;
    if (pthread_mutex_trylock(&s->lock) != 0) {
        return -EAGAIN;
    }
    bool ok = qcow2_lookup_cached(s, off, &entry, &bitmap) == 0 && writes_in_place(s, entry, bitmap, in_cluster, n);
    /* As write_in_place: the host cluster stays this one's until the write is done. */
    if (!ok || pthread_rwlock_tryrdlock(&s->io_guard) != 0) {
        pthread_mutex_unlock(&s->lock);
        return -EAGAIN;
    }
    pthread_mutex_unlock(&s->lock);
    int ret = hostfile_pwrite_nowait(qcow2_data(s), (entry & QCOW2_L2E_OFFSET_MASK) + in_cluster, p, n);
    pthread_rwlock_unlock(&s->io_guard);
    return ret;
}

/* The in-place case of qcow2_write_at from cached metadata, lock only
 * tried: see blockdev_pwrite_nowait. */
int qcow2_pwrite_nowait(struct blockdev *bd, uint64_t off, const void *buf, size_t len)
{
    struct qcow2 *s = qcow2_of(bd);
    const uint8_t *p = buf;
    for (size_t n; len > 0; p += n, off += n, len -= n) {
        n = s->cluster_size - qcow2_offset_in_cluster(s, off);
        n = n < len ? n : len;
        int ret = write_piece_nowait(s, off, p, n);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Zeroes whole subclusters [first_sc, last_sc] of one cluster via metadata
 * (v3 only). Returns 1 when the cluster must be written with zero data instead. */
/* Part of a compressed cluster cannot be zeroed in its L2 entry: the
 * cluster must be copied and zeros written. (Part of a shared one can: as
 * in QEMU, the entry in this layer's L2 table keeps the shared cluster,
 * its subclusters marked zero.) */
static bool needs_zero_data(const struct qcow2 *s, uint64_t entry, uint32_t first_sc,
                            uint32_t last_sc)
{
    bool whole = first_sc == 0 && last_sc == s->subclusters - 1;
    return !whole && (entry & QCOW2_OFLAG_COMPRESSED);
}

static int zero_in_cluster(struct qcow2 *s, uint64_t off, uint32_t first_sc, uint32_t last_sc,
                           bool may_unmap, struct error *err)
{
    uint8_t *table;
    uint32_t index;
    int ret = qcow2_get_l2_slot(s, off, true, &table, &index, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t entry, bitmap;
    qcow2_l2_read_entry(s, table, index, &entry, &bitmap);
    bool compressed = entry & QCOW2_OFLAG_COMPRESSED;
    bool has_host = qcow2_entry_has_host(s, entry);
    bool owned = has_host && (entry & QCOW2_OFLAG_COPIED);
    bool whole = first_sc == 0 && last_sc == s->subclusters - 1;
    bool drop = compressed || (whole && ((has_host && !owned) || may_unmap));
    if (needs_zero_data(s, entry, first_sc, last_sc)) {
        return 1;
    }
    uint64_t new_entry, new_bitmap = 0;
    if (!s->extended_l2) {
        new_entry = drop || !has_host ? QCOW2_OFLAG_ZERO : entry | QCOW2_OFLAG_ZERO;
    } else {
        uint64_t range = sc_range_mask(first_sc, last_sc);
        new_entry = drop ? 0 : entry;
        uint64_t alloc = drop ? 0 : bitmap & ALL_SUBCLUSTERS & ~range;
        uint64_t zero = ((drop ? 0 : bitmap >> 32) | range) & ALL_SUBCLUSTERS;
        new_bitmap = alloc | (zero << 32);
    }
    if (new_entry == entry && (!s->extended_l2 || new_bitmap == bitmap)) {
        return 0;   /* reads as zeros already: no L2 update, as QEMU (iotest 179) */
    }
    ret = qcow2_l2_write_entry(s, table, index, new_entry, new_bitmap, err);
    if (ret < 0 || !drop) {
        return ret;
    }
    return release_mapping(s, entry, true, err);
}

static int write_zero_data(struct qcow2 *s, uint64_t off, uint64_t len, struct error *err)
{
    /* Large pieces, so that clusters allocated for them lie contiguously. */
    size_t chunk = s->cluster_size > (1u << 20) ? s->cluster_size : (1u << 20);
    uint8_t *zeros = calloc(1, chunk);
    int ret = 0;
    while (ret == 0 && len > 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        ret = qcow2_write_at(s, off, zeros, n, err);
        off += n;
        len -= n;
    }
    free(zeros);
    return ret;
}

/* Zeroes a piece of one subcluster. As QEMU does, when the rest of the
 * subcluster already reads as zeros and holds no data, the whole subcluster
 * becomes a zero subcluster; otherwise zeros are written. */
static int zero_partial_subcluster(struct qcow2 *s, uint64_t off, uint64_t len, unsigned flags,
                                   struct error *err)
{
    uint64_t start = off & ~((uint64_t)s->subcluster_size - 1);
    uint64_t end = start + s->subcluster_size < s->bd.size ? start + s->subcluster_size : s->bd.size;
    if (reads_as_zero(&s->bd, start, off - start) && reads_as_zero(&s->bd, off + len, end - off - len)) {
        uint32_t sc = (uint32_t)(qcow2_offset_in_cluster(s, start) >> s->subcluster_bits);
        uint64_t entry, bitmap;
        pthread_mutex_lock(&s->lock);
        int ret = qcow2_prepare_write(s, err);
        if (ret == 0) {
            ret = qcow2_lookup(s, start, &entry, &bitmap, err);
        }
        if (ret == 0) {
            enum qcow2_sc_type type = qcow2_sc_type(s, entry, bitmap, sc);
            ret = type == QCOW2_SC_UNALLOCATED || type == QCOW2_SC_ZERO
                  ? zero_in_cluster(s, start, sc, sc, flags & BDEV_ZERO_MAY_UNMAP, err) : 1;
        }
        pthread_mutex_unlock(&s->lock);
        if (ret <= 0) {
            return ret;
        }
    }
    return write_zero_data(s, off, len, err);
}

/* The subclusters of the cluster at pos that [pos, end) covers. */
static void covered_subclusters(const struct qcow2 *s, uint64_t pos, uint64_t end, uint64_t *stop,
                                uint32_t *first_sc, uint32_t *last_sc)
{
    uint64_t cluster_end = qcow2_start_of_cluster(s, pos) + s->cluster_size;
    *stop = cluster_end < end ? cluster_end : end;
    *first_sc = (uint32_t)(qcow2_offset_in_cluster(s, pos) >> s->subcluster_bits);
    *last_sc = (uint32_t)((qcow2_offset_in_cluster(s, *stop - 1)) >> s->subcluster_bits);
}

/* Whether some cluster of [off, end) needs zero data (lock held). Then, as
 * QEMU does, the whole request writes zeros rather than a mix. */
static bool range_needs_zero_data(struct qcow2 *s, uint64_t off, uint64_t end)
{
    for (uint64_t pos = off, stop; pos < end; pos = stop) {
        uint32_t first_sc, last_sc;
        uint64_t entry, bitmap;
        covered_subclusters(s, pos, end, &stop, &first_sc, &last_sc);
        if (qcow2_lookup(s, pos, &entry, &bitmap, NULL) < 0 ||
            needs_zero_data(s, entry, first_sc, last_sc)) {
            return true;
        }
    }
    return false;
}

/* Zeroes whole subclusters [off, end) through metadata. */
static int zero_aligned(struct qcow2 *s, uint64_t off, uint64_t end, unsigned flags,
                        struct error *err)
{
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_prepare_write(s, err);
    if (ret == 0 && range_needs_zero_data(s, off, end)) {
        pthread_mutex_unlock(&s->lock);
        return write_zero_data(s, off, end - off, err);
    }
    qcow2_order_batch_begin(s);
    qcow2_give_back_begin(s);
    uint64_t pos = off;
    while (ret == 0 && pos < end) {
        uint64_t stop;
        uint32_t first_sc, last_sc;
        covered_subclusters(s, pos, end, &stop, &first_sc, &last_sc);
        ret = zero_in_cluster(s, pos, first_sc, last_sc, flags & BDEV_ZERO_MAY_UNMAP, err);
        if (ret == 1) {
            ret = qcow2_order_batch_end(s, err);
            qcow2_give_back_end(s);
            pthread_mutex_unlock(&s->lock);
            ret = ret < 0 ? ret : write_zero_data(s, pos, stop - pos, err);
            pthread_mutex_lock(&s->lock);
            qcow2_order_batch_begin(s);
            qcow2_give_back_begin(s);
        }
        pos = stop;
    }
    int batch = qcow2_order_batch_end(s, ret == 0 ? err : NULL);
    qcow2_give_back_end(s);
    pthread_mutex_unlock(&s->lock);
    return ret == 0 ? batch : ret;
}

int qcow2_zero_grown_area(struct qcow2 *s, uint64_t old, uint64_t size, struct error *err)
{
    uint64_t zero_start = (old + s->subcluster_size - 1) & ~((uint64_t)s->subcluster_size - 1);
    uint64_t old_size = s->bd.size;
    s->bd.size = size;      /* the writes below reach up to the new end */
    int ret = 0;
    if (zero_start > old) {
        ret = write_zero_data(s, old, (zero_start < size ? zero_start : size) - old, err);
    }
    if (ret == 0 && size > zero_start) {
        /* As QEMU's qcow2_subcluster_zeroize: the last cluster, partial at
         * the end of the image, becomes a whole zero cluster. */
        uint64_t end = qcow2_start_of_cluster(s, size + s->cluster_mask);
        ret = zero_aligned(s, zero_start, end, 0, err);
    }
    s->bd.size = old_size;
    if (ret < 0) {
        error_prefix(err, "Failed to zero out the new area");
    }
    return ret;
}

/* v2 has no zero flag: zeros are written, except that without a backing
 * file whole clusters are discarded, which reads as zeros (QEMU's
 * qcow2_subcluster_zeroize does the same). */
static int zero_v2(struct qcow2 *s, uint64_t off, uint64_t len, struct error *err)
{
    uint64_t end = off + len;
    uint64_t first = (off + s->cluster_size - 1) & ~s->cluster_mask;
    uint64_t last = end == s->bd.size ? end : end & ~s->cluster_mask;
    if (s->bd.backing_filename || first >= last) {
        return write_zero_data(s, off, len, err);
    }
    int ret = first > off ? write_zero_data(s, off, first - off, err) : 0;
    if (ret == 0) {
        ret = qcow2_discard(&s->bd, first, last - first, err);
    }
    if (ret == 0 && end > last) {
        ret = write_zero_data(s, last, end - last, err);
    }
    return ret;
}

int qcow2_pwrite_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                        struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    if (qcow2_data_file_is_raw(s)) {
        /* The raw data file must read as the image does: zeros there first,
         * as QEMU's qcow2_subcluster_zeroize. */
        int ret = hostfile_zero_range(s->data_file, off, len, false);
        if (ret < 0) {
            return error_set_errno(err, ret, "Could not zero the data file at 0x%" PRIx64, off);
        }
    }
    if (s->version < 3) {
        return zero_v2(s, off, len, err);
    }
    uint64_t sc_mask = (uint64_t)s->subcluster_size - 1;
    uint64_t end = off + len;
    uint64_t head_end = (off + sc_mask) & ~sc_mask;
    uint64_t tail_start = end == bd->size ? end : end & ~sc_mask;
    if (head_end > end) {
        head_end = end;
    }
    if (tail_start < head_end) {
        tail_start = head_end;
    }
    int ret = 0;
    if (head_end > off) {
        ret = zero_partial_subcluster(s, off, head_end - off, flags, err);
    }
    if (ret == 0 && tail_start > head_end) {
        ret = zero_aligned(s, head_end, tail_start, flags, err);
    }
    if (ret == 0 && end > tail_start) {
        ret = zero_partial_subcluster(s, tail_start, end - tail_start, flags, err);
    }
    return ret;
}

/* What discarded subclusters [first, last] of a cluster become: unallocated,
 * or (QEMU's rule for guest discards) reading as zeros when a backing file
 * would otherwise show through or when they held data. Without subclusters
 * only whole clusters are discarded. The host cluster is dropped once no
 * subcluster uses it. Returns false when nothing can be discarded here. */
static bool discarded_entry(struct qcow2 *s, uint64_t entry, uint64_t bitmap, uint32_t first,
                            uint32_t last, bool make_zero, uint64_t *new_entry,
                            uint64_t *new_bitmap)
{
    bool whole = first == 0 && last == s->subclusters - 1;
    bool compressed = entry & QCOW2_OFLAG_COMPRESSED;
    bool host = qcow2_entry_has_host(s, entry);
    if (!whole && (compressed || (host && !(entry & QCOW2_OFLAG_COPIED)))) {
        return false;   /* discard is advisory: do not copy a cluster to drop part of it */
    }
    if (make_zero && s->version < 3 && s->bd.backing) {
        return false;   /* v2 has no zero flag: discarding would expose the backing data */
    }
    if (make_zero && !s->bd.backing && !compressed && !host) {
        return false;   /* reads as zeros already: QEMU leaves the entry (and its zero bits) */
    }
    uint64_t range = sc_range_mask(first, last);
    bool allocated = compressed || (s->extended_l2 ? (bitmap & range) != 0 : host);
    bool zero = make_zero && s->version >= 3 && (s->bd.backing || allocated);
    if (!s->extended_l2) {
        *new_entry = zero ? QCOW2_OFLAG_ZERO : 0;
        *new_bitmap = 0;
        return true;
    }
    uint64_t alloc = compressed ? 0 : bitmap & ALL_SUBCLUSTERS & ~range;
    uint64_t zeros = compressed ? 0 : (bitmap >> 32) & ~range;
    if (zero) {
        zeros |= range;
    }
    *new_entry = alloc ? entry : 0;
    *new_bitmap = alloc | (zeros << 32);
    return true;
}

int qcow2_discard_locked(struct qcow2 *s, uint64_t off, uint64_t len, bool make_zero,
                         struct error *err)
{
    uint64_t granule = s->subcluster_size;
    uint64_t end = off + len;
    uint64_t pos = (off + granule - 1) & ~(granule - 1);
    uint64_t stop = end & ~(granule - 1);
    if (end == s->bd.size) {
        stop = end;     /* the partial last (sub)cluster of the disk */
    }
    while (pos < stop) {
        uint64_t cluster_end = qcow2_start_of_cluster(s, pos) + s->cluster_size;
        uint64_t piece_end = cluster_end < stop ? cluster_end : stop;
        uint32_t first = (uint32_t)(qcow2_offset_in_cluster(s, pos) >> s->subcluster_bits);
        uint32_t last = piece_end == cluster_end || piece_end == s->bd.size
                        ? s->subclusters - 1
                        : (uint32_t)(qcow2_offset_in_cluster(s, piece_end - 1) >> s->subcluster_bits);
        pos = piece_end;
        uint64_t entry, bitmap, new_entry, new_bitmap;
        int ret = qcow2_lookup(s, qcow2_start_of_cluster(s, piece_end - 1), &entry, &bitmap, err);
        if (ret < 0) {
            return ret;
        }
        if (!discarded_entry(s, entry, bitmap, first, last, make_zero, &new_entry, &new_bitmap) ||
            (new_entry == entry && new_bitmap == bitmap)) {
            continue;
        }
        uint8_t *table;
        uint32_t index;
        /* With allocation: our own copy when the table is shared with a snapshot. */
        ret = qcow2_get_l2_slot(s, piece_end - 1, true, &table, &index, err);
        if (ret == 0) {
            ret = qcow2_l2_write_entry(s, table, index, new_entry, new_bitmap, err);
        }
        if (ret == 0 && ((new_entry & QCOW2_L2E_OFFSET_MASK) != (entry & QCOW2_L2E_OFFSET_MASK) ||
                         qcow2_entry_has_host(s, new_entry) != qcow2_entry_has_host(s, entry))) {
            ret = release_mapping(s, entry, true, err);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* A guest discard drops whole clusters only, as QEMU 7.2's (its block
 * layer aligns discards to the cluster size, qcow2_co_pdiscard ignores the
 * partial clusters at either end), subclusters or not: the partial last
 * cluster of the disk counts as whole. */
int qcow2_discard(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    uint64_t end = off + len;
    off = (off + s->cluster_size - 1) & ~s->cluster_mask;
    if (end != bd->size) {
        end &= ~s->cluster_mask;
    }
    if (off >= end) {
        return 0;
    }
    len = end - off;
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_prepare_write(s, err);
    if (ret == 0) {
        qcow2_order_batch_begin(s);
        qcow2_give_back_begin(s);
        ret = qcow2_discard_locked(s, off, len, true, err);
        int batch = qcow2_order_batch_end(s, ret == 0 ? err : NULL);
        qcow2_give_back_end(s);
        ret = ret == 0 ? batch : ret;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* One cluster (or the partial last one of the disk) compressed. As QEMU's
 * qcow2_alloc_compressed_cluster_offset, it never overwrites: a cluster
 * with a host offset (data or compressed) fails with -EIO. */
static int write_compressed_cluster(struct qcow2 *s, uint64_t off, const void *buf, size_t len,
                                    struct error *err)
{
    uint8_t *in = (uint8_t *)buf;
    if (len < s->cluster_size) {
        in = calloc(1, s->cluster_size);
        memcpy(in, buf, len);
    }
    /* Compress without the lock: parallel writers compress in parallel. */
    uint8_t *out = malloc(s->cluster_size);
    int clen = qcow2_compress(s->compression_type, in, s->cluster_size, out, s->cluster_size - 1);
    if (in != buf) {
        free(in);
    }
    if (clen < 0) {
        free(out);
        /* Incompressible: store it as a normal cluster, as QEMU does. */
        return qcow2_write_at(s, off, buf, len, err);
    }
    pthread_mutex_lock(&s->lock);
    int ret = qcow2_prepare_write(s, err);
    uint8_t *table = NULL;
    uint32_t index = 0;
    if (ret == 0) {
        ret = qcow2_get_l2_slot(s, off, true, &table, &index, err);
    }
    if (ret == 0) {
        uint64_t entry, bitmap;
        qcow2_l2_read_entry(s, table, index, &entry, &bitmap);
        if (entry & QCOW2_L2E_OFFSET_MASK) {
            ret = error_set(err, -EIO, "Cannot compress into the allocated cluster at offset "
                            "%" PRIu64 ": compressed writes never overwrite", off);
        }
    }
    int64_t c_off = -1;
    if (ret == 0) {
        c_off = qcow2_alloc_bytes(s, (uint32_t)clen, err);
        ret = c_off < 0 ? (int)c_off : 0;
    }
    if (ret == 0) {
        ret = write_host(s, (uint64_t)c_off, out, (size_t)clen, err);
    }
    if (ret == 0) {
        qcow2_order_note_target(s);
        qcow2_order_batch_begin(s);
        /* The entry had no host cluster (checked above): nothing to release. */
        uint64_t sectors = (((uint64_t)c_off + (uint64_t)clen - 1) >> 9) - ((uint64_t)c_off >> 9);
        uint64_t new_entry = QCOW2_OFLAG_COMPRESSED | (uint64_t)c_off | (sectors << s->csize_shift);
        ret = qcow2_l2_write_entry(s, table, index, new_entry, 0, err);
        int batch = qcow2_order_batch_end(s, ret == 0 ? err : NULL);
        ret = ret == 0 ? batch : ret;
    }
    pthread_mutex_unlock(&s->lock);
    free(out);
    return ret;
}

/* Whole clusters from a cluster boundary (the last may end at the disk's
 * end), each compressed on its own, as QEMU's qcow2_co_pwritev_compressed
 * splits them; a failure stops at that cluster. */
int qcow2_pwrite_compressed(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                            struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    int refused = qcow2_data_file_refuse(s, NULL, err);
    if (refused < 0) {
        return refused;
    }
    if (qcow2_offset_in_cluster(s, off) ||
        (qcow2_offset_in_cluster(s, len) && off + len != bd->size)) {
        return error_set(err, -EINVAL, "Compressed writes must cover whole clusters "
                         "(offset %" PRIu64 ", %zu bytes, cluster size %u)", off, len,
                         s->cluster_size);
    }
    const uint8_t *p = buf;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < s->cluster_size ? len - done : s->cluster_size;
        int ret = write_compressed_cluster(s, off + done, p + done, n, err);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}
