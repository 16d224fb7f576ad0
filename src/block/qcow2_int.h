/* qcow2 internals shared by the qcow2_*.c files (not for users of the
 * block layer). docs/interop/qcow2.txt in QEMU's source is the spec.
 *
 * Locking: one mutex per image (s->lock) protects all metadata: the header
 * fields, L1, the caches, refcounts and the allocator. Guest data I/O to
 * clusters that are already allocated runs with the lock dropped.
 *
 * Crash consistency: metadata caches are write-through (except refcount
 * blocks under lazy refcounts, and L2 updates within a batch), and every
 * update is ordered so that a kill at any point leaves at worst leaked
 * clusters: a cluster's refcount is raised before anything points to it,
 * and lowered only after nothing does. qcow2_order.c adds the syncs that
 * keep this order through a power loss. (Snapshot create and delete, done
 * in QEMU's order, may also leave COPIED flags out of step with refcounts,
 * as QEMU does: harmless, repaired by check.) */
#ifndef BLOCK_QCOW2_INT_H
#define BLOCK_QCOW2_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block_int.h"
#include "block/hostfile.h"
#include "block/qcow2.h"

#define QCOW2_MAGIC 0x514649fbU            /* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_HOST_OFFSET ((1ULL << 56) - 1)
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_HEADER_LEN_WITH_COMPRESSION 112
#define QCOW2_SECTOR 512u
/* crypt_method values of the header; we create AES (1) images, open none. */
#define QCOW2_CRYPT_AES 1u

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY       (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION | \
                              QCOW2_INCOMPAT_EXTL2)
/* compatible_features */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
/* autoclear_features: bitmaps is kept while we maintain them (qcow2_bitmap.c);
 * the others are cleared on the first write. */
#define QCOW2_AUTOCLEAR_BITMAPS     (1ULL << 0)
/* the external data file is a valid raw image (kept: qcow2_data_file.c) */
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ULL << 1)

/* Header extension types */
#define QCOW2_EXT_END            0x00000000U
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857U
#define QCOW2_EXT_BITMAPS        0x23852875U
#define QCOW2_EXT_CRYPTO         0x0537be77U
#define QCOW2_EXT_DATA_FILE      0x44415441U

/* L1, L2 and refcount table entry bits */
#define QCOW2_OFLAG_COPIED     (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO       (1ULL << 0)
#define QCOW2_L1E_OFFSET_MASK  0x00fffffffffffe00ULL
#define QCOW2_L1E_RESERVED     0x7f000000000001ffULL
#define QCOW2_L2E_OFFSET_MASK  0x00fffffffffffe00ULL
#define QCOW2_L2E_STD_RESERVED 0x3f000000000001feULL
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ULL

/* What a subcluster (or, without extended L2, a whole cluster) holds. */
enum qcow2_sc_type {
    QCOW2_SC_UNALLOCATED,   /* read from the backing file, or zeros */
    QCOW2_SC_ZERO,          /* reads as zeros; may still own a host cluster */
    QCOW2_SC_NORMAL,        /* data at host offset */
    QCOW2_SC_COMPRESSED,    /* the whole cluster is compressed */
    QCOW2_SC_INVALID,       /* an entry the spec forbids (reported as corruption) */
};

/* A metadata table cache: cluster-sized tables (L2 tables, refcount blocks)
 * keyed by host offset, found through a hash table, least-recently-used
 * replacement. It may hold thousands of tables (small clusters, large disks),
 * so nothing in it scans all entries on the I/O path. */
struct qcow2_cache_entry {
    uint64_t offset;        /* 0: slot unused */
    bool dirty;             /* only with lazy refcounts: not yet written */
    int hash_next;          /* next entry in the same hash bucket, -1 ends */
    int lru_prev, lru_next; /* most recently used at the head */
};

struct qcow2_cache {
    int count;
    uint32_t table_size;
    uint8_t *tables;        /* count tables, one block: a table's index is its position */
    struct qcow2_cache_entry *entries;
    int *buckets;           /* heads of hash chains, -1 when empty */
    uint32_t bucket_mask;
    int lru_head, lru_tail;
    int dirty_count;        /* entries dirty: a flush with none scans nothing */
};

/* Decompressed clusters (qcow2_zcache.c), so that reads of a compressed
 * cluster decompress it once (QEMU decompresses on every read). A cluster is
 * found by its compressed L2 descriptor, which names the data as long as the
 * host bytes stay allocated: rewriting the cluster gives it a new descriptor,
 * and freed host bytes are forgotten before they can be reused. */
struct qcow2_zcache {
    pthread_mutex_t lock;
    struct qcow2_cache slots;   /* descriptor -> cluster; never dirty; count 0: none yet */
    int capacity;               /* slots allocated at the first fill; 0: no cache */
    uint32_t cluster_size;
    int used;                   /* slots holding a cluster */
    uint64_t generation;        /* bumped by each forget: a fill that raced one is dropped */
    uint64_t hits, misses;
    struct qcow2_zcache_populate *populate;     /* NULL: slots fault in as they are filled */
};

