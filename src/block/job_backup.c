/* Backup of a running disk as it was when the job started (QEMU's
 * drive-backup/blockdev-backup with copy-before-write): a set of granules
 * still to copy; the job copies them in order, and a guest write first
 * copies the granules it is about to change that are still in the set (it
 * fails if that copy fails, as QEMU's on-cbw-error=break-guest-write). The
 * set starts full (sync=full), as the top's own ranges (sync=top) or as
 * the caller's granules (an incremental backup's dirty bitmap). */
#include "block/block_job_int.h"
#include "block/block_int.h"
#include "block/blockdev_top_ranges.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Copies granule i if it is still in the set (the gate held). */
static int copy_granule(struct block_job *job, uint64_t i, uint8_t *buf, struct error *err)
{
    if (!job_bitmap_get(&job->bitmap, i)) {
        return 0;
    }
    uint64_t off = i * job->bitmap.granule, size = blockdev_size(job->top);
    size_t len = size - off < job->bitmap.granule ? size - off : job->bitmap.granule;
    int ret = job_read(job, job->top, off, buf, len, err);
    if (ret == 0) {
        ret = job_write(job, job->dst, off, buf, len, err);
    }
    if (ret == 0) {
        job_bitmap_put(&job->bitmap, i, false);
    }
    return ret;
}

static int copy_before_write(void *opaque, uint64_t off, uint64_t len, struct error *err)
{
    struct block_job *job = opaque;
    uint8_t *buf = malloc(job->bitmap.granule);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = 0;
    pthread_rwlock_wrlock(&job->gate);
    for (uint64_t i = off / job->bitmap.granule; ret == 0 && i <= (off + len - 1) / job->bitmap.granule; i++) {
        ret = copy_granule(job, i, buf, err);
    }
    pthread_rwlock_unlock(&job->gate);
    free(buf);
    if (ret < 0) {
        error_prefix(err, "Backup of the data about to be overwritten failed");
    }
    return ret;
}

/* Granules wholly inside [from, to) leave the set. */
static void drop_granules(struct block_job *job, uint64_t from, uint64_t to)
{
    uint64_t g = job->bitmap.granule;
    for (uint64_t i = (from + g - 1) / g; i < to / g; i++) {
        job_bitmap_put(&job->bitmap, i, false);
    }
}

/* sync=top: only what the top layer defines is copied; granules partly
 * the top's stay in the set. */
static int keep_top_ranges(struct block_job *job, struct error *err)
{
    struct blockdev_top_ranges it;
    uint64_t off, len, gap = 0;     /* gap: where the top's last range ended */
    int ret;
    blockdev_top_ranges_init(&it, job->top);
    while ((ret = blockdev_top_ranges_next(&it, &off, &len, err)) == 1) {
        drop_granules(job, gap, off);
        gap = off + len;
    }
    if (ret == 0) {
        drop_granules(job, gap, blockdev_size(job->top));
    }
    return ret;
}

static uint64_t granules_set(const struct job_bitmap *b)
{
    uint64_t n = 0;
    for (uint64_t i = job_bitmap_next(b, 0); i < b->count; i = job_bitmap_next(b, i + 1)) {
        n++;
    }
    return n;
}

static int backup_setup(struct block_job *job, struct error *err)
{
    job->dst = job->p.target;
    uint64_t size = blockdev_size(job->top);
    if (blockdev_size(job->dst) != size) {
        return error_set(err, -EINVAL, "Source and target image have different sizes");
    }
    uint32_t g = job->p.granules && job->p.granule_size ? job->p.granule_size : JOB_GRANULE;
    if (job_bitmap_init(&job->bitmap, size, g, job->p.granules == NULL) < 0 || !(job->buf = malloc(g))) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    if (job->p.granules) {
        memcpy(job->bitmap.words, job->p.granules, (size_t)(job->bitmap.count + 63) / 64 * 8);
        job_bitmap_mark(&job->bitmap, size, (uint64_t)g * 64, false);   /* bits past the end */
    }
    int ret = job->p.top_only ? keep_top_ranges(job, err) : 0;
    if (ret < 0) {
        return ret;
    }
    job->len = granules_set(&job->bitmap) * g;
    pthread_rwlock_init(&job->gate, NULL);
    job->gate_init = true;
    job_watch(job, copy_before_write, NULL);
    return 0;
}

static int backup_run(struct block_job *job, struct error *err)
{
    for (uint64_t i = job_bitmap_next(&job->bitmap, 0); i < job->bitmap.count;
         i = job_bitmap_next(&job->bitmap, i + 1)) {
        pthread_rwlock_wrlock(&job->gate);
        int ret = copy_granule(job, i, job->buf, err);
        pthread_rwlock_unlock(&job->gate);
        if (ret == 0) {
            ret = block_job_step(job, job->bitmap.granule, job->bitmap.granule);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return blockdev_flush(job->dst, err);
}

static void backup_clean(struct block_job *job)
{
    job_unwatch(job);
    if (job->gate_init) {
        pthread_rwlock_destroy(&job->gate);
        job->gate_init = false;
    }
    blockdev_close(job->p.target);
    job->p.target = job->dst = NULL;
    free(job->buf);
    job->buf = NULL;
    job_bitmap_free(&job->bitmap);
}

const struct block_job_driver job_backup_driver = {
    .setup = backup_setup, .run = backup_run, .prepare = NULL, .clean = backup_clean,
};
