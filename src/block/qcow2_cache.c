/* Cache of cluster-sized metadata tables (L2 tables, refcount blocks).
 * Write-through: an update goes to the file at once, so the order of
 * metadata writes is the order of the code (see qcow2_int.h). Only refcount
 * blocks under lazy refcounts are written back later. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"

int qcow2_cache_init(struct qcow2_cache *c, int count, uint32_t table_size)
{
    c->count = count;
    c->table_size = table_size;
    c->lru_clock = 0;
    c->entries = calloc((size_t)count, sizeof(*c->entries));
    if (!c->entries) {
        return -ENOMEM;
    }
    for (int i = 0; i < count; i++) {
        c->entries[i].table = malloc(table_size);
        if (!c->entries[i].table) {
            return -ENOMEM;
        }
    }
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    for (int i = 0; c->entries && i < c->count; i++) {
        free(c->entries[i].table);
    }
    free(c->entries);
    c->entries = NULL;
}

static struct qcow2_cache_entry *entry_of(struct qcow2_cache *c, const uint8_t *table)
{
    for (int i = 0; i < c->count; i++) {
        if (c->entries[i].table == table) {
            return &c->entries[i];
        }
    }
    return NULL;
}

static int write_entry(struct qcow2 *s, struct qcow2_cache *c, struct qcow2_cache_entry *e,
                       struct error *err)
{
    int ret = hostfile_pwrite(s->file, e->offset, e->table, c->table_size);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write metadata at 0x%" PRIx64, e->offset);
    }
    e->dirty = false;
    return 0;
}

static struct qcow2_cache_entry *find_victim(struct qcow2_cache *c)
{
    struct qcow2_cache_entry *victim = &c->entries[0];
    for (int i = 0; i < c->count; i++) {
        if (c->entries[i].offset == 0) {
            return &c->entries[i];
        }
        if (c->entries[i].lru < victim->lru) {
            victim = &c->entries[i];
        }
    }
    return victim;
}

int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **table, struct error *err)
{
    for (int i = 0; i < c->count; i++) {
        struct qcow2_cache_entry *e = &c->entries[i];
        if (e->offset == offset) {
            e->lru = ++c->lru_clock;
            if (fresh) {
                memset(e->table, 0, c->table_size);
            }
            *table = e->table;
            return 0;
        }
    }
    struct qcow2_cache_entry *e = find_victim(c);
    if (e->dirty) {
        int ret = write_entry(s, c, e, err);
        if (ret < 0) {
            return ret;
        }
    }
    e->offset = 0;
    if (fresh) {
        memset(e->table, 0, c->table_size);
    } else {
        int ret = hostfile_pread(s->file, offset, e->table, c->table_size);
        if (ret < 0) {
            return error_set_errno(err, ret, "Could not read metadata at 0x%" PRIx64, offset);
        }
    }
    e->offset = offset;
    e->lru = ++c->lru_clock;
    *table = e->table;
    return 0;
}

int qcow2_cache_update(struct qcow2 *s, struct qcow2_cache *c, uint8_t *table, uint32_t start,
                       uint32_t len, bool writeback, struct error *err)
{
    struct qcow2_cache_entry *e = entry_of(c, table);
    if (!e || e->offset == 0) {
        return error_set(err, -EINVAL, "internal error: table not in cache");
    }
    if (writeback) {
        e->dirty = true;
        return 0;
    }
    int ret = hostfile_pwrite(s->file, e->offset + start, table + start, len);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write metadata at 0x%" PRIx64,
                               e->offset + start);
    }
    return 0;
}

int qcow2_cache_flush(struct qcow2 *s, struct qcow2_cache *c, struct error *err)
{
    for (int i = 0; i < c->count; i++) {
        if (c->entries[i].offset && c->entries[i].dirty) {
            int ret = write_entry(s, c, &c->entries[i], err);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    for (int i = 0; i < c->count; i++) {
        if (c->entries[i].offset == offset) {
            c->entries[i].offset = 0;
            c->entries[i].dirty = false;
        }
    }
}

void qcow2_cache_invalidate(struct qcow2_cache *c)
{
    for (int i = 0; i < c->count; i++) {
        c->entries[i].offset = 0;
        c->entries[i].dirty = false;
    }
}