/* Read-ahead of compressed clusters (qcow2_readahead.c): a sequential
 * stream of reads through compressed clusters has the next ones decompressed
 * into the cache by a few worker threads, on cores the reader leaves idle. */
#define QCOW2_RA_QUEUE 64
#define QCOW2_RA_MAX_THREADS 4

struct qcow2_readahead {
    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_t threads[QCOW2_RA_MAX_THREADS];
    int nthreads, max_threads;
    uint32_t window;            /* clusters kept decompressed ahead of a stream; 0: off */
    uint64_t queue[QCOW2_RA_QUEUE];     /* guest cluster indexes to decompress */
    int head, count;
    uint64_t stream_next;       /* the guest cluster a sequential stream reads next */
    uint64_t queued_to;         /* clusters below this, in the stream, are queued */
    uint64_t done;              /* clusters decompressed by read-ahead (tests, debug log) */
    bool stop;
};

struct qcow2_unknown_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

struct qcow2_snapshot;  /* qcow2_snapshot.c */

/* A bitmap directory entry as on disk (qcow2_bitmap.c). */
#define QCOW2_BME_IN_USE (1u << 0)
#define QCOW2_BME_AUTO   (1u << 1)
struct qcow2_bitmap {
    uint64_t table_offset;
    uint32_t table_size;                /* entries */
    uint32_t flags;
    uint8_t granularity_bits;
    char *name;
};

/* A refcount decrement held back until the batch's mappings are synced. */
struct qcow2_deferred_free {
    uint64_t offset, len;
    int64_t addend;
    bool give_back;         /* qcow2_free_clusters: punch freed clusters */
};

struct qcow2 {
    struct blockdev bd;
    struct hostfile *file;
    /* The external data file (qcow2_data_file.c): guest data lies there at
     * its guest offset, clusters not refcounted; NULL: data is in file. */
    struct hostfile *data_file;
    char *image_data_file;              /* its name as the header records it (NULL: none) */
    char *data_file_name;               /* the name it was opened by (block status) */
    pthread_mutex_t lock;
    /* Reads, and writes in place, look a cluster up under lock and do their
     * host I/O after dropping it: meanwhile they hold this shared, and a
     * cluster that becomes free waits for them (exclusive) before it can be
     * reused or given back, so that no read returns another cluster's data
     * and no write lands in another cluster. */
    pthread_rwlock_t io_guard;

    /* header fields */
    uint32_t version;
    uint32_t cluster_bits;
    uint32_t crypt_method;
    uint64_t l1_table_offset;
    uint32_t l1_size;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    uint8_t header_tail[64];            /* unknown additional header fields, kept */
    uint32_t header_tail_len;
    int n_unknown_ext;
    struct qcow2_unknown_ext *unknown_ext;

    /* derived geometry */
    uint32_t cluster_size;
    uint64_t cluster_mask;              /* cluster_size - 1 */
    bool extended_l2;
    uint32_t l2_entry_size;             /* 8, or 16 with extended L2 */
    uint32_t l2_bits;                   /* log2(entries per L2 table) */
    uint32_t l2_size;                   /* entries per L2 table */
    uint32_t subclusters;               /* per cluster: 32 with extended L2, else 1 */
    uint32_t subcluster_bits;
    uint32_t subcluster_size;
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t refblock_bits;             /* log2(entries per refcount block) */
    uint32_t refblock_size;             /* entries per refcount block */
    uint32_t csize_shift, csize_mask;   /* compressed descriptor layout */
    uint64_t coffset_mask;

    /* tables in memory (host byte order) */
    uint64_t *l1_table;
    uint64_t *refcount_table;
    uint32_t refcount_table_size;       /* entries */
    uint32_t refcount_table_used;       /* entries up to the last block (what overlap checks scan) */

    struct qcow2_cache l2_cache;
    struct qcow2_cache refblock_cache;
    struct qcow2_zcache zcache;
    struct qcow2_readahead readahead;
    bool readahead_ready;               /* initialized: destroy it */

    uint64_t free_cluster_index;        /* search hint for the allocator */
    uint64_t free_byte_offset;          /* where the next compressed cluster may go */
    bool lazy_refcounts;                /* compat bit set and image writable */
    bool refcounts_after_mappings;      /* refcount updates wait in the cache: the mappings
                                         * they follow are on disk (qcow2_inplace_release) */
    bool dirty_written;                 /* the dirty bit is on disk */
    bool autoclear_cleared;             /* unknown autoclear bits were dropped */
    bool corrupt;                       /* refuse writes: see qcow2_signal_corruption */
    unsigned overlap_checks;            /* BDEV_OL_*: what a write is checked against */
    bool broken;                        /* an emptying failed half-way: write nothing more */
    bool unsynced_targets;              /* qcow2_order.c: raised refcounts or new content */
    bool unsynced_mappings;             /* qcow2_order.c: mappings written since the last sync */
    bool l2_batch;                      /* L2 updates stay dirty until the batch ends */
    bool l2_writeback;                  /* writable: the batch lasts until a flush */
    struct qcow2_deferred_free *deferred_frees;     /* decrements waiting for the batch end */
    size_t n_deferred_frees, cap_deferred_frees;
    bool deferred_may_free;             /* a deferred decrement may free a cluster ... */
    uint64_t deferred_free_low;         /* ... at this host offset or above */
    int give_back_merging;              /* inside a discard or zero write: freed clusters ... */
    uint64_t give_back_off, give_back_len;  /* ... wait here, adjacent ones merged (qcow2_give_back) */

