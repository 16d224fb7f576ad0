/* Cache of cluster-sized metadata tables (L2 tables, refcount blocks).
 * Write-through: an update goes to the file at once, so the order of
 * metadata writes is the order of the code (see qcow2_int.h). Refcount
 * blocks under lazy refcounts and L2 updates within a batch are written back
 * later. Every L2 write is a mapping: qcow2_order.c decides if a sync must
 * precede it. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "block/overlap_check.h"
#include "block/qcow2_int.h"

static uint32_t bucket_of(const struct qcow2_cache *c, uint64_t offset)
{
    /* Offsets are cluster aligned: mix the high bits down. */
    uint64_t h = (offset >> 9) * 0x9e3779b97f4a7c15ULL;
    return (uint32_t)(h >> 32) & c->bucket_mask;
}

static uint8_t *table_of(const struct qcow2_cache *c, int i)
{
    return c->tables + (size_t)i * c->table_size;
}

static void lru_unlink(struct qcow2_cache *c, int i)
{
    struct qcow2_cache_entry *e = &c->entries[i];
    if (e->lru_prev >= 0) {
        c->entries[e->lru_prev].lru_next = e->lru_next;
    } else {
        c->lru_head = e->lru_next;
    }
    if (e->lru_next >= 0) {
        c->entries[e->lru_next].lru_prev = e->lru_prev;
    } else {
        c->lru_tail = e->lru_prev;
    }
}

static void lru_push(struct qcow2_cache *c, int i, bool at_head)
{
    struct qcow2_cache_entry *e = &c->entries[i];
    if (at_head) {
        e->lru_prev = -1;
        e->lru_next = c->lru_head;
        if (c->lru_head >= 0) {
            c->entries[c->lru_head].lru_prev = i;
        }
        c->lru_head = i;
        if (c->lru_tail < 0) {
            c->lru_tail = i;
        }
    } else {
        e->lru_next = -1;
        e->lru_prev = c->lru_tail;
        if (c->lru_tail >= 0) {
            c->entries[c->lru_tail].lru_next = i;
        }
        c->lru_tail = i;
        if (c->lru_head < 0) {
            c->lru_head = i;
        }
    }
}

/* Marks table i most recently used. Every lookup on the read path does this:
 * a table already at the head (a run of reads in one table) stays put
 * without writing to the list. */
static void lru_touch(struct qcow2_cache *c, int i)
{
    if (c->lru_head != i) {
        lru_unlink(c, i);
        lru_push(c, i, true);
    }
}

static int hash_find(const struct qcow2_cache *c, uint64_t offset)
{
    for (int i = c->buckets[bucket_of(c, offset)]; i >= 0; i = c->entries[i].hash_next) {
        if (c->entries[i].offset == offset) {
            return i;
        }
    }
    return -1;
}

/* Every change of an entry's dirty bit goes through here: dirty_count lets
 * a flush (before each refcount decrement, qcow2_order.c) skip a cache with
 * nothing dirty, and stop once it has written all there is, instead of
 * scanning thousands of entries every time. */
static void set_dirty(struct qcow2_cache *c, int i, bool dirty)
{
    c->dirty_count += (int)dirty - (int)c->entries[i].dirty;
    c->entries[i].dirty = dirty;
}

static void hash_remove(struct qcow2_cache *c, int i)
{
    int *link = &c->buckets[bucket_of(c, c->entries[i].offset)];
    while (*link >= 0 && *link != i) {
        link = &c->entries[*link].hash_next;
    }
    if (*link == i) {
        *link = c->entries[i].hash_next;
    }
    c->entries[i].offset = 0;
    set_dirty(c, i, false);
}

static void hash_insert(struct qcow2_cache *c, int i, uint64_t offset)
{
    uint32_t b = bucket_of(c, offset);
    c->entries[i].offset = offset;
    c->entries[i].hash_next = c->buckets[b];
    c->buckets[b] = i;
}

#define HUGE_PAGE (2u << 20)

/* The tables in one block. With huge_pages, a large one asks for
 * transparent huge pages: the first use of each table then costs no page
 * fault of its own (16 per 64 KiB table otherwise, costly under nested
 * virtualization), and memory is still only taken, 2 MiB at a time, where
 * tables are used. */
static uint8_t *alloc_tables(size_t bytes, bool huge_pages)
{
    if (!huge_pages || bytes < HUGE_PAGE) {
        return malloc(bytes);
    }
    size_t rounded = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    uint8_t *p = aligned_alloc(HUGE_PAGE, rounded);
    if (p) {
        madvise(p, rounded, MADV_HUGEPAGE);     /* advice: failure changes nothing */
    }
    return p;
}

int qcow2_cache_init(struct qcow2_cache *c, int count, uint32_t table_size, bool huge_pages)
{
    memset(c, 0, sizeof(*c));
    uint32_t nbuckets = 1;
    while (nbuckets < (uint32_t)count * 2) {
        nbuckets <<= 1;
    }
    c->count = count;
    c->table_size = table_size;
    c->bucket_mask = nbuckets - 1;
    c->tables = alloc_tables((size_t)count * table_size, huge_pages);
    c->entries = calloc((size_t)count, sizeof(*c->entries));
    c->buckets = malloc(nbuckets * sizeof(*c->buckets));
    if (!c->tables || !c->entries || !c->buckets) {
        return -ENOMEM;
    }
    memset(c->buckets, 0xff, nbuckets * sizeof(*c->buckets));
    c->lru_head = c->lru_tail = -1;
    for (int i = 0; i < count; i++) {
        c->entries[i].hash_next = -1;
        lru_push(c, i, false);
    }
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    free(c->tables);
    free(c->entries);
    free(c->buckets);
    memset(c, 0, sizeof(*c));
}

