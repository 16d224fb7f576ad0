/* Block jobs over QMP, in QEMU 7.2's shapes: block-commit, block-stream,
 * drive-backup (blockdev-backup refused: there is no blockdev-add yet),
 * the job-* and block-job-* verbs, query-block-jobs and the block jobs of
 * query-jobs, and the events (JOB_STATUS_CHANGE, BLOCK_JOB_READY,
 * BLOCK_JOB_PENDING, BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED, BLOCK_JOB_ERROR). The jobs
 * themselves are block/block_job.h's; this file names nodes, checks
 * arguments and turns the jobs' queued status changes into events. A
 * disk's nodes are "diskN" and its backing layers "diskN-backingK". */
#include "qmp_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "block/block_job.h"
#include "block/blockdev.h"

#define MAX_LAYERS 16
#define QMP_DEVICE_NOT_ACTIVE "DeviceNotActive"

static const char *str_arg(json_t *args, const char *name)
{
    return json_string_value(json_object_get(args, name));
}

static bool bool_arg(json_t *args, const char *name, bool dflt)
{
    json_t *v = json_object_get(args, name);
    return v ? json_is_true(v) : dflt;
}

/* ---- events ---- */

static json_t *job_data(struct block_job_info *info, const struct block_job_event *e)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:s}", "device", info->id, "len", (json_int_t)e->len, "offset",
                     (json_int_t)e->offset, "speed", (json_int_t)e->speed, "type", block_job_type_name(info->type));
}

static void announce(struct qmp_server *s, struct block_job *job, const struct block_job_event *e)
{
    struct block_job_info info;
    block_job_info(job, &info);
    if (e->error_event) {
        qmp_event(s, "BLOCK_JOB_ERROR", json_pack("{s:s,s:s,s:s}", "device", info.id, "operation",
                                                  e->error_on_read ? "read" : "write", "action", "report"));
    }
    if (e->status == JOB_STATUS_CONCLUDED) {
        json_t *d = job_data(&info, e);
        if (!e->cancelled && e->error[0]) {
            json_object_set_new(d, "error", json_string(e->error));
        }
        qmp_event(s, e->cancelled ? "BLOCK_JOB_CANCELLED" : "BLOCK_JOB_COMPLETED", d);
    }
    qmp_event(s, "JOB_STATUS_CHANGE", json_pack("{s:s,s:s}", "status", block_job_status_name(e->status),
                                                "id", info.id));
    if (e->status == JOB_STATUS_READY) {
        qmp_event(s, "BLOCK_JOB_READY", job_data(&info, e));
    }
    /* A job waiting for job-finalize says so (QEMU's BLOCK_JOB_PENDING). */
    if (e->status == JOB_STATUS_PENDING && !info.auto_finalize) {
        qmp_event(s, "BLOCK_JOB_PENDING", json_pack("{s:s,s:s}", "type", block_job_type_name(info.type), "id", info.id));
    }
}

static void remove_job(struct qmp_server *s, int k)
{
    event_loop_remove(machine_loop(s->m), block_job_event_fd(s->block_jobs[k].job));
    block_job_free(s->block_jobs[k].job);
    memmove(&s->block_jobs[k], &s->block_jobs[k + 1], sizeof(s->block_jobs[0]) * (size_t)(s->nblock_jobs - k - 1));
    s->nblock_jobs--;
}

/* Announces what job k did, lets it finalize or end as its auto-* flags
 * say, and drops it once it is gone (status null). */
static void pump(struct qmp_server *s, int k)
{
    struct block_job *job = s->block_jobs[k].job;
    bool gone = false;
    for (;;) {
        struct block_job_event ev[8];
        int n = block_job_take_events(job, ev, 8);
        for (int i = 0; i < n; i++) {
            announce(s, job, &ev[i]);
            gone = gone || ev[i].status == JOB_STATUS_NULL;
        }
        if (n == 0) {
            block_job_run_pending(job);
            if ((n = block_job_take_events(job, ev, 8)) == 0) {
                break;
            }
            for (int i = 0; i < n; i++) {
                announce(s, job, &ev[i]);
                gone = gone || ev[i].status == JOB_STATUS_NULL;
            }
        }
    }
    if (gone) {
        remove_job(s, k);
    }
}