    struct qcow2_snapshot *snapshots;   /* nb_snapshots entries */
    uint64_t snapshots_size;            /* bytes of the on-disk snapshot table */
    bool checking;                      /* opened with BDEV_CHECK */
    bool snapshots_unreadable;          /* (checking) the table could not be loaded */
    uint32_t nb_snapshots_header;       /* (checking) the header's count of that table */
    bool snapshots_bad_location;        /* (checking) its count or offset is invalid */
    struct error snapshots_err;         /* (checking) why, in QEMU's open words */
    uint32_t snapshots_discarded;       /* (check -r all) entries dropped */
    uint32_t snapshots_extra_cut;       /* (check -r all) entries whose extra data was cut */

    /* the bitmaps extension and the directory as on disk (qcow2_bitmap.c) */
    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_offset, bitmap_dir_size;
    struct qcow2_bitmap *bitmap_dir;    /* nb_bitmaps entries once loaded */
    bool bitmaps_stale;                 /* extension without its autoclear bit: dropped */
};

static inline struct qcow2 *qcow2_of(struct blockdev *bd) { return (struct qcow2 *)bd; }

/* qcow2_data_file.c: the external data file (incompatible bit 2, the
 * header extension naming it, autoclear bit 1 "raw external data"). */
static inline bool qcow2_has_data_file(const struct qcow2 *s)
{
    return s->incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
}
static inline bool qcow2_data_file_is_raw(const struct qcow2 *s)
{
    return s->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
}
/* Whether an uncompressed L2 entry has a host cluster. Offset 0 is one in
 * a data file (guest cluster 0 lies there), told from unallocated by the
 * COPIED flag, which data file clusters always carry (QEMU's rule). */
static inline bool qcow2_entry_has_host(const struct qcow2 *s, uint64_t entry)
{
    return !(entry & QCOW2_OFLAG_COMPRESSED) &&
           ((entry & QCOW2_L2E_OFFSET_MASK) ||
            (qcow2_has_data_file(s) && (entry & QCOW2_OFLAG_COPIED)));
}
/* Where guest data clusters are read and written. */
static inline struct hostfile *qcow2_data(const struct qcow2 *s)
{
    return s->data_file ? s->data_file : s->file;
}
/* The header extension's data (the parser calls it). */
int qcow2_data_file_parse_ext(struct qcow2 *s, const uint8_t *data, uint32_t len);
/* Opens the data file an image with the feature needs: opts->data_file, or
 * the name the header records; refuses a data file for an image without. */
int qcow2_data_file_open(struct qcow2 *s, const struct blockdev_open_opts *opts,
                         struct error *err);
void qcow2_data_file_close(struct qcow2 *s);
/* Where a new data cluster for guest cluster cluster_off goes: the same
 * offset in the data file (QEMU's identity mapping). */
static inline uint64_t qcow2_data_file_host(uint64_t cluster_off) { return cluster_off; }
/* QEMU's overlap check of a write of guest data to host offset off: none
 * when the data goes to the data file (its metadata is elsewhere). */
int qcow2_data_overlap_check(struct qcow2 *s, uint64_t off, uint64_t len, struct error *err);
bool qcow2_data_overlaps_metadata(struct qcow2 *s, uint64_t off, uint64_t len);
/* Operations QEMU refuses on an image with a data file (-ENOTSUP; what:
 * QEMU's message, or NULL for its bare "Operation not supported"). */
int qcow2_data_file_refuse(struct qcow2 *s, const char *what, struct error *err);
void qcow2_data_file_info_json(struct qcow2 *s, struct json_writer *w);
/* amend: a new recorded name (NULL: keep, "": none) and raw bit (0: keep,
 * -1: clear, 1: set):
 * whether the image allows them (QEMU's refusals), then the header change. */
int qcow2_data_file_amend_check(struct qcow2 *s, const char *name, int raw, struct error *err);
int qcow2_data_file_amend(struct qcow2 *s, const char *name, int raw, struct error *err);
/* create: makes the data file (size bytes, sparse) and records it in s. */
int qcow2_data_file_create(struct qcow2 *s, const char *name, bool raw, uint64_t size,
                           struct error *err);

