/* block-stream on a running disk: what the layers between the top and base
 * define is copied into the top, then the top records base (or nothing) as
 * its backing file and the chain is reopened. A chunk's copy checks the
 * top's status, reads and writes with guest writes held off (the gate), so
 * a guest write lands either before (the range is then the top's own and
 * is skipped) or after the copy (and overwrites it): never under it. */
#include "block/block_job_int.h"
#include "block/block_int.h"

#include <errno.h>
#include <stdlib.h>

static int gate_enter(void *opaque, uint64_t off, uint64_t len, struct error *err)
{
    struct block_job *job = opaque;
    if (block_job_self() != job) {
        pthread_rwlock_rdlock(&job->gate);
    }
    return 0;
}

static void gate_leave(void *opaque, uint64_t off, uint64_t len)
{
    struct block_job *job = opaque;
    if (block_job_self() != job) {
        pthread_rwlock_unlock(&job->gate);
    }
}

static int stream_setup(struct block_job *job, struct error *err)
{
    int n = job_chain_length(job);
    if (job->p.base_depth < 1 || job->p.base_depth > n) {
        return error_set(err, -EINVAL, "Base '%d' is not in the chain of %d images", job->p.base_depth, n);
    }
    if (blockdev_is_read_only(job->top)) {
        return error_set(err, -EROFS, "Device is read only: stream writes to it");
    }
    job->buf = malloc(JOB_CHUNK);
    if (!job->buf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    pthread_rwlock_init(&job->gate, NULL);
    job->gate_init = true;
    job->src = job->dst = job->top;
    job->len = blockdev_size(job->top);
    job_watch(job, gate_enter, gate_leave);
    return 0;
}

/* One chunk at off: *len is how far the status reached, *copied whether
 * it was copied. */
static int stream_chunk(struct block_job *job, uint64_t off, uint64_t *len, bool *copied, struct error *err)
{
    uint64_t size = blockdev_size(job->top);
    struct block_status st;
    pthread_rwlock_wrlock(&job->gate);
    int ret = blockdev_block_status(job->top, off, size - off > JOB_CHUNK ? JOB_CHUNK : size - off, &st, err);
    if (ret == 0 && st.len == 0) {
        ret = error_set(err, -EIO, "Block status made no progress at %llu", (unsigned long long)off);
    }
    *len = st.len;
    *copied = ret == 0 && (st.flags & BDEV_STATUS_ALLOCATED) && st.depth >= 1 && st.depth < job->p.base_depth;
    if (*copied) {
        if ((st.flags & BDEV_STATUS_ZERO) && !(st.flags & BDEV_STATUS_DATA)) {
            ret = blockdev_pwrite_zeroes(job->top, off, st.len, 0, err);
        } else if ((ret = job_read(job, job->top, off, job->buf, st.len, err)) == 0) {
            ret = job_write(job, job->top, off, job->buf, st.len, err);
        }
    }
    pthread_rwlock_unlock(&job->gate);
    return ret;
}

static int stream_run(struct block_job *job, struct error *err)
{
    uint64_t size = blockdev_size(job->top);
    for (uint64_t off = 0, len = 0; off < size; off += len) {
        bool copied;
        int ret = stream_chunk(job, off, &len, &copied, err);
        if (ret == 0) {
            ret = block_job_step(job, len, copied ? len : 0);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return blockdev_flush(job->top, err);
}

static int stream_prepare(struct block_job *job, struct error *err)
{
    job_unwatch(job);
    int n = job_chain_length(job);
    struct blockdev *base = job->p.base_depth < n ? job_layer(job, job->p.base_depth) : NULL;
    int ret = job_set_backing(job, 0, base, err);
    return ret < 0 ? ret : job_replace_top(job, 0, err);
}

static void stream_clean(struct block_job *job)
{
    job_unwatch(job);
    if (job->gate_init) {
        pthread_rwlock_destroy(&job->gate);
        job->gate_init = false;
    }
    free(job->buf);
    job->buf = NULL;
}

const struct block_job_driver job_stream_driver = {
    .setup = stream_setup, .run = stream_run, .prepare = stream_prepare, .clean = stream_clean,
};