/* What must precede writing len bytes at offset of a table of c: the
 * overlap check (the table itself is no overlap) and the order of writes. */
static int before_write(struct qcow2 *s, struct qcow2_cache *c, uint64_t offset, uint32_t len,
                        struct error *err)
{
    bool l2 = c == &s->l2_cache;
    int ret = qcow2_pre_write_overlap_check(s, l2 ? BDEV_OL_ACTIVE_L2 : BDEV_OL_REFCOUNT_BLOCK,
                                            offset, len, err);
    if (ret < 0) {
        return ret;
    }
    return l2 ? qcow2_order_before_mapping(s, err) : 0;
}

static int write_entry(struct qcow2 *s, struct qcow2_cache *c, int i, struct error *err)
{
    struct qcow2_cache_entry *e = &c->entries[i];
    int ret = before_write(s, c, e->offset, c->table_size, err);
    if (ret < 0) {
        return ret;
    }
    hostfile_event(s->file, c == &s->l2_cache ? BLKDBG_L2_UPDATE : BLKDBG_REFBLOCK_UPDATE_PART);
    ret = hostfile_pwrite(s->file, e->offset, table_of(c, i), c->table_size);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write metadata at 0x%" PRIx64, e->offset);
    }
    set_dirty(c, i, false);
    return 0;
}

int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **table, struct error *err)
{
    int i = hash_find(c, offset);
    if (i < 0) {
        i = c->lru_tail;
        if (c->entries[i].offset) {
            if (c->entries[i].dirty) {
                int ret = write_entry(s, c, i, err);
                if (ret < 0) {
                    return ret;
                }
            }
            hash_remove(c, i);
        }
        if (!fresh) {
            if (c == &s->l2_cache) {
                hostfile_event(s->file, BLKDBG_L2_LOAD);   /* refblock_load: at every lookup */
            }
            int ret = hostfile_pread(s->file, offset, table_of(c, i), c->table_size);
            if (ret < 0) {
                return error_set_errno(err, ret, "Could not read metadata at 0x%" PRIx64, offset);
            }
        }
        hash_insert(c, i, offset);
    }
    if (fresh) {
        memset(table_of(c, i), 0, c->table_size);
    }
    lru_touch(c, i);
    *table = table_of(c, i);
    return 0;
}

uint8_t *qcow2_cache_table(const struct qcow2_cache *c, int i)
{
    return table_of(c, i);
}

int qcow2_cache_reserve(struct qcow2_cache *c)
{
    int i = c->lru_tail;
    if (i < 0) {
        return -1;
    }
    if (c->entries[i].offset) {
        hash_remove(c, i);
    }
    lru_unlink(c, i);
    return i;
}

void qcow2_cache_publish(struct qcow2_cache *c, int i, uint64_t offset)
{
    hash_insert(c, i, offset);
    lru_push(c, i, true);
}

void qcow2_cache_release(struct qcow2_cache *c, int i)
{
    lru_push(c, i, false);  /* reuse it first */
}

int qcow2_cache_update(struct qcow2 *s, struct qcow2_cache *c, uint8_t *table, uint32_t start,
                       uint32_t len, bool writeback, struct error *err)
{
    size_t pos = (size_t)(table - c->tables);
    int i = (int)(pos / c->table_size);
    if (table < c->tables || i >= c->count || pos % c->table_size || !c->entries[i].offset) {
        return error_set(err, -EINVAL, "internal error: table not in cache");
    }
    if (writeback) {
        set_dirty(c, i, true);
        return 0;
    }
    uint64_t offset = c->entries[i].offset;
    int ret = before_write(s, c, offset + start, len, err);
    if (ret < 0) {
        set_dirty(c, i, true);
        return ret;
    }
    hostfile_event(s->file, c == &s->l2_cache ? BLKDBG_L2_UPDATE : BLKDBG_REFBLOCK_UPDATE_PART);
    ret = hostfile_pwrite(s->file, offset + start, table + start, len);
    if (ret < 0) {
        set_dirty(c, i, true);          /* memory is ahead of the disk: retried at flush */
        return error_set_errno(err, ret, "Could not write metadata at 0x%" PRIx64, offset + start);
    }
    return 0;
}

bool qcow2_cache_dirty(const struct qcow2_cache *c)
{
    return c->dirty_count > 0;
}

int qcow2_cache_flush(struct qcow2 *s, struct qcow2_cache *c, struct error *err)
{
    for (int i = 0; i < c->count && c->dirty_count > 0; i++) {
        if (c->entries[i].offset && c->entries[i].dirty) {
            int ret = write_entry(s, c, i, err);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

uint8_t *qcow2_cache_peek(struct qcow2_cache *c, uint64_t offset)
{
    int i = hash_find(c, offset);
    if (i < 0) {
        return NULL;
    }
    lru_touch(c, i);
    return table_of(c, i);
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    int i = hash_find(c, offset);
    if (i >= 0) {
        hash_remove(c, i);
        lru_unlink(c, i);
        lru_push(c, i, false);  /* reuse it first */
    }
}

void qcow2_cache_invalidate(struct qcow2_cache *c)
{
    for (int i = 0; i < c->count; i++) {
        if (c->entries[i].offset) {
            hash_remove(c, i);
        }
    }
}