static inline uint64_t qcow2_start_of_cluster(const struct qcow2 *s, uint64_t off)
{
    return off & ~s->cluster_mask;
}
static inline uint64_t qcow2_offset_in_cluster(const struct qcow2 *s, uint64_t off)
{
    return off & s->cluster_mask;
}
static inline uint64_t qcow2_size_to_clusters(const struct qcow2 *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}
/* L1 entries needed to map size bytes of guest data. */
static inline uint64_t qcow2_size_to_l1(const struct qcow2 *s, uint64_t size)
{
    uint32_t shift = s->cluster_bits + s->l2_bits;
    return (size + (1ULL << shift) - 1) >> shift;
}
/* Guest offset of the VM-state area: just after what L1 maps for the disk. */
static inline uint64_t qcow2_vmstate_offset(const struct qcow2 *s)
{
    return qcow2_size_to_l1(s, s->bd.size) << (s->cluster_bits + s->l2_bits);
}

/* qcow2_header.c */
int qcow2_header_parse(struct qcow2 *s, struct error *err);
/* Where a table of bytes bytes at offset may lie ("<what> offset invalid"). */
int qcow2_check_table_location(struct qcow2 *s, uint64_t offset, uint64_t bytes,
                               int64_t file_size, const char *what, struct error *err);
/* Rewrites the header cluster: fields, extensions, backing file name. */
int qcow2_header_write(struct qcow2 *s, struct error *err);
/* Writes just incompatible_features (dirty and corrupt bits). */
int qcow2_header_write_incompat(struct qcow2 *s, struct error *err);
/* Writes the 12 bytes of l1_size + l1_table_offset in one go. */
int qcow2_header_write_l1(struct qcow2 *s, struct error *err);
int qcow2_header_write_refcount_table(struct qcow2 *s, struct error *err);
void qcow2_geometry_init(struct qcow2 *s);
/* Marks the image corrupt (on disk too) and refuses further writes. */
int qcow2_signal_corruption(struct qcow2 *s, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Before the first write: clear autoclear bits, set the dirty bit (lazy refcounts). */
int qcow2_prepare_write(struct qcow2 *s, struct error *err);

/* qcow2_overlap.c */
/* Whether a data write to a host range must take the checked path: it
 * overlaps metadata the overlap checks cover, or they read snapshot tables
 * (inactive L2), which the lock-free fast path does not. */
bool qcow2_overlaps_metadata(struct qcow2 *s, uint64_t off, uint64_t len);
/* QEMU's check before a write to the image file: when [off, off+len) would
 * overwrite one of the structures the overlap-check options chose (less
 * ignore: the structure being written), marks the image corrupt and fails
 * with -EIO; when the check cannot be made (a snapshot's L1 table is
 * invalid, for the inactive-L2 check), fails with that error. */
int qcow2_pre_write_overlap_check(struct qcow2 *s, unsigned ignore, uint64_t off, uint64_t len,
                                  struct error *err);

/* qcow2_cache.c */
/* huge_pages: a cache filled through quickly (decompressed clusters) gets
 * its memory in transparent huge pages. */
int qcow2_cache_init(struct qcow2_cache *c, int count, uint32_t table_size, bool huge_pages);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Returns the table at host offset, reading it on a miss. With fresh, the
 * table is not read but zero-filled (a newly allocated cluster). */
int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **table, struct error *err);
/* Writes the byte range [start, start+len) of a cached table to the file,
 * or only marks it dirty when write-back is allowed (lazy refcounts). */
int qcow2_cache_update(struct qcow2 *s, struct qcow2_cache *c, uint8_t *table, uint32_t start,
                       uint32_t len, bool writeback, struct error *err);
int qcow2_cache_flush(struct qcow2 *s, struct qcow2_cache *c, struct error *err);
/* Whether some cached table is dirty (not yet written). */
bool qcow2_cache_dirty(const struct qcow2_cache *c);
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);
/* The cached table at offset, or NULL when it is not cached (no I/O). */
uint8_t *qcow2_cache_peek(struct qcow2_cache *c, uint64_t offset);
/* For caches whose tables are never dirty, filled outside their lock
 * (decompressed clusters): reserve takes the least recently used table out
 * of the cache, its content dropped (-1: every table is reserved); nothing
 * finds or reuses it until publish caches it for offset or release gives it
 * back unused. The caller fills qcow2_cache_table(c, i) meanwhile. */
int qcow2_cache_reserve(struct qcow2_cache *c);
uint8_t *qcow2_cache_table(const struct qcow2_cache *c, int i);
void qcow2_cache_publish(struct qcow2_cache *c, int i, uint64_t offset);
void qcow2_cache_release(struct qcow2_cache *c, int i);
/* Drops every entry (after a snapshot apply or a repair rewrote tables). */
void qcow2_cache_invalidate(struct qcow2_cache *c);

/* qcow2_refcount.c */
int qcow2_refcount_init(struct qcow2 *s, struct error *err);
/* The refcount table was replaced or loaded: finds its last block again. */
void qcow2_refcount_table_changed(struct qcow2 *s);
uint64_t qcow2_refcount_entry_get(const struct qcow2 *s, const uint8_t *block, uint64_t index);
void qcow2_refcount_entry_set(const struct qcow2 *s, uint8_t *block, uint64_t index, uint64_t value);
int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster_index, uint64_t *refcount,
                       struct error *err);
