/* block-commit on a running disk. Intermediate (top below the active
 * layer): what the layers [top, base) define is copied into base (guest
 * writes go to the active layer and never meet the copy), then the layer
 * above top records base as its backing file and the chain is reopened.
 * Active (top is the disk's top), as QEMU's mirror-based commit: every
 * range the layers above base define is marked dirty, guest writes mark
 * theirs (once done, so a copy that read before a write sees its mark
 * again), the job copies dirty granules until none is left and goes ready;
 * complete copies the rest with the disk drained and switches the disk to
 * base. */
#include "block/block_job_int.h"
#include "block/block_int.h"

#include <errno.h>
#include <stdlib.h>

static bool is_active(const struct block_job *job)
{
    return job->p.top_depth == 0;
}

static void dirty_after_write(void *opaque, uint64_t off, uint64_t len)
{
    struct block_job *job = opaque;
    pthread_mutex_lock(&job->lock);
    for (uint64_t i = off / job->bitmap.granule; len && i <= (off + len - 1) / job->bitmap.granule; i++) {
        if (i < job->bitmap.count && !job_bitmap_get(&job->bitmap, i)) {
            job_bitmap_put(&job->bitmap, i, true);
            job->len += job->bitmap.granule;
        }
    }
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&job->lock);
}

static int commit_setup(struct block_job *job, struct error *err)
{
    int n = job_chain_length(job);
    const struct block_job_params *p = &job->p;
    if (p->top_depth < 0 || p->base_depth <= p->top_depth || p->base_depth >= n) {
        return error_set(err, -EINVAL, "Base '%d' must be below top '%d' in a chain of %d images",
                         p->base_depth, p->top_depth, n);
    }
    if (is_active(job) && blockdev_is_read_only(job->top)) {
        return error_set(err, -EROFS, "Device is read only: an active commit writes to it");
    }
    job->src = job_layer(job, p->top_depth);
    int ret = blockdev_reopen_layer_rw(job_layer(job, p->base_depth), &job->dst, err);
    uint64_t size = blockdev_size(job->src);
    if (ret == 0 && blockdev_size(job->dst) < size) {
        ret = blockdev_truncate(job->dst, size, false, PREALLOC_OFF, err);
    }
    job->buf = malloc(JOB_CHUNK);
    if (ret == 0 && (!job->buf || (is_active(job) && job_bitmap_init(&job->bitmap, size, JOB_GRANULE, false) < 0))) {
        ret = error_set(err, -ENOMEM, "out of memory");
    }
    if (ret < 0) {
        return ret;
    }
    if (is_active(job)) {
        job_watch(job, NULL, dirty_after_write);
    } else {
        job->len = size;
    }
    return 0;
}

/* Calls fn for each run of src that the layers [0, depth) below it define. */
static int for_each_defined(struct block_job *job, int depth, bool (*fn)(struct block_job *, uint64_t, uint64_t,
                                                                          const struct block_status *, int *, struct error *),
                            struct error *err)
{
    uint64_t size = blockdev_size(job->src);
    for (uint64_t off = 0; off < size; ) {
        struct block_status st;
        int ret = blockdev_block_status(job->src, off, size - off > JOB_CHUNK ? JOB_CHUNK : size - off, &st, err);
        if (ret < 0) {
            return ret;
        }
        if (st.len == 0) {
            return error_set(err, -EIO, "Block status made no progress at %llu", (unsigned long long)off);
        }
        if ((st.flags & BDEV_STATUS_ALLOCATED) && st.depth < depth) {
            if (!fn(job, off, st.len, &st, &ret, err)) {
                return ret;
            }
        } else if (!is_active(job) && (ret = block_job_step(job, st.len, 0)) < 0) {
            return ret;             /* nothing to copy there, but progress */
        }
        off += st.len;
    }
    return 0;
}

