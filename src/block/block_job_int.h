/* Inside a block job: the state the verbs, the thread and the three kinds
 * of copy (job_commit.c, job_stream.c, job_backup.c) share. */
#ifndef BLOCK_BLOCK_JOB_INT_H
#define BLOCK_BLOCK_JOB_INT_H

#include <pthread.h>

#include "block/block_job.h"

#define JOB_MAX_EVENTS 32
#define JOB_CHUNK (1u << 20)            /* bytes copied between pause points */
#define JOB_GRANULE (64u << 10)         /* dirty/copied tracking unit */

/* One kind of job. Everything but run is called in the owner's thread. */
struct block_job_driver {
    /* Checks the parameters, opens what the copy writes and installs the
     * write notifier (the disk drained). */
    int (*setup)(struct block_job *job, struct error *err);
    /* The copy, in the job's thread: returns when done, failed or
     * cancelled (-ECANCELED, from block_job_step). */
    int (*run)(struct block_job *job, struct error *err);
    /* The graph change of a successful job (drained); NULL: none. */
    int (*prepare)(struct block_job *job, struct error *err);
    /* Removes the notifier and frees what setup made (drained). */
    void (*clean)(struct block_job *job);
};
extern const struct block_job_driver job_commit_driver, job_stream_driver, job_backup_driver;

/* A set of granules (one bit each). */
struct job_bitmap {
    uint64_t *words;
    uint64_t count;                 /* granules */
    uint32_t granule;
};
int job_bitmap_init(struct job_bitmap *b, uint64_t size, uint32_t granule, bool set);
void job_bitmap_free(struct job_bitmap *b);
static inline bool job_bitmap_get(const struct job_bitmap *b, uint64_t i)
{
    return b->words[i / 64] >> (i % 64) & 1;
}
static inline void job_bitmap_put(struct job_bitmap *b, uint64_t i, bool v)
{
    if (v) {
        b->words[i / 64] |= 1ull << (i % 64);
    } else {
        b->words[i / 64] &= ~(1ull << (i % 64));
    }
}
/* Sets (or clears) every granule [off, off+len) touches. */
void job_bitmap_mark(struct job_bitmap *b, uint64_t off, uint64_t len, bool v);
/* The first set granule at or after i, or b->count. */
uint64_t job_bitmap_next(const struct job_bitmap *b, uint64_t i);

struct block_job {
    struct block_job_params p;
    char *backing_file;
    struct block_job_host host;
    const struct block_job_driver *drv;
    pthread_t thread;
    bool thread_running;            /* started and not joined */

    pthread_mutex_t lock;           /* everything below, and the drivers' bitmaps */
    pthread_cond_t cond;            /* verbs, new dirty data, rate-limit waits */
    enum block_job_status status;
    int pause_count;
    bool user_paused, cancelled, force, complete_requested, busy;
    uint64_t len, offset;
    uint64_t next_ns;               /* the rate limit's next free moment */
    int ret;
    bool io_error, error_on_read;
    char error[1024];
    struct block_job_event events[JOB_MAX_EVENTS];
    int nevents;
    int efd;

    /* The kinds' own state. */
    struct blockdev *top;           /* the disk's top at start */
    struct blockdev *src;           /* the layer copied from */
    struct blockdev *dst;           /* written: the base reopened, the target */
    uint8_t *buf;
    struct job_bitmap bitmap;       /* active commit: dirty; backup: still to copy */
    pthread_rwlock_t gate;          /* stream: guest writes shared, a chunk's copy exclusive */
    bool gate_init;
    struct blockdev_write_notifier notifier;
    bool watching;
};

/* The job whose thread this is (its own writes pass its notifier). */
struct block_job *block_job_self(void);
/* A pause point after progress bytes done, of which bytes were copied
 * (the rate limit counts those): waits for the rate limit and while
 * paused; -ECANCELED once cancelled (force, or not ready). */
int block_job_step(struct block_job *job, uint64_t progress, uint64_t bytes);
/* Active commit's idle state: ready until more dirty data (has_work),
 * complete or cancel. Returns true when the job should finish now. */
bool block_job_ready_wait(struct block_job *job, bool (*has_work)(struct block_job *job));
/* Reads and writes that record an I/O error for BLOCK_JOB_ERROR. */
int job_read(struct block_job *job, struct blockdev *bd, uint64_t off, void *buf, size_t len,
             struct error *err);
int job_write(struct block_job *job, struct blockdev *bd, uint64_t off, const void *buf, size_t len,
              struct error *err);
/* The layer at depth d below the job's top (0: the top). */
struct blockdev *job_layer(struct block_job *job, int d);
/* The disk's chain length. */
int job_chain_length(struct block_job *job);
/* Installs the job's notifier on its top (before may be NULL) and removes
 * it; both drained. */
void job_watch(struct block_job *job, int (*before)(void *, uint64_t, uint64_t, struct error *),
               void (*after)(void *, uint64_t, uint64_t));
void job_unwatch(struct block_job *job);
/* The disk becomes the image at the layer at depth d (its own name, format
 * and chain, reopened); drained. */
int job_replace_top(struct block_job *job, int d, struct error *err);
/* Records backing (NULL: none) as the backing file of the layer at depth d
 * (writable or reopened for it): p->backing_file if given, else backing's
 * absolute path. */
int job_set_backing(struct block_job *job, int d, const struct blockdev *backing, struct error *err);

#endif