/* Adds addend (may be negative) to the refcount of every cluster that
 * overlaps [offset, offset+len). Freed clusters (refcount 0) are punched. */
int qcow2_update_refcount(struct qcow2 *s, uint64_t offset, uint64_t len, int64_t addend,
                          struct error *err);
/* Allocates n contiguous clusters (refcount 1); returns the host offset. */
int64_t qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, struct error *err);
/* Allocates up to n clusters from the host offset off on, as many as are
 * free there in a row (QEMU's qcow2_alloc_clusters_at); returns how many. */
int64_t qcow2_alloc_clusters_at(struct qcow2 *s, uint64_t off, uint64_t n, struct error *err);
/* Allocates len bytes for compressed data, packed at byte granularity. */
int64_t qcow2_alloc_bytes(struct qcow2 *s, uint32_t len, struct error *err);
int qcow2_free_clusters(struct qcow2 *s, uint64_t offset, uint64_t len, struct error *err);
/* Clusters a failed write allocated and did not use: the references go, the
 * space stays (QEMU's qcow2_alloc_cluster_abort, QCOW2_DISCARD_NEVER). The
 * refcounts may be what failed the write (the header's cluster seen free,
 * iotest 137): punching it would wipe the header. */
int qcow2_free_unused_clusters(struct qcow2 *s, uint64_t offset, uint64_t len, struct error *err);
/* A data cluster a discard or zero write let go of: freed like
 * qcow2_free_clusters, but given back to the host at once when this drop
 * frees it, as QEMU does (its file node's discard counters move then). */
int qcow2_free_discarded_cluster(struct qcow2 *s, uint64_t offset, struct error *err);
/* Freed host clusters go back to the host (the file's discard). Between
 * begin and end (a discard or zero write, the lock held) adjacent ones go
 * in one discard, as QEMU's qcow2 queues and merges them per request: the
 * host sees (and query-blockstats counts) one discard per run, not one per
 * cluster. Whatever waits goes out before a cluster is allocated (it may
 * be one of them) and at the end. */
void qcow2_give_back_begin(struct qcow2 *s);
void qcow2_give_back_end(struct qcow2 *s);
/* Writes dirty refcount blocks (lazy refcounts) and syncs. */
int qcow2_refcount_flush(struct qcow2 *s, struct error *err);

/* qcow2_order.c: syncs that keep dependent metadata writes in order. */
void qcow2_order_note_target(struct qcow2 *s);
int qcow2_order_before_mapping(struct qcow2 *s, struct error *err);
int qcow2_order_before_decrement(struct qcow2 *s, struct error *err);
/* Within a batch: keeps a decrement for the batch end (true) or not (false). */
bool qcow2_order_defer_free(struct qcow2 *s, uint64_t offset, uint64_t len, int64_t addend,
                            bool give_back);
/* Before allocating host clusters below end: when a deferred decrement
 * may free one of them, commits the batch so that the allocator can reuse
 * it (as QEMU reuses freed clusters at once) and returns 1: search again. */
int qcow2_order_before_reuse(struct qcow2 *s, uint64_t end, struct error *err);
void qcow2_order_batch_begin(struct qcow2 *s);
int qcow2_order_batch_end(struct qcow2 *s, struct error *err);
#define QCOW2_MAX_DEFERRED_FREES 1024
/* Writes every L2 update and deferred decrement now (flush, metadata reads). */
int qcow2_order_commit(struct qcow2 *s, struct error *err);
/* Ends the batch; returns ret when it is an error, else the batch's result. */
int qcow2_order_batch_finish(struct qcow2 *s, int ret, struct error *err);
/* Refcount blocks (*blocks) and table clusters (the sum is returned) that
 * count `clusters` clusters and themselves; generous: room for the table to
 * grow by half (QEMU's qcow2_refcount_metadata_size). */
uint64_t qcow2_refcount_metadata_clusters(uint64_t clusters, uint64_t cluster_size,
                                          uint32_t refcount_bits, bool generous, uint64_t *blocks);
/* Host offset just past the last cluster with a nonzero refcount. */
int64_t qcow2_refcount_end(struct qcow2 *s, struct error *err);

/* qcow2_cluster.c: L1/L2 mapping */
enum qcow2_sc_type qcow2_sc_type(const struct qcow2 *s, uint64_t l2_entry, uint64_t l2_bitmap,
                                 uint32_t sc_index);
/* Finds the L2 slot for guest offset off. With allocate, creates (or copies,
 * when shared with a snapshot) the L2 table; without, *table is NULL when
 * no L2 table exists. *index is the entry index inside the table. */
int qcow2_get_l2_slot(struct qcow2 *s, uint64_t off, bool allocate, uint8_t **table,
                      uint32_t *index, struct error *err);
void qcow2_l2_read_entry(const struct qcow2 *s, const uint8_t *table, uint32_t index,
                         uint64_t *entry, uint64_t *bitmap);