static int index_of(struct qmp_server *s, struct block_job *job)
{
    for (int k = 0; k < s->nblock_jobs; k++) {
        if (s->block_jobs[k].job == job) {
            return k;
        }
    }
    return -1;
}

static void job_readable(void *opaque, int fd, uint32_t events)
{
    struct qmp_server *s = opaque;
    for (int k = 0; k < s->nblock_jobs; k++) {
        if (block_job_event_fd(s->block_jobs[k].job) == fd) {
            pump(s, k);
            return;
        }
    }
}

/* ---- finding jobs and nodes ---- */

int qmp_block_job_find(struct qmp_server *s, const char *id)
{
    for (int k = 0; id && k < s->nblock_jobs; k++) {
        struct block_job_info info;
        block_job_info(s->block_jobs[k].job, &info);
        if (strcmp(info.id, id) == 0) {
            return k;
        }
    }
    return -1;
}

bool qmp_disk_has_block_job(struct qmp_server *s, int disk, struct qmp_reply *r)
{
    for (int k = 0; k < s->nblock_jobs; k++) {
        if (s->block_jobs[k].disk == disk) {
            struct block_job_info info;
            block_job_info(s->block_jobs[k].job, &info);
            qmp_fail(r, QMP_GENERIC, "Node 'disk%d' is busy: block device is in use by block job: %s", disk,
                     block_job_type_name(info.type));
            return true;
        }
    }
    return false;
}

/* "diskN" or "diskN-backingK": the disk and the depth. */
static int parse_node(struct qmp_server *s, const char *name, int *depth)
{
    int disk, k, used = 0;
    char check[48];
    if (sscanf(name, "disk%d-backing%d%n", &disk, &k, &used) == 2 && used == (int)strlen(name) && k > 0) {
        snprintf(check, sizeof(check), "disk%d-backing%d", disk, k);
        *depth = k;
        return strcmp(check, name) == 0 && disk < machine_disk_count(s->m) ? disk : -1;
    }
    *depth = 0;
    return qmp_find_disk(s, name);
}

/* The depth of a layer of disk named by node (node_arg) or file name
 * (file_arg) in the chain; dflt when neither is given, -1 (reply failed)
 * when it is not in the chain. */
static int layer_depth(struct qmp_server *s, int disk, json_t *args, const char *node_arg, const char *file_arg,
                       int dflt, struct qmp_reply *r)
{
    const char *node = str_arg(args, node_arg), *file = file_arg ? str_arg(args, file_arg) : NULL;
    if (node && file) {
        qmp_fail(r, QMP_GENERIC, "'%s' and '%s' cannot be used at the same time", file_arg, node_arg);
        return -1;
    }
    int depth;
    if (node) {
        if (parse_node(s, node, &depth) != disk) {
            qmp_fail(r, QMP_GENERIC, "Node '%s' is not in the backing chain of 'disk%d'", node, disk);
            return -1;
        }
        return depth;
    }
    if (!file) {
        return dflt;
    }
    struct disk_layer layers[MAX_LAYERS];
    bool ro;
    int n = machine_disk_chain(s->m, disk, layers, MAX_LAYERS, &ro);
    char want[PATH_MAX], have[PATH_MAX];
    for (int d = 0; realpath(file, want) && d < n; d++) {
        if (realpath(layers[d].filename, have) && strcmp(want, have) == 0) {
            return d;
        }
    }
    qmp_fail(r, QMP_GENERIC, "Can't find '%s' in the backing chain", file);
    return -1;
}

static int chain_length(struct qmp_server *s, int disk)
{
    struct disk_layer layers[MAX_LAYERS];
    bool ro;
    return machine_disk_chain(s->m, disk, layers, MAX_LAYERS, &ro);
}

/* ---- starting ---- */

