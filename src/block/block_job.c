/* The job state machine (QEMU 7.2's job.c transitions and verb table), the
 * job thread with its pause points and rate limit, and the event queue. */
#include "block/block_job_int.h"
#include "block/block_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static const char *const status_names[] = {
    "undefined", "created", "running", "paused", "ready", "standby", "waiting", "pending", "aborting",
    "concluded", "null",
};

const char *block_job_status_name(enum block_job_status s)
{
    return status_names[s];
}

const char *block_job_type_name(enum block_job_type t)
{
    return t == BLOCK_JOB_COMMIT ? "commit" : t == BLOCK_JOB_STREAM ? "stream" : "backup";
}

enum verb { VERB_CANCEL, VERB_PAUSE, VERB_RESUME, VERB_SET_SPEED, VERB_COMPLETE, VERB_FINALIZE, VERB_DISMISS };
static const char *const verb_names[] = {
    "cancel", "pause", "resume", "set-speed", "complete", "finalize", "dismiss",
};
/* Which status accepts which verb: QEMU's JobVerbTable. Columns in
 * block_job_status order (U C R P Y S W D X E N). */
static const bool verb_table[][JOB_STATUS_NULL + 1] = {
    [VERB_CANCEL]    = { 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 },
    [VERB_PAUSE]     = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [VERB_RESUME]    = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [VERB_SET_SPEED] = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [VERB_COMPLETE]  = { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
    [VERB_FINALIZE]  = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
    [VERB_DISMISS]   = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 },
};

static _Thread_local struct block_job *self;