/* Stores an entry (and bitmap) into the table and writes it through. */
int qcow2_l2_write_entry(struct qcow2 *s, uint8_t *table, uint32_t index, uint64_t entry,
                         uint64_t bitmap, struct error *err);
/* Looks up the mapping of guest offset off without allocating anything. */
int qcow2_lookup(struct qcow2 *s, uint64_t off, uint64_t *entry, uint64_t *bitmap,
                 struct error *err);
/* The same from cached tables only: -EAGAIN when the L2 table is not cached
 * or the L1 entry looks wrong (qcow2_lookup then reads or reports it). */
int qcow2_lookup_cached(struct qcow2 *s, uint64_t off, uint64_t *entry, uint64_t *bitmap);
int qcow2_grow_l1(struct qcow2 *s, uint64_t min_size, struct error *err);
/* Host byte range a compressed descriptor points to. */
void qcow2_compressed_range(const struct qcow2 *s, uint64_t l2_entry, uint64_t *host_off,
                            uint32_t *len);

/* qcow2_compress.c */
/* Returns the compressed length, or -ENOSPC when the data does not shrink. */
int qcow2_compress(int type, const void *src, size_t src_len, void *dst, size_t dst_cap);
int qcow2_decompress(int type, const void *src, size_t src_len, void *dst, size_t dst_len);

/* qcow2_zcache.c */
int qcow2_zcache_init(struct qcow2_zcache *z, int count, uint32_t cluster_size);
void qcow2_zcache_destroy(struct qcow2_zcache *z);
/* Read with s->lock held, when the descriptor is looked up: a fill from a
 * descriptor read before a forget would cache bytes that may be reused. */
uint64_t qcow2_zcache_generation(struct qcow2 *s);
/* Copies len bytes at offset_in_cluster of the decompressed cluster;
 * generation as read when l2_entry was looked up. */
int qcow2_read_compressed(struct qcow2 *s, uint64_t l2_entry, uint64_t generation,
                          uint32_t offset_in_cluster, void *buf, size_t len, struct error *err);
/* The same from the cache only: -EAGAIN when it does not hold the cluster
 * or another thread holds the cache's lock. */
int qcow2_read_compressed_nowait(struct qcow2 *s, uint64_t l2_entry, uint32_t offset_in_cluster,
                                 void *buf, size_t len);
/* Decompresses a cluster into the cache unless it is there (read-ahead). */
int qcow2_zcache_fill(struct qcow2 *s, uint64_t l2_entry, uint64_t generation, struct error *err);
/* Drops decompressed clusters whose compressed data overlaps a freed host range. */
void qcow2_zcache_forget_range(struct qcow2 *s, uint64_t host_off, uint64_t len);
/* Drops one cluster: its descriptor no longer maps guest data (s->lock held). */
void qcow2_zcache_forget(struct qcow2 *s, uint64_t l2_entry);

/* qcow2_zcache_populate.c: the slots' memory faulted in ahead of use by a
 * thread of its own, so that filling a fresh slot does not wait for the
 * kernel to zero its pages; at most QCOW2_ZCACHE_POPULATE_AHEAD bytes
 * beyond the slots used so far. Caches smaller than that get no thread. */
#define QCOW2_ZCACHE_POPULATE_AHEAD (8u << 20)
void qcow2_zcache_populate_start(struct qcow2_zcache *z);
/* Lock held: slot i, taken to be filled, may be a fresh one. */
void qcow2_zcache_populate_note(struct qcow2_zcache *z, int i);
/* Bytes of the slots populated so far (tests). */
size_t qcow2_zcache_populated(struct qcow2_zcache *z);
void qcow2_zcache_populate_stop(struct qcow2_zcache *z);

/* qcow2_readahead.c */
void qcow2_readahead_init(struct qcow2 *s);
/* Stops and joins the workers (before the image's state is freed). */
void qcow2_readahead_destroy(struct qcow2 *s);
/* A read of compressed guest cluster guest_cluster: a stream that goes on
 * sequentially gets the next clusters queued. With nowait, it neither
 * blocks nor starts threads. */
void qcow2_readahead_note(struct qcow2 *s, uint64_t guest_cluster, bool nowait);

/* qcow2_io.c */
int qcow2_pread(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err);
int qcow2_pread_nowait(struct blockdev *bd, uint64_t off, void *buf, size_t len);
int qcow2_pwrite_nowait(struct blockdev *bd, uint64_t off, const void *buf, size_t len);
int qcow2_pwrite(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                 struct error *err);
int qcow2_pwrite_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                        struct error *err);
int qcow2_pwrite_compressed(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                            struct error *err);
int qcow2_discard(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err);
/* The same, at any guest offset (the VM-state area lies past the disk). */
int qcow2_read_at(struct qcow2 *s, uint64_t off, void *buf, size_t len, struct error *err);
int qcow2_write_at(struct qcow2 *s, uint64_t off, const void *buf, size_t len, struct error *err);
/* After growing from old to size over a longer backing file: the new area
 * reads as zeros (v3; QEMU zeroes it the same way). Lock not held. */