#define COMMON_ARGS                                                                          \
    { "job-id", JSON_STRING, true }, { "device", JSON_STRING, false },                       \
    { "speed", JSON_INTEGER, true }, { "auto-finalize", JSON_TRUE, true },                   \
    { "auto-dismiss", JSON_TRUE, true }, { "filter-node-name", JSON_STRING, true }

const struct qmp_arg qmp_block_commit_args[] = {
    COMMON_ARGS, { "base-node", JSON_STRING, true }, { "base", JSON_STRING, true }, { "top-node", JSON_STRING, true },
    { "top", JSON_STRING, true }, { "backing-file", JSON_STRING, true }, { "on-error", JSON_STRING, true },
    { NULL, 0, false },
};
const struct qmp_arg qmp_block_stream_args[] = {
    COMMON_ARGS, { "base-node", JSON_STRING, true }, { "base", JSON_STRING, true }, { "bottom", JSON_STRING, true },
    { "backing-file", JSON_STRING, true }, { "on-error", JSON_STRING, true }, { NULL, 0, false },
};
const struct qmp_arg qmp_drive_backup_args[] = {
    COMMON_ARGS, { "target", JSON_STRING, false }, { "format", JSON_STRING, true }, { "sync", JSON_STRING, false },
    { "mode", JSON_STRING, true }, { "bitmap", JSON_STRING, true }, { "bitmap-mode", JSON_STRING, true },
    { "compress", JSON_TRUE, true }, { "on-source-error", JSON_STRING, true },
    { "on-target-error", JSON_STRING, true }, { NULL, 0, false },
};
const struct qmp_arg qmp_blockdev_backup_args[] = {
    COMMON_ARGS, { "target", JSON_STRING, false }, { "sync", JSON_STRING, false }, { "bitmap", JSON_STRING, true },
    { "bitmap-mode", JSON_STRING, true }, { "compress", JSON_TRUE, true },
    { "on-source-error", JSON_STRING, true }, { "on-target-error", JSON_STRING, true }, { NULL, 0, false },
};

/* Checks what every job takes and fills p; returns the disk or -1. */
static int common_params(struct qmp_server *s, json_t *args, enum block_job_type type, struct block_job_params *p,
                         struct qmp_reply *r)
{
    const char *dev = str_arg(args, "device"), *id = str_arg(args, "job-id");
    int depth, disk = parse_node(s, dev, &depth);
    json_int_t speed = json_integer_value(json_object_get(args, "speed"));
    static const char *const error_args[] = { "on-error", "on-source-error", "on-target-error" };
    *p = (struct block_job_params){ .type = type, .speed = (uint64_t)speed,
                                    .auto_finalize = bool_arg(args, "auto-finalize", true),
                                    .auto_dismiss = bool_arg(args, "auto-dismiss", true) };
    if (disk < 0) {
        qmp_fail(r, QMP_GENERIC, "Cannot find device='%s' nor node-name='%s'", dev, dev);
        return -1;
    }
    if (depth > 0) {
        qmp_fail(r, QMP_GENERIC, "cowvisor runs jobs on a disk's top node ('disk%d'), not on '%s'", disk, dev);
        return -1;
    }
    if (speed < 0) {
        qmp_fail(r, QMP_GENERIC, "Parameter 'speed' expects a non-negative value");
        return -1;
    }
    for (size_t i = 0; i < sizeof(error_args) / sizeof(error_args[0]); i++) {
        const char *v = str_arg(args, error_args[i]);
        if (v && strcmp(v, "report") != 0) {
            qmp_fail(r, QMP_GENERIC, "%s '%s' is not supported: cowvisor's jobs stop at the first error (report)",
                     error_args[i], v);
            return -1;
        }
    }
    if (json_object_get(args, "filter-node-name")) {
        qmp_fail(r, QMP_GENERIC, "filter-node-name is not supported: cowvisor's jobs have no filter node");
        return -1;
    }
    snprintf(p->id, sizeof(p->id), "%s", id ? id : dev);
    if (qmp_block_job_find(s, p->id) >= 0 || qmp_snapshot_job_find(s, p->id) >= 0) {
        qmp_fail(r, QMP_GENERIC, "Job ID '%s' already in use", p->id);
        return -1;
    }
    if (s->nblock_jobs == QMP_MAX_BLOCK_JOBS) {
        qmp_fail(r, QMP_GENERIC, "Too many block jobs");
        return -1;
    }
    return qmp_disk_has_block_job(s, disk, r) ? -1 : disk;
}