struct block_job *block_job_self(void)
{
    return self;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int check_verb(struct block_job *job, enum verb v, struct error *err)
{
    if (verb_table[v][job->status]) {
        return 0;
    }
    return error_set(err, -EBUSY, "Job '%s' in state '%s' cannot accept command verb '%s'", job->p.id,
                     status_names[job->status], verb_names[v]);
}

/* Queues the change for the owner (job->lock held). */
static void set_status(struct block_job *job, enum block_job_status s, bool error_event)
{
    job->status = s;
    if (job->nevents == JOB_MAX_EVENTS) {
        /* The owner stopped reading: keep the latest changes. */
        memmove(job->events, job->events + 1, sizeof(job->events[0]) * (JOB_MAX_EVENTS - 1));
        job->nevents--;
    }
    struct block_job_event *e = &job->events[job->nevents++];
    *e = (struct block_job_event){ .status = s, .error_event = error_event, .error_on_read = job->error_on_read,
                                   .len = job->len, .offset = job->offset, .speed = job->p.speed,
                                   .cancelled = job->cancelled && job->ret == -ECANCELED };
    snprintf(e->error, sizeof(e->error), "%s", job->error);
    uint64_t one = 1;
    if (write(job->efd, &one, sizeof(one)) < 0) {
        /* The counter cannot overflow with one write per change. */
    }
    pthread_cond_broadcast(&job->cond);
}

int block_job_event_fd(struct block_job *job)
{
    return job->efd;
}

int block_job_take_events(struct block_job *job, struct block_job_event *out, int max)
{
    uint64_t v;
    pthread_mutex_lock(&job->lock);
    if (read(job->efd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing signalled. */
    }
    int n = job->nevents < max ? job->nevents : max;
    memcpy(out, job->events, sizeof(out[0]) * (size_t)n);
    memmove(job->events, job->events + n, sizeof(job->events[0]) * (size_t)(job->nevents - n));
    job->nevents -= n;
    if (job->nevents) {
        uint64_t one = 1;
        if (write(job->efd, &one, sizeof(one)) < 0) {
            /* see set_status */
        }
    }
    pthread_mutex_unlock(&job->lock);
    return n;
}

/* Parks while paused (job->lock held), as paused or standby. */
static void wait_while_paused(struct block_job *job)
{
    if (job->pause_count == 0 || job->cancelled) {
        return;
    }
    enum block_job_status was = job->status;
    set_status(job, was == JOB_STATUS_READY ? JOB_STATUS_STANDBY : JOB_STATUS_PAUSED, false);
    job->busy = false;
    while (job->pause_count > 0 && !job->cancelled) {
        pthread_cond_wait(&job->cond, &job->lock);
    }
    job->busy = true;
    set_status(job, was, false);
    /* The time paused does not count against the rate limit. */
    job->next_ns = now_ns();
}

static bool must_stop(struct block_job *job)
{
    return job->cancelled && (job->force || job->status != JOB_STATUS_READY);
}

int block_job_step(struct block_job *job, uint64_t progress, uint64_t bytes)
{
    pthread_mutex_lock(&job->lock);
    job->offset += progress;
    if (job->p.speed && bytes) {
        uint64_t now = now_ns();
        if (job->next_ns < now) {
            job->next_ns = now;
        }
        job->next_ns += bytes * 1000000000u / job->p.speed;
    }
    for (;;) {
        wait_while_paused(job);
        if (must_stop(job) || !job->p.speed || now_ns() >= job->next_ns) {
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t wait = job->next_ns - now_ns();
        wait = wait > 100000000u ? 100000000u : wait;    /* set-speed may shorten it */
        until.tv_sec += (time_t)((until.tv_nsec + wait) / 1000000000u);
        until.tv_nsec = (long)((until.tv_nsec + wait) % 1000000000u);
        job->busy = false;
        pthread_cond_timedwait(&job->cond, &job->lock, &until);
        job->busy = true;
    }
    int ret = must_stop(job) ? -ECANCELED : 0;
    pthread_mutex_unlock(&job->lock);
    return ret;
}

bool block_job_ready_wait(struct block_job *job, bool (*has_work)(struct block_job *job))
{
    pthread_mutex_lock(&job->lock);
    if (job->status == JOB_STATUS_RUNNING) {
        set_status(job, JOB_STATUS_READY, false);
    }
    job->busy = false;
    while (!job->complete_requested && !job->cancelled && !has_work(job) && job->pause_count == 0) {
        pthread_cond_wait(&job->cond, &job->lock);
    }
    job->busy = true;
    wait_while_paused(job);
    bool finish = job->complete_requested || job->cancelled;
    pthread_mutex_unlock(&job->lock);
    return finish;
}

static int io_failed(struct block_job *job, bool read, int ret)
{
    pthread_mutex_lock(&job->lock);
    if (!job->io_error) {
        job->io_error = true;
        job->error_on_read = read;
    }
    pthread_mutex_unlock(&job->lock);
    return ret;
}

int job_read(struct block_job *job, struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err)
{
    int ret = blockdev_pread(bd, off, buf, len, err);
    return ret < 0 ? io_failed(job, true, ret) : 0;
}

int job_write(struct block_job *job, struct blockdev *bd, uint64_t off, const void *buf, size_t len,
              struct error *err)
{
    int ret = blockdev_pwrite(bd, off, buf, len, err);
    return ret < 0 ? io_failed(job, false, ret) : 0;
}

static void *job_thread(void *opaque)
{
    struct block_job *job = opaque;
    struct error err = { 0 };
    self = job;
    int ret = job->drv->run(job, &err);
    pthread_mutex_lock(&job->lock);
    job->busy = false;
    if (ret == 0 && job->cancelled && job->force) {
        ret = -ECANCELED;
    }
    job->ret = ret;
    if (ret < 0) {
        /* QEMU reports the errno's text, "Operation canceled" for a cancel. */
        snprintf(job->error, sizeof(job->error), "%s", ret == -ECANCELED ? "Operation canceled" : strerror(-ret));
        set_status(job, JOB_STATUS_ABORTING, job->io_error);
    } else {
        set_status(job, JOB_STATUS_WAITING, false);
        set_status(job, JOB_STATUS_PENDING, false);
    }
    pthread_mutex_unlock(&job->lock);
    return NULL;
}

static const struct block_job_driver *driver_of(enum block_job_type t)
{
    return t == BLOCK_JOB_COMMIT ? &job_commit_driver : t == BLOCK_JOB_STREAM ? &job_stream_driver
                                                                             : &job_backup_driver;
}

static void release_host(const struct block_job_host *host)
{
    if (host->release) {
        host->release(host->opaque);
    }
}

/* Also gives the disk back: every job ends here. */
static void destroy(struct block_job *job)
{
    if (job->efd >= 0) {
        close(job->efd);
    }
    pthread_mutex_destroy(&job->lock);
    pthread_cond_destroy(&job->cond);
    free(job->backing_file);
    release_host(&job->host);
    free(job);
}

/* Setup and teardown change what the disk's writes go through: drained. */
static int setup_drained(struct block_job *job, struct error *err)
{
    job->host.drain_begin(job->host.opaque);
    int ret = job->drv->setup(job, err);
    if (ret < 0) {
        job->drv->clean(job);
    }
    job->host.drain_end(job->host.opaque);
    return ret;
}

static void clean_drained(struct block_job *job)
{
    job->host.drain_begin(job->host.opaque);
    job->drv->clean(job);
    job->host.drain_end(job->host.opaque);
}

int block_job_start(struct block_job **out, const struct block_job_params *p, const struct block_job_host *host,
                    struct error *err)
{
    struct block_job *job = calloc(1, sizeof(*job));
    if (!job) {
        release_host(host);
        return error_set(err, -ENOMEM, "out of memory");
    }
    job->p = *p;
    job->backing_file = p->backing_file ? strdup(p->backing_file) : NULL;
    job->p.backing_file = job->backing_file;
    job->host = *host;
    job->drv = driver_of(p->type);
    job->top = host->top(host->opaque);
    job->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&job->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&job->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (job->efd < 0) {
        destroy(job);
        return error_set_errno(err, -errno, "eventfd");
    }
    int ret = setup_drained(job, err);
    if (ret < 0) {
        destroy(job);
        return ret;
    }
    job->busy = true;
    job->next_ns = now_ns();
    pthread_mutex_lock(&job->lock);
    set_status(job, JOB_STATUS_CREATED, false);
    set_status(job, JOB_STATUS_RUNNING, false);
    pthread_mutex_unlock(&job->lock);
    if ((ret = pthread_create(&job->thread, NULL, job_thread, job)) != 0) {
        clean_drained(job);
        destroy(job);
        return error_set_errno(err, -ret, "Could not start the job's thread");
    }
    job->thread_running = true;
    *out = job;
    return 0;
}

static void join(struct block_job *job)
{
    if (job->thread_running) {
        pthread_join(job->thread, NULL);
        job->thread_running = false;
    }
}

void block_job_free(struct block_job *job)
{
    if (!job) {
        return;
    }
    pthread_mutex_lock(&job->lock);
    job->cancelled = job->force = true;
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&job->lock);
    join(job);
    if (job->status != JOB_STATUS_CONCLUDED && job->status != JOB_STATUS_NULL) {
        clean_drained(job);
    }
    destroy(job);
}

/* A verb under the lock: checked against the table, then applied. */
static int verb(struct block_job *job, enum verb v, struct error *err, int (*apply)(struct block_job *job,
                                                                                   struct error *err))
{
    pthread_mutex_lock(&job->lock);
    int ret = check_verb(job, v, err);
    if (ret == 0) {
        ret = apply(job, err);
        pthread_cond_broadcast(&job->cond);
    }
    pthread_mutex_unlock(&job->lock);
    return ret;
}

static int apply_pause(struct block_job *job, struct error *err)
{
    if (job->user_paused) {
        return error_set(err, -EBUSY, "Job is already paused");
    }
    job->user_paused = true;
    job->pause_count++;
    return 0;
}

static int apply_resume(struct block_job *job, struct error *err)
{
    if (!job->user_paused) {
        return error_set(err, -EBUSY, "Can't resume a job that was not paused");
    }
    job->user_paused = false;
    job->pause_count--;
    return 0;
}

static int apply_complete(struct block_job *job, struct error *err)
{
    if (job->cancelled) {
        return error_set(err, -EBUSY, "Job '%s' has been cancelled", job->p.id);
    }
    job->complete_requested = true;
    return 0;
}

int block_job_pause(struct block_job *job, struct error *err)
{
    return verb(job, VERB_PAUSE, err, apply_pause);
}

int block_job_resume(struct block_job *job, struct error *err)
{
    return verb(job, VERB_RESUME, err, apply_resume);
}

int block_job_complete(struct block_job *job, struct error *err)
{
    return verb(job, VERB_COMPLETE, err, apply_complete);
}

int block_job_set_speed(struct block_job *job, int64_t speed, struct error *err)
{
    if (speed < 0) {
        return error_set(err, -EINVAL, "Parameter 'speed' expects a non-negative value");
    }
    pthread_mutex_lock(&job->lock);
    int ret = check_verb(job, VERB_SET_SPEED, err);
    if (ret == 0) {
        job->p.speed = (uint64_t)speed;
        job->next_ns = now_ns();
        pthread_cond_broadcast(&job->cond);
    }
    pthread_mutex_unlock(&job->lock);
    return ret;
}

static void conclude(struct block_job *job)
{
    pthread_mutex_lock(&job->lock);
    set_status(job, JOB_STATUS_CONCLUDED, false);
    if (job->p.auto_dismiss) {
        set_status(job, JOB_STATUS_NULL, false);
    }
    pthread_mutex_unlock(&job->lock);
}

/* An aborting job: undo what setup did, then conclude. */
static void abort_job(struct block_job *job)
{
    join(job);
    clean_drained(job);
    conclude(job);
}

int block_job_cancel(struct block_job *job, bool force, struct error *err)
{
    pthread_mutex_lock(&job->lock);
    int ret = check_verb(job, VERB_CANCEL, err);
    bool pending = job->status == JOB_STATUS_PENDING;
    if (ret == 0 && job->status != JOB_STATUS_ABORTING) {
        job->cancelled = true;
        /* A pending job has done its copy: only a forced end undoes it. */
        job->force = force || job->status != JOB_STATUS_READY;
        pthread_cond_broadcast(&job->cond);
        if (pending) {
            job->ret = -ECANCELED;
            snprintf(job->error, sizeof(job->error), "Operation canceled");
            set_status(job, JOB_STATUS_ABORTING, false);
        }
    }
    pthread_mutex_unlock(&job->lock);
    if (ret == 0 && pending) {
        abort_job(job);
    }
    return ret;
}

int block_job_finalize(struct block_job *job, struct error *err)
{
    pthread_mutex_lock(&job->lock);
    int ret = check_verb(job, VERB_FINALIZE, err);
    pthread_mutex_unlock(&job->lock);
    if (ret < 0) {
        return ret;
    }
    join(job);
    struct error perr = { 0 };
    job->host.drain_begin(job->host.opaque);
    /* A ready job cancelled without force ends without its graph change. */
    int pret = job->drv->prepare && !job->cancelled ? job->drv->prepare(job, &perr) : 0;
    job->drv->clean(job);
    job->host.drain_end(job->host.opaque);
    if (pret < 0) {
        pthread_mutex_lock(&job->lock);
        job->ret = pret;
        snprintf(job->error, sizeof(job->error), "%s", perr.msg);
        set_status(job, JOB_STATUS_ABORTING, false);
        pthread_mutex_unlock(&job->lock);
    }
    conclude(job);
    return 0;
}

int block_job_dismiss(struct block_job *job, struct error *err)
{
    pthread_mutex_lock(&job->lock);
    int ret = check_verb(job, VERB_DISMISS, err);
    if (ret == 0) {
        set_status(job, JOB_STATUS_NULL, false);
    }
    pthread_mutex_unlock(&job->lock);
    return ret;
}

void block_job_run_pending(struct block_job *job)
{
    pthread_mutex_lock(&job->lock);
    enum block_job_status s = job->status;
    pthread_mutex_unlock(&job->lock);
    if (s == JOB_STATUS_ABORTING) {
        abort_job(job);
    } else if (s == JOB_STATUS_PENDING && job->p.auto_finalize) {
        block_job_finalize(job, NULL);
    }
}

void block_job_info(struct block_job *job, struct block_job_info *out)
{
    pthread_mutex_lock(&job->lock);
    *out = (struct block_job_info){
        .type = job->p.type, .id = job->p.id, .status = job->status, .len = job->len, .offset = job->offset,
        .speed = job->p.speed, .busy = job->busy, .paused = job->pause_count > 0,
        .ready = job->status == JOB_STATUS_READY || job->status == JOB_STATUS_STANDBY,
        .auto_finalize = job->p.auto_finalize, .auto_dismiss = job->p.auto_dismiss, .io_error = job->io_error,
    };
    snprintf(out->error, sizeof(out->error), "%s", job->error);
    pthread_mutex_unlock(&job->lock);
}

struct blockdev *job_layer(struct block_job *job, int d)
{
    struct blockdev *b = job->top;
    for (; b && d > 0; d--) {
        b = blockdev_backing(b);
    }
    return b;
}

int job_chain_length(struct block_job *job)
{
    int n = 0;
    for (struct blockdev *b = job->top; b; b = blockdev_backing(b)) {
        n++;
    }
    return n;
}

void job_watch(struct block_job *job, int (*before)(void *, uint64_t, uint64_t, struct error *),
               void (*after)(void *, uint64_t, uint64_t))
{
    job->notifier = (struct blockdev_write_notifier){ before, after, job };
    blockdev_set_write_notifier(job->top, &job->notifier);
    job->watching = true;
}

void job_unwatch(struct block_job *job)
{
    if (job->watching) {
        blockdev_set_write_notifier(job->top, NULL);
        job->watching = false;
    }
}

int job_replace_top(struct block_job *job, int d, struct error *err)
{
    const struct blockdev *layer = job_layer(job, d);
    char *name = strdup(layer->open_name ? layer->open_name : layer->filename);
    char *format = strdup(blockdev_format(layer));
    int ret = name && format ? job->host.replace(job->host.opaque, name, format, err)
                             : error_set(err, -ENOMEM, "out of memory");
    free(name);
    free(format);
    job->top = job->host.top(job->host.opaque);
    return ret;
}

int job_set_backing(struct block_job *job, int d, const struct blockdev *backing, struct error *err)
{
    struct blockdev *layer = job_layer(job, d), *rw = layer;
    char *path = NULL;
    if (backing && !job->backing_file && !(path = realpath(backing->filename, NULL))) {
        return error_set_errno(err, -errno, "Could not resolve '%s'", backing->filename);
    }
    int ret = 0;
    if (!blockdev_is_read_only(layer) || (ret = blockdev_reopen_layer_rw(layer, &rw, err)) == 0) {
        const char *name = job->backing_file ? job->backing_file : path;
        ret = blockdev_change_backing_file(rw, backing ? name : NULL, backing ? blockdev_format(backing) : NULL, err);
    }
    if (rw != layer) {
        blockdev_close(rw);
    }
    free(path);
    return ret;
}

int job_bitmap_init(struct job_bitmap *b, uint64_t size, uint32_t granule, bool set)
{
    b->granule = granule;
    b->count = (size + granule - 1) / granule;
    b->words = calloc((size_t)(b->count + 63) / 64 + 1, sizeof(uint64_t));
    if (!b->words) {
        return -ENOMEM;
    }
    if (set) {
        job_bitmap_mark(b, 0, size, true);
    }
    return 0;
}

void job_bitmap_free(struct job_bitmap *b)
{
    free(b->words);
    b->words = NULL;
}

void job_bitmap_mark(struct job_bitmap *b, uint64_t off, uint64_t len, bool v)
{
    if (len == 0) {
        return;
    }
    uint64_t last = (off + len - 1) / b->granule;
    for (uint64_t i = off / b->granule; i <= last && i < b->count; i++) {
        job_bitmap_put(b, i, v);
    }
}

uint64_t job_bitmap_next(const struct job_bitmap *b, uint64_t i)
{
    while (i < b->count) {
        uint64_t w = b->words[i / 64] >> (i % 64);
        if (w) {
            return i + (uint64_t)__builtin_ctzll(w) < b->count ? i + (uint64_t)__builtin_ctzll(w) : b->count;
        }
        i = (i / 64 + 1) * 64;
    }
    return b->count;
}
