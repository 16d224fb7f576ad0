/* Block jobs on a running disk (QEMU's job model, 7.2): commit, stream and
 * backup copy in a thread of their own while the guest keeps writing. A job
 * goes created -> running (<-> paused) [-> ready (<-> standby)] -> waiting
 * -> pending -> concluded -> null, or through aborting to concluded when it
 * fails or is cancelled. The thread does the copying; the graph change at
 * the end (a new backing file, the disk switched to another image) runs in
 * the caller's thread at finalize, with the disk's users drained by the
 * host. Every status change is queued for the caller's thread and signalled
 * on an eventfd (block_job_event_fd), so a main loop turns them into events
 * without ever blocking on the job. */
#ifndef BLOCK_BLOCK_JOB_H
#define BLOCK_BLOCK_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "util/error.h"

enum block_job_status {
    JOB_STATUS_UNDEFINED, JOB_STATUS_CREATED, JOB_STATUS_RUNNING, JOB_STATUS_PAUSED, JOB_STATUS_READY,
    JOB_STATUS_STANDBY, JOB_STATUS_WAITING, JOB_STATUS_PENDING, JOB_STATUS_ABORTING, JOB_STATUS_CONCLUDED,
    JOB_STATUS_NULL,
};
/* QEMU's JobStatus names ("created", "running", ...). */
const char *block_job_status_name(enum block_job_status s);

enum block_job_type { BLOCK_JOB_COMMIT, BLOCK_JOB_STREAM, BLOCK_JOB_BACKUP };
const char *block_job_type_name(enum block_job_type t);     /* "commit", "stream", "backup" */

/* What the job's disk belongs to (a machine, a test): the job never
 * touches the disk's users itself. */
struct block_job_host {
    /* The disk's current top image. */
    struct blockdev *(*top)(void *opaque);
    /* Stops and restarts the disk's users (no request in flight between). */
    void (*drain_begin)(void *opaque);
    void (*drain_end)(void *opaque);
    /* Closes the disk's chain and opens filename (format, NULL: probe) with
     * its backing chain as the disk's top, writable unless the disk was
     * read-only; called drained. On failure the disk keeps a usable image
     * if it can (the old one reopened). */
    int (*replace)(void *opaque, const char *filename, const char *format, struct error *err);
    /* The job is done with the disk (freed, or it failed to start); NULL:
     * nothing to give back. */
    void (*release)(void *opaque);
    void *opaque;
};

/* What a job copies. Depths count from the disk's top (0). */
struct block_job_params {
    enum block_job_type type;
    char id[128];
    uint64_t speed;             /* bytes per second, 0: unlimited */
    bool auto_finalize, auto_dismiss;
    /* commit: the layers [top_depth, base_depth) fold into base_depth;
     * top_depth 0 is an active commit (it goes ready, then needs complete).
     * stream: the layers [1, base_depth) are copied into the top, which
     * then has base_depth (or nothing, when base_depth is the chain's
     * length) as its backing file. */
    int top_depth, base_depth;
    /* commit and stream: the backing file name to record (NULL: the
     * base's file name as the chain opened it). */
    const char *backing_file;
    /* backup: the target, opened writable, owned by the job from then on.
     * granules (NULL: the whole disk, sync=full) is the set of
     * granule-sized ranges to copy, one bit each, as an incremental backup
     * gives it from a dirty bitmap. top_only: only what the top layer
     * defines (sync=top; the target's backing file has the rest). */
    struct blockdev *target;
    const uint64_t *granules;
    uint32_t granule_size;      /* for granules; 0: 64 KiB */
    bool top_only;
};

struct block_job;

/* Creates the job and starts its thread (the status goes created ->
 * running). p->type's checks (depths inside the chain, a writable disk)
 * fail here with a message. */
int block_job_start(struct block_job **out, const struct block_job_params *p, const struct block_job_host *host,
                    struct error *err);
/* Stops the thread if it still runs (as a cancel) and frees the job. */
void block_job_free(struct block_job *job);

/* The verbs, refused as QEMU refuses them ("Job 'x' in state 'y' cannot
 * accept command verb 'z'"). complete: a ready job finishes (active commit
 * switches the disk to its base). cancel with force=false on a ready job
 * finishes it without the switch, as QEMU's mirror does. finalize: a
 * pending job makes its graph change (drained) and concludes. */
int block_job_pause(struct block_job *job, struct error *err);
int block_job_resume(struct block_job *job, struct error *err);
int block_job_cancel(struct block_job *job, bool force, struct error *err);
int block_job_complete(struct block_job *job, struct error *err);
int block_job_finalize(struct block_job *job, struct error *err);
int block_job_dismiss(struct block_job *job, struct error *err);
int block_job_set_speed(struct block_job *job, int64_t speed, struct error *err);

/* What auto-finalize and auto-dismiss ask for, and the end of a job that
 * failed or was cancelled (it undoes its setup drained): the owner calls it
 * after taking the events. */
void block_job_run_pending(struct block_job *job);

/* What query-block-jobs and query-jobs show. */
struct block_job_info {
    enum block_job_type type;
    const char *id;
    enum block_job_status status;
    uint64_t len, offset, speed;
    bool busy, paused, ready, auto_finalize, auto_dismiss;
    bool io_error;              /* the copy met an I/O error */
    char error[1024];            /* the failure ("" when none) */
};
void block_job_info(struct block_job *job, struct block_job_info *out);

/* Status changes since the last call, oldest first, for the caller's
 * thread to announce; the eventfd is readable while any is queued. */
struct block_job_event {
    enum block_job_status status;
    bool error_event;           /* BLOCK_JOB_ERROR before this change */
    bool error_on_read;         /* its operation: read (else write) */
    uint64_t len, offset, speed;
    bool cancelled;             /* concluded after a cancel */
    char error[1024];
};
int block_job_event_fd(struct block_job *job);
int block_job_take_events(struct block_job *job, struct block_job_event *out, int max);

#endif