int qcow2_zero_grown_area(struct qcow2 *s, uint64_t old, uint64_t size, struct error *err);
/* Discards whole clusters of [off, off+len); the lock is held by the caller. */
int qcow2_discard_locked(struct qcow2 *s, uint64_t off, uint64_t len, bool make_zero,
                         struct error *err);

/* qcow2_empty.c: emptying after a commit, as QEMU's make_completely_empty */
bool qcow2_can_empty_completely(const struct qcow2 *s, uint32_t l1_clusters);
int qcow2_empty_completely(struct qcow2 *s, uint32_t l1_clusters, struct error *err);

/* qcow2_snapshot.c */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAPSHOTS_BYTES (64u << 20)
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024
#define QCOW2_SNAPSHOT_EXTRA_KNOWN 24   /* vm_state_size_large, disk_size, icount */

struct qcow2_snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id;
    char *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    int64_t icount;                     /* -1: not recorded */
    uint32_t extra_data_size;           /* as found in the table */
    uint8_t *unknown_extra;             /* extra data past the known fields, kept */
    uint32_t unknown_extra_len;
};

/* Reads the table at snapshots_offset (past the end of the file: zeros, as
 * QEMU reads it); the L1 tables are checked on use. Opened for check, a
 * table that cannot be read sets snapshots_unreadable instead of failing. */
int qcow2_snapshots_load(struct qcow2 *s, struct error *err);
void qcow2_snapshots_free(struct qcow2 *s);
/* check -r all on a table that could not be loaded: reads it as QEMU's
 * repair does, dropping what is too much (saying so on stderr, in QEMU's
 * words); snapshots_discarded and snapshots_extra_cut count what went. */
int qcow2_snapshots_load_repairing(struct qcow2 *s, struct error *err);
/* QEMU's check of a snapshot's L1 table, made when the snapshot is used
 * (not at open: a bad entry leaves the rest of the image usable). */
int qcow2_snapshot_check_l1(struct qcow2 *s, const struct qcow2_snapshot *sn, struct error *err);
/* The same where QEMU reports the table on stderr (error_report) and fails
 * the operation with "<failure>: <strerror>": both lines, as scripts read
 * them (iotest 080). */
int qcow2_snapshot_check_l1_reported(struct qcow2 *s, const struct qcow2_snapshot *sn,
                                     const char *failure, struct error *err);
/* The image tool to name in hints: qemu-img when we stand in for it. */
const char *qcow2_img_tool(void);
/* A deep copy of s's table with spare empty entries at the end. Extra data
 * past the fields we know is kept, as QEMU keeps it: another program wrote
 * it, and a rewrite of the table (upgrade, repair) must not lose it. */
struct qcow2_snapshot *qcow2_snapshots_copy(const struct qcow2 *s, uint32_t spare);
void qcow2_snapshot_list_free_internal(struct qcow2_snapshot *list, uint32_t count);
/* Serializes a snapshot table as QEMU writes it (at least the 24 known bytes
 * of extra data per entry; each entry's extra_data_size becomes what is written). */
int qcow2_snapshots_serialize(struct qcow2_snapshot *list, uint32_t count, uint8_t **buf,
                              uint64_t *len, struct error *err);

/* qcow2_snapshot_refs.c: snapshot metadata updated in place, in QEMU's
 * order (so clusters land where QEMU puts them); a kill leaves at worst leaks. */
/* Writes out batched updates and turns batching off until qcow2_inplace_end. */
int qcow2_inplace_begin(struct qcow2 *s, bool *batch, struct error *err);
void qcow2_inplace_end(struct qcow2 *s, bool batch);
/* Writes the whole in-memory active L1 table to its place. */
int qcow2_inplace_write_l1(struct qcow2 *s, struct error *err);
/* Whether everything active L1 entries [0, limit) reference can take one
 * more reference (refused before anything changes otherwise). */
int qcow2_inplace_check_room(struct qcow2 *s, uint32_t limit, struct error *err);
/* A new snapshot shares active L1 entries [0, limit): +1 on their L2 tables
 * and everything these reference, COPIED flags cleared. */
int qcow2_inplace_share_active(struct qcow2 *s, uint32_t limit, struct error *err);
/* A deleted snapshot's L1 table (at l1_offset) and its tree: -1 on all. */
int qcow2_inplace_release(struct qcow2 *s, const uint64_t *l1, uint32_t l1_size,
                          uint64_t l1_offset, struct error *err);
/* COPIED flags of the active tables set where the refcount is 1. */
int qcow2_inplace_fix_copied(struct qcow2 *s, struct error *err);
/* Writes list (taken over) to new clusters, switches the header to it and
 * frees the old table (a failure there leaks it, reported as QEMU does). */
int qcow2_inplace_write_snapshots(struct qcow2 *s, struct qcow2_snapshot *list, uint32_t count,
                                  struct error *err);