/* Starts the job on disk (p->target, if any, is the job's even on failure). */
static void start(struct qmp_server *s, int disk, struct block_job_params *p, struct qmp_reply *r)
{
    struct block_job_host host;
    struct error err = { 0 };
    struct block_job *job = NULL;
    int ret = machine_disk_job_host(s->m, disk, &host, &err);
    if (ret < 0) {
        blockdev_close(p->target);
    } else {
        ret = block_job_start(&job, p, &host, &err);
    }
    if (ret == 0 && event_loop_add(machine_loop(s->m), block_job_event_fd(job), EPOLLIN, job_readable, s, &err) < 0) {
        block_job_free(job);
        ret = -1;
    }
    if (ret < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    s->block_jobs[s->nblock_jobs++] = (struct qmp_block_job){ job, disk };
    pump(s, s->nblock_jobs - 1);
}

void qmp_block_commit(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    int disk;
    if (!qmp_check_args(args, qmp_block_commit_args, r) || (disk = common_params(s, args, BLOCK_JOB_COMMIT, &p, r)) < 0) {
        return;
    }
    int n = chain_length(s, disk);
    p.top_depth = layer_depth(s, disk, args, "top-node", "top", 0, r);
    p.base_depth = p.top_depth < 0 ? -1 : layer_depth(s, disk, args, "base-node", "base", n - 1, r);
    if (p.base_depth < 0) {
        return;
    }
    if (n < 2) {
        qmp_fail(r, QMP_GENERIC, "Top image file disk%d has no backing file: nothing to commit", disk);
        return;
    }
    if (p.base_depth <= p.top_depth) {
        qmp_fail(r, QMP_GENERIC, "Base (depth %d) is not below top (depth %d) in the chain of 'disk%d'",
                 p.base_depth, p.top_depth, disk);
        return;
    }
    p.backing_file = str_arg(args, "backing-file");
    if (p.backing_file && p.top_depth == 0) {
        qmp_fail(r, QMP_GENERIC, "backing-file cannot be set when committing the active layer");
        return;
    }
    start(s, disk, &p, r);
}

void qmp_block_stream(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    int disk;
    if (!qmp_check_args(args, qmp_block_stream_args, r) || (disk = common_params(s, args, BLOCK_JOB_STREAM, &p, r)) < 0) {
        return;
    }
    int n = chain_length(s, disk), bottom;
    p.base_depth = layer_depth(s, disk, args, "base-node", "base", n, r);
    if (p.base_depth < 0 || (bottom = layer_depth(s, disk, args, "bottom", NULL, -2, r)) == -1) {
        return;
    }
    if (bottom >= 0) {
        if (json_object_get(args, "base") || json_object_get(args, "base-node")) {
            qmp_fail(r, QMP_GENERIC, "'bottom' cannot be specified along with 'base' or 'base-node'");
            return;
        }
        p.base_depth = bottom + 1;
    }
    if (p.base_depth == 0) {
        qmp_fail(r, QMP_GENERIC, "The base of a stream must be below its top node 'disk%d'", disk);
        return;
    }
    p.backing_file = str_arg(args, "backing-file");
    start(s, disk, &p, r);
}

/* The target drive-backup writes: created (mode absolute-paths) or opened
 * (existing), the source's size, with the source's backing file for
 * sync=top. */
static int open_backup_target(struct qmp_server *s, int disk, json_t *args, bool top, struct blockdev **out,
                              struct error *err)
{
    struct disk_layer layers[MAX_LAYERS];
    bool ro;
    int n = machine_disk_chain(s->m, disk, layers, MAX_LAYERS, &ro);
    const char *target = str_arg(args, "target"), *format = str_arg(args, "format"), *mode = str_arg(args, "mode");
    if (!format) {
        format = layers[0].format;
    }
    if (!mode || strcmp(mode, "absolute-paths") == 0) {
        struct blockdev_create_opts o;
        blockdev_create_opts_init(&o);
        o.format = format;
        o.size = layers[0].size;
        char backing[PATH_MAX];
        if (top && n > 1 && realpath(layers[1].filename, backing)) {
            o.backing_file = backing;
            o.backing_format = layers[1].format;
        }
        int ret = blockdev_create(target, &o, err);
        if (ret < 0) {
            return ret;
        }
    } else if (strcmp(mode, "existing") != 0) {
        return error_set(err, -EINVAL, "Parameter 'mode' does not accept value '%s'", mode);
    }
    struct blockdev_open_opts o = { .format = format };
    return blockdev_open(out, target, &o, err);
}

void qmp_drive_backup(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    int disk;
    if (!qmp_check_args(args, qmp_drive_backup_args, r) || (disk = common_params(s, args, BLOCK_JOB_BACKUP, &p, r)) < 0) {
        return;
    }
    const char *sync = str_arg(args, "sync");
    if (strcmp(sync, "full") != 0 && strcmp(sync, "top") != 0) {
        /* bitmap/incremental need the persistent dirty bitmaps (the job's
         * granules are their hook); none would need a backing chain onto
         * the running disk. */
        qmp_fail(r, QMP_GENERIC, "sync mode '%s' is not supported yet (full and top are)", sync);
        return;
    }
    if (json_object_get(args, "bitmap") || bool_arg(args, "compress", false)) {
        qmp_fail(r, QMP_GENERIC, "%s is not supported yet", json_object_get(args, "bitmap") ? "bitmap" : "compress");
        return;
    }
    p.top_only = strcmp(sync, "top") == 0;
    struct error err = { 0 };
    if (open_backup_target(s, disk, args, p.top_only, &p.target, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    start(s, disk, &p, r);
}

void qmp_blockdev_backup(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_blockdev_backup_args, r)) {
        return;
    }
    const char *target = str_arg(args, "target");
    int depth;
    if (parse_node(s, target, &depth) >= 0) {
        qmp_fail(r, QMP_GENERIC, "Node '%s' is in use by a disk: it cannot be a backup target", target);
        return;
    }
    /* Targets are nodes blockdev-add makes, which cowvisor has not yet. */
    qmp_fail(r, QMP_GENERIC, "Cannot find device='%s' nor node-name='%s'", target, target);
}

/* ---- verbs ---- */

/* The job named by args' "id" (job-*) or "device" (block-job-*), or -1
 * with the reply failed as QEMU fails it. */
static int find_job_arg(struct qmp_server *s, json_t *args, const char *key, struct qmp_reply *r)
{
    const char *id = str_arg(args, key);
    int k = qmp_block_job_find(s, id);
    if (k < 0 && strcmp(key, "id") == 0) {
        qmp_fail(r, QMP_GENERIC, "Job not found");
    } else if (k < 0) {
        qmp_fail(r, QMP_DEVICE_NOT_ACTIVE, "Block job '%s' not found", id ? id : "");
    }
    return k;
}

const struct qmp_arg qmp_device_args[] = { { "device", JSON_STRING, false }, { NULL, 0, false } };
const struct qmp_arg qmp_block_job_cancel_args[] = {
    { "device", JSON_STRING, false }, { "force", JSON_TRUE, true }, { NULL, 0, false },
};
const struct qmp_arg qmp_block_job_set_speed_args[] = {
    { "device", JSON_STRING, false }, { "speed", JSON_INTEGER, false }, { NULL, 0, false },
};

enum verb { PAUSE, RESUME, CANCEL, FORCE_CANCEL, COMPLETE, FINALIZE, DISMISS };

static void run_verb(struct qmp_server *s, json_t *args, const struct qmp_arg *spec, const char *key, enum verb v,
                     struct qmp_reply *r)
{
    int k;
    if (!qmp_check_args(args, spec, r) || (k = find_job_arg(s, args, key, r)) < 0) {
        return;
    }
    struct block_job *job = s->block_jobs[k].job;
    struct error err = { 0 };
    int ret = v == PAUSE ? block_job_pause(job, &err) : v == RESUME ? block_job_resume(job, &err)
            : v == CANCEL ? block_job_cancel(job, bool_arg(args, "force", false), &err)
            : v == FORCE_CANCEL ? block_job_cancel(job, true, &err) : v == COMPLETE ? block_job_complete(job, &err)
            : v == FINALIZE ? block_job_finalize(job, &err) : block_job_dismiss(job, &err);
    if (ret < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
    pump(s, index_of(s, job));
}

void qmp_job_pause(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", PAUSE, r); }
void qmp_job_resume(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", RESUME, r); }
void qmp_job_cancel(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", FORCE_CANCEL, r); }
void qmp_job_complete(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", COMPLETE, r); }
void qmp_job_finalize(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", FINALIZE, r); }
void qmp_block_job_pause(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_device_args, "device", PAUSE, r); }
void qmp_block_job_resume(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_device_args, "device", RESUME, r); }
void qmp_block_job_complete(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_device_args, "device", COMPLETE, r); }
void qmp_block_job_cancel(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_block_job_cancel_args, "device", CANCEL, r); }
void qmp_block_job_finalize(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", FINALIZE, r); }
void qmp_block_job_dismiss(struct qmp_server *s, json_t *args, struct qmp_reply *r) { run_verb(s, args, qmp_job_id_args, "id", DISMISS, r); }

void qmp_block_job_set_speed(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    int k;
    if (!qmp_check_args(args, qmp_block_job_set_speed_args, r) || (k = find_job_arg(s, args, "device", r)) < 0) {
        return;
    }
    struct error err = { 0 };
    if (block_job_set_speed(s->block_jobs[k].job, json_integer_value(json_object_get(args, "speed")), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

/* job-dismiss for a block job; false when id is no block job's. */
bool qmp_block_job_dismiss_id(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_block_job_find(s, str_arg(args, "id")) < 0) {
        return false;
    }
    run_verb(s, args, qmp_job_id_args, "id", DISMISS, r);
    return true;
}

/* ---- queries ---- */

void qmp_query_block_jobs(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    json_t *list = json_array();
    for (int k = 0; k < s->nblock_jobs; k++) {
        struct block_job_info i;
        block_job_info(s->block_jobs[k].job, &i);
        json_t *o = json_pack("{s:b,s:s,s:s,s:b,s:b,s:I,s:I,s:s,s:b,s:I,s:b,s:s}", "auto-finalize", i.auto_finalize,
                              "io-status", i.io_error ? "failed" : "ok", "device", i.id, "auto-dismiss",
                              i.auto_dismiss, "busy", i.busy, "len", (json_int_t)i.len, "offset",
                              (json_int_t)i.offset, "status", block_job_status_name(i.status), "paused", i.paused,
                              "speed", (json_int_t)i.speed, "ready", i.ready, "type", block_job_type_name(i.type));
        if (i.error[0]) {
            json_object_set_new(o, "error", json_string(i.error));
        }
        json_array_append_new(list, o);
    }
    r->ret = list;
}

void qmp_block_jobs_list(struct qmp_server *s, json_t *list)
{
    for (int k = s->nblock_jobs - 1; k >= 0; k--) {
        struct block_job_info i;
        block_job_info(s->block_jobs[k].job, &i);
        json_t *o = json_pack("{s:I,s:s,s:I,s:s,s:s}", "current-progress", (json_int_t)i.offset, "status",
                              block_job_status_name(i.status), "total-progress", (json_int_t)i.len, "type",
                              block_job_type_name(i.type), "id", i.id);
        if (i.error[0]) {
            json_object_set_new(o, "error", json_string(i.error));
        }
        json_array_append_new(list, o);
    }
}

void qmp_block_jobs_free(struct qmp_server *s)
{
    while (s->nblock_jobs > 0) {
        remove_job(s, s->nblock_jobs - 1);
    }
}