static bool copy_run(struct block_job *job, uint64_t off, uint64_t len, const struct block_status *st, int *ret,
                     struct error *err)
{
    if ((st->flags & BDEV_STATUS_ZERO) && !(st->flags & BDEV_STATUS_DATA)) {
        *ret = blockdev_pwrite_zeroes(job->dst, off, len, 0, err);
    } else {
        *ret = job_read(job, job->src, off, job->buf, len, err);
        if (*ret == 0) {
            *ret = job_write(job, job->dst, off, job->buf, len, err);
        }
    }
    if (*ret == 0) {
        *ret = block_job_step(job, len, len);
    }
    return *ret == 0;
}

static bool mark_run(struct block_job *job, uint64_t off, uint64_t len, const struct block_status *st, int *ret,
                     struct error *err)
{
    dirty_after_write(job, off, len);
    return true;
}

/* Copies one dirty granule (taken off the set first: a write meanwhile
 * marks it again). *left tells whether any was dirty. */
static int copy_dirty(struct block_job *job, uint64_t *next, bool *left, struct error *err)
{
    pthread_mutex_lock(&job->lock);
    uint64_t i = job_bitmap_next(&job->bitmap, *next);
    if (i == job->bitmap.count) {
        i = job_bitmap_next(&job->bitmap, 0);
    }
    *left = i < job->bitmap.count;
    if (*left) {
        job_bitmap_put(&job->bitmap, i, false);
    }
    pthread_mutex_unlock(&job->lock);
    if (!*left) {
        return 0;
    }
    *next = i + 1;
    uint64_t off = i * job->bitmap.granule, size = blockdev_size(job->src);
    size_t len = size - off < job->bitmap.granule ? size - off : job->bitmap.granule;
    int ret = job_read(job, job->src, off, job->buf, len, err);
    if (ret == 0) {
        ret = job_write(job, job->dst, off, job->buf, len, err);
    }
    if (ret < 0) {
        dirty_after_write(job, off, len);   /* still to copy */
    }
    return ret;
}

static bool has_dirty(struct block_job *job)
{
    return job_bitmap_next(&job->bitmap, 0) < job->bitmap.count;
}

static int commit_run(struct block_job *job, struct error *err)
{
    int base = job->p.base_depth - job->p.top_depth;
    if (!is_active(job)) {
        int ret = for_each_defined(job, base, copy_run, err);
        return ret < 0 ? ret : blockdev_flush(job->dst, err);
    }
    int ret = for_each_defined(job, base, mark_run, err);
    for (uint64_t next = 0; ret == 0; ) {
        bool left;
        ret = copy_dirty(job, &next, &left, err);
        if (ret == 0 && left) {
            ret = block_job_step(job, job->bitmap.granule, job->bitmap.granule);
        } else if (ret == 0 && block_job_ready_wait(job, has_dirty)) {
            return block_job_step(job, 0, 0);
        }
    }
    return ret;
}

/* Drained: what the guest wrote since the last pass, then the switch. */
static int commit_prepare(struct block_job *job, struct error *err)
{
    int ret = 0;
    if (is_active(job)) {
        bool left = true;
        for (uint64_t next = 0; ret == 0 && left; ) {
            ret = copy_dirty(job, &next, &left, err);
        }
        job_unwatch(job);
    }
    if (ret == 0) {
        ret = blockdev_flush(job->dst, err);
    }
    blockdev_close(job->dst);
    job->dst = NULL;
    if (ret < 0) {
        return ret;
    }
    /* The chain's own read-only open of the base cached what it was. */
    struct blockdev *base = job_layer(job, job->p.base_depth);
    if ((ret = blockdev_invalidate_cache(base, err)) < 0) {
        return ret;
    }
    if (is_active(job)) {
        return job_replace_top(job, job->p.base_depth, err);
    }
    ret = job_set_backing(job, job->p.top_depth - 1, base, err);
    return ret < 0 ? ret : job_replace_top(job, 0, err);
}

static void commit_clean(struct block_job *job)
{
    job_unwatch(job);
    blockdev_close(job->dst);
    job->dst = NULL;
    free(job->buf);
    job->buf = NULL;
    job_bitmap_free(&job->bitmap);
}

const struct block_job_driver job_commit_driver = {
    .setup = commit_setup, .run = commit_run, .prepare = commit_prepare, .clean = commit_clean,
};
