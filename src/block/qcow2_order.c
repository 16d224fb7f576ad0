/* Write ordering against power loss. A kill leaves every pwrite in the
 * page cache, but a power loss keeps any subset of the writes since the
 * last fdatasync. Two dependencies must survive that:
 *  - a mapping (an L1, L2 or refcount-table entry) may reach the disk only
 *    after what it points to: the cluster's raised refcount and the
 *    cluster's new content (copied-on-write data, a new table);
 *  - a refcount may drop only after the mapping that stopped using the
 *    cluster is on the disk, or the cluster is reused while a stale
 *    mapping still points to it.
 * So the code notes writes that mappings depend on (qcow2_order_note_target)
 * and mappings written (s->unsynced_mappings), and syncs only when a write
 * of the other kind is about to follow. Within a batch L2 updates stay dirty
 * in the cache and decrements wait; they go out together behind one or two
 * syncs. A writable image is one long batch, committed by a flush, a cache
 * eviction, or anything that reads metadata from the disk (through
 * qcow2_refcount_flush); a read-only one batches single operations.
 * QEMU's cache dependencies do the same. */
#include <errno.h>
#include <stdlib.h>

#include "block/qcow2_int.h"

static int sync_file(struct qcow2 *s, struct error *err)
{
    hostfile_event(s->file, BLKDBG_FLUSH_TO_DISK);
    int ret = hostfile_flush(s->file);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not flush '%s'", s->bd.filename);
    }
    s->unsynced_targets = false;
    s->unsynced_mappings = false;
    return 0;
}

void qcow2_order_note_target(struct qcow2 *s)
{
    s->unsynced_targets = true;
}

/* Raised refcounts left dirty in the cache within a batch are targets of
 * the mapping about to be written: they go out first (under lazy refcounts
 * they wait for close, and a crash is repaired on open). */
static int write_raised_refcounts(struct qcow2 *s, struct error *err)
{
    if (s->lazy_refcounts || !qcow2_cache_dirty(&s->refblock_cache)) {
        return 0;
    }
    s->unsynced_targets = true;
    return qcow2_cache_flush(s, &s->refblock_cache, err);
}

int qcow2_order_before_mapping(struct qcow2 *s, struct error *err)
{
    int ret = write_raised_refcounts(s, err);
    if (ret == 0 && s->unsynced_targets) {
        ret = sync_file(s, err);
    }
    if (ret == 0) {
        s->unsynced_mappings = true;    /* the caller writes one now */
    }
    return ret;
}

int qcow2_order_before_decrement(struct qcow2 *s, struct error *err)
{
    int ret = qcow2_cache_flush(s, &s->l2_cache, err);
    if (ret == 0 && s->unsynced_mappings) {
        ret = sync_file(s, err);
    }
    return ret;
}

/* Whether the decrement deferred for [offset, offset+len) may bring a
 * cluster's refcount to zero (other decrements of the same cluster pending
 * are not counted: such a cluster is then reused after the next commit). */
static void note_may_free(struct qcow2 *s, uint64_t offset, uint64_t len, int64_t addend)
{
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    for (uint64_t ci = offset >> s->cluster_bits; ci <= last; ci++) {
        uint64_t rc;
        if (qcow2_get_refcount(s, ci, &rc, NULL) < 0 || rc <= (uint64_t)-addend) {
            uint64_t off = ci << s->cluster_bits;
            if (!s->deferred_may_free || off < s->deferred_free_low) {
                s->deferred_free_low = off;
            }
            s->deferred_may_free = true;
            return;
        }
    }
}

bool qcow2_order_defer_free(struct qcow2 *s, uint64_t offset, uint64_t len, int64_t addend,
                            bool give_back)
{
    if (!s->l2_batch) {
        return false;
    }
    if (s->n_deferred_frees == s->cap_deferred_frees) {
        size_t cap = s->cap_deferred_frees ? s->cap_deferred_frees * 2 : 16;
        struct qcow2_deferred_free *d = realloc(s->deferred_frees, cap * sizeof(*d));
        if (!d) {
            return false;       /* then it happens now, behind its own syncs */
        }
        s->deferred_frees = d;
        s->cap_deferred_frees = cap;
    }
    s->deferred_frees[s->n_deferred_frees++] =
        (struct qcow2_deferred_free){ offset, len, addend, give_back };
    note_may_free(s, offset, len, addend);
    return true;
}

int qcow2_order_before_reuse(struct qcow2 *s, uint64_t end, struct error *err)
{
    if (!s->deferred_may_free || s->deferred_free_low >= end) {
        return 0;
    }
    int ret = qcow2_order_commit(s, err);
    return ret < 0 ? ret : 1;
}

void qcow2_order_batch_begin(struct qcow2 *s)
{
    s->l2_batch = true;
}

int qcow2_order_batch_finish(struct qcow2 *s, int ret, struct error *err)
{
    int end = qcow2_order_batch_end(s, ret < 0 ? NULL : err);
    return ret < 0 ? ret : end;
}

/* Writable images stay in one batch from open to flush: like QEMU's
 * writeback metadata cache, the syncs come with guest flushes (and cache
 * evictions), not with every request. A long queue of decrements is
 * committed early, so discarded space comes back without a guest flush. */
int qcow2_order_batch_end(struct qcow2 *s, struct error *err)
{
    s->l2_batch = s->l2_writeback;
    if (s->l2_writeback && s->n_deferred_frees < QCOW2_MAX_DEFERRED_FREES) {
        return 0;
    }
    return qcow2_order_commit(s, err);
}

/* The L2 updates go out behind one sync, then (behind another) the
 * decrements they allow. A failure leaks clusters at worst. */
int qcow2_order_commit(struct qcow2 *s, struct error *err)
{
    int ret = s->n_deferred_frees ? qcow2_order_before_decrement(s, err)
                                  : qcow2_cache_flush(s, &s->l2_cache, err);
    bool batch = s->l2_batch;
    s->l2_batch = false;        /* the decrements below happen now */
    for (size_t i = 0; i < s->n_deferred_frees && ret == 0; i++) {
        const struct qcow2_deferred_free *d = &s->deferred_frees[i];
        ret = d->give_back ? qcow2_free_clusters(s, d->offset, d->len, err)
                           : qcow2_update_refcount(s, d->offset, d->len, d->addend, err);
    }
    s->n_deferred_frees = 0;
    s->deferred_may_free = false;
    s->l2_batch = batch;
    return ret;
}