/* qcow2_bitmap.c: persistent dirty bitmaps (the bitmaps extension). */
/* The extension's data, from the header parser. */
int qcow2_bitmaps_parse_ext(struct qcow2 *s, const uint8_t *data, uint32_t len, struct error *err);
/* Loads the bitmaps into s->bd (opened for check: the directory only, and
 * a broken one is left to check); a writable open flags them in use. */
int qcow2_bitmaps_open(struct qcow2 *s, unsigned flags, struct error *err);
void qcow2_bitmaps_free(struct qcow2 *s);
/* Calls ref for every host range the bitmaps use (directory, tables,
 * data); returns the number of corrupt entries found. */
int qcow2_bitmaps_count_refs(struct qcow2 *s, void (*ref)(void *opaque, uint64_t off, uint64_t len),
                             void *opaque);
void qcow2_bitmaps_info_json(struct qcow2 *s, struct json_writer *w);
int qcow2_bitmap_can_store(struct blockdev *bd, const char *name, uint32_t granularity,
                           struct error *err);
int qcow2_bitmap_remove(struct blockdev *bd, const char *name, struct error *err);
int qcow2_bitmaps_store(struct blockdev *bd, struct error *err);

/* qcow2_check.c */
/* Rebuilds the refcounts of an image left dirty by lazy refcounts. */
int qcow2_repair_dirty(struct qcow2 *s, struct error *err);

/* A metadata transaction (qcow2_check.c): a new refcount state computed in
 * memory, new tables written to clusters that are free both before and after
 * it, then made live by one header write (bytes 24..71, or ..103 in v3:
 * size, L1, refcount table, snapshot table, features). A kill at any point
 * leaves either the old or the new image, consistent and without leaks. */
struct qcow2_txn {
    uint64_t *rc;                       /* new refcount of every cluster */
    uint64_t *old_rc;                   /* refcounts before: never allocate over them */
    uint64_t n;                         /* entries of both arrays */
    uint64_t hint;                      /* first cluster that may be free */
    /* the header to switch to */
    uint64_t size;
    uint64_t *l1;                       /* new active L1 (host order), owned; NULL: keep */
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t snapshots_offset;
    uint32_t nb_snapshots;
    uint64_t snapshots_size;
    struct qcow2_snapshot *snapshots;   /* new list (owned) when set_snapshots was called */
    bool new_snapshots;
    /* amend of the refcount width: a refcount too large for it is refused
     * in qemu-img's words, and each pass of the layout is reported, numbered
     * as QEMU numbers its walks over the refcount table (iotest 112) */
    bool width_change;
    void (*passes)(void *opaque, uint64_t done, uint64_t total);
    void *passes_opaque;
    int layout_passes;                  /* passes the layout took (set by the commit) */
};

/* An empty transaction on s's current layout (no refcounts loaded). */
void qcow2_txn_init(struct qcow2 *s, struct qcow2_txn *t);
/* Starts from the on-disk refcounts (writes back lazy ones first). */
int qcow2_txn_begin(struct qcow2 *s, struct qcow2_txn *t, struct error *err);
void qcow2_txn_abort(struct qcow2_txn *t);
/* Adds delta to the count of every cluster overlapping [off, off+len). */
int qcow2_txn_ref(struct qcow2 *s, struct qcow2_txn *t, uint64_t off, uint64_t len, int delta,
                  struct error *err);
/* n contiguous clusters free in both states; their count becomes 1. */
int64_t qcow2_txn_alloc(struct qcow2 *s, struct qcow2_txn *t, uint64_t n, struct error *err);
/* Adds delta per reference an L2 table makes (data and compressed clusters). */
int qcow2_txn_ref_l2_data(struct qcow2 *s, struct qcow2_txn *t, const uint8_t *l2, int delta,
                          struct error *err);
/* delta for every L2 table of an L1 table and everything they reference
 * (the L1 table's own clusters are not counted). */
int qcow2_txn_ref_l1_tree(struct qcow2 *s, struct qcow2_txn *t, const uint64_t *l1,
                          uint32_t l1_size, int delta, struct error *err);
/* Makes t->l1 (or the live L1 when t->l1 is NULL) the new active table with
 * COPIED flags matching the new counts, copying L2 tables whose flags change.
 * Returns the number of L1 and L2 entries whose flag was wrong. */
int64_t qcow2_txn_fix_copied(struct qcow2 *s, struct qcow2_txn *t, struct error *err);
/* Stages a new snapshot list: it is serialized to fresh clusters, the old table freed. */
int qcow2_txn_set_snapshots(struct qcow2 *s, struct qcow2_txn *t, struct qcow2_snapshot *list,
                            uint32_t count, struct error *err);
/* Writes the new refcount structure and switches the header; ends t either way. */
int qcow2_txn_commit(struct qcow2 *s, struct qcow2_txn *t, struct error *err);
/* Reads an L1 table of l1_size entries at offset (host order). */
int qcow2_read_l1(struct qcow2 *s, uint64_t offset, uint32_t l1_size, uint64_t **out,
                  struct error *err);

#endif
