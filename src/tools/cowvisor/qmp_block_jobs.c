/* Block jobs over QMP, in QEMU 7.2's shapes: block-commit, block-stream,
 * drive-backup and blockdev-backup (full, top, and bitmap or incremental
 * over a dirty bitmap, with QEMU's bitmap modes),
 * the job-* and block-job-* verbs, query-block-jobs and the block jobs of
 * query-jobs, and the events (JOB_STATUS_CHANGE, BLOCK_JOB_READY,
 * BLOCK_JOB_PENDING, BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED, BLOCK_JOB_ERROR). The jobs
 * themselves are block/block_job.h's; this file names nodes, checks
 * arguments and turns the jobs' queued status changes into events. A
 * disk's nodes are "diskN" and its backing layers "diskN-backingK"; jobs
 * also run on the nodes blockdev-add made (their top node). */
#include "qmp_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "block/block_job.h"
#include "block/blockdev.h"
#include "machine/block_nodes.h"
#include "util/dirty_bitmap.h"

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

/* The backup's bitmap at its end, as QEMU's backup_cleanup_sync_bitmap:
 * after a success (unless never) it holds the writes made since the
 * start; otherwise the bits it had come back. On a failure with always
 * QEMU gives back only the bits not yet copied; all of them come back
 * here (a superset: nothing dirty is ever lost). */
static void release_bitmap(struct qmp_bitmap_hold *h, bool success)
{
    if (h->bd) {
        blockdev_bitmap_backup_end(h->bd, h->name, h->taken, !success || h->mode == QMP_BITMAP_NEVER);
        h->bd = NULL;
        h->taken = NULL;
    }
}

/* A backup target's image was taken by the job, which closed it (at its
 * end, or when it failed to start): the node opens it again. */
static void give_back_target(struct qmp_server *s, struct block_node *target)
{
    struct error err = { 0 };
    if (block_nodes_reopen(machine_block_nodes(s->m), target, &err) < 0) {
        fprintf(stderr, "cowvisor: node '%s' could not reopen its image after a backup: %s\n", target->name,
                err.msg);
    }
}

static void remove_job(struct qmp_server *s, int k)
{
    struct qmp_block_job *bj = &s->block_jobs[k];
    release_bitmap(&bj->bitmap, false);
    if (bj->node) {
        bj->node->jobs--;
    }
    if (bj->target) {
        bj->target->jobs--;
        bj->target->job_target[0] = 0;
        give_back_target(s, bj->target);
    }
    event_loop_remove(machine_loop(s->m), block_job_event_fd(s->block_jobs[k].job));
    block_job_free(s->block_jobs[k].job);
    memmove(&s->block_jobs[k], &s->block_jobs[k + 1], sizeof(s->block_jobs[0]) * (size_t)(s->nblock_jobs - k - 1));
    s->nblock_jobs--;
}

/* Announces what job k did, lets it finalize or end as its auto-* flags
 * say, and drops it once it is gone (status null). */
/* Announces events; a backup's bitmap is settled before its end is. */
static bool announce_all(struct qmp_server *s, struct qmp_block_job *bj, const struct block_job_event *ev, int n)
{
    bool gone = false;
    for (int i = 0; i < n; i++) {
        if (ev[i].status == JOB_STATUS_CONCLUDED) {
            release_bitmap(&bj->bitmap, !ev[i].cancelled && !ev[i].error[0]);
        }
        announce(s, bj->job, &ev[i]);
        gone = gone || ev[i].status == JOB_STATUS_NULL;
    }
    return gone;
}

static void pump(struct qmp_server *s, int k)
{
    struct qmp_block_job *bj = &s->block_jobs[k];
    struct block_job *job = bj->job;
    bool gone = false;
    for (;;) {
        struct block_job_event ev[8];
        int n = block_job_take_events(job, ev, 8);
        gone = announce_all(s, bj, ev, n) || gone;
        if (n == 0) {
            block_job_run_pending(job);
            if ((n = block_job_take_events(job, ev, 8)) == 0) {
                break;
            }
            gone = announce_all(s, bj, ev, n) || gone;
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

/* What a job runs on: a disk or a node blockdev-add made. */
struct subject {
    int disk;                   /* -1: the node */
    struct block_node *node;
    char name[48];              /* its top node's name */
};

static bool subject_found(const struct subject *j)
{
    return j->disk >= 0 || j->node;
}

static bool same_subject(const struct subject *a, const struct subject *b)
{
    return subject_found(a) && a->disk == b->disk && a->node == b->node;
}

static bool has_block_job(struct qmp_server *s, const struct subject *j, struct qmp_reply *r)
{
    for (int k = 0; k < s->nblock_jobs; k++) {
        if (s->block_jobs[k].disk == j->disk && s->block_jobs[k].node == j->node) {
            struct block_job_info info;
            block_job_info(s->block_jobs[k].job, &info);
            qmp_fail(r, QMP_GENERIC, "Node '%s' is busy: block device is in use by block job: %s", j->name,
                     block_job_type_name(info.type));
            return true;
        }
    }
    return false;
}

bool qmp_disk_has_block_job(struct qmp_server *s, int disk, struct qmp_reply *r)
{
    struct subject j = { .disk = disk };
    snprintf(j.name, sizeof(j.name), "disk%d", disk);
    return has_block_job(s, &j, r);
}

bool qmp_block_job_running(struct qmp_server *s, struct qmp_reply *r)
{
    for (int k = 0; k < s->nblock_jobs; k++) {
        struct block_job_info info;
        block_job_info(s->block_jobs[k].job, &info);
        if (info.status != JOB_STATUS_CONCLUDED && info.status != JOB_STATUS_NULL) {
            char name[48];
            snprintf(name, sizeof(name), "disk%d", s->block_jobs[k].disk);
            qmp_fail(r, QMP_GENERIC, "Node '%s' is busy: block device is in use by block job: %s",
                     s->block_jobs[k].node ? s->block_jobs[k].node->name : name, block_job_type_name(info.type));
            return true;
        }
    }
    return false;
}

bool qmp_block_jobs_refuse(struct qmp_server *s, const char *command, struct qmp_reply *r)
{
    static const char *const refused[] = { "migrate", "snapshot-save", "snapshot-load" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (strcmp(command, refused[i]) == 0) {
            return qmp_block_job_running(s, r);
        }
    }
    return false;
}

/* disk, or -1 when it has no image (memory ran out in an image switch):
 * a job has nothing to work on. */
static int disk_with_image(struct qmp_server *s, int disk)
{
    struct disk_layer top;
    bool ro;
    return disk >= 0 && qmp_disk_layers(s, disk, &top, NULL, 1, &ro) == 1 ? disk : -1;
}

/* A machine disk's layer (its device "diskN" or a layer's node "#blockNNN":
 * the disk and the depth) or an added node. */
static struct subject parse_node(struct qmp_server *s, const char *name, int *depth)
{
    struct subject j = { .disk = -1 };
    int disk = qmp_find_disk_node(s, name, depth);
    if (disk >= 0) {
        j.disk = disk_with_image(s, disk);
        snprintf(j.name, sizeof(j.name), "disk%d", disk);
        return j;
    }
    j.node = machine_block_node_find(s->m, name);
    snprintf(j.name, sizeof(j.name), "%s", name);
    return j;
}

/* The layers of the subject's chain from its top. */
static int subject_chain(struct qmp_server *s, const struct subject *j, struct disk_layer *out, int max)
{
    bool ro;
    if (j->disk >= 0) {
        return qmp_disk_layers(s, j->disk, out, NULL, max, &ro);
    }
    int n = 0;
    for (struct blockdev *bd = j->node->node.bd; bd && n < max; bd = blockdev_backing(bd)) {
        out[n++] = (struct disk_layer){ blockdev_filename(bd), blockdev_format(bd), blockdev_backing_filename(bd),
                                        blockdev_size(bd), blockdev_cluster_size(bd), bd };
    }
    return n;
}

/* The depth of a layer of disk named by node (node_arg) or file name
 * (file_arg) in the chain; dflt when neither is given, -1 (reply failed)
 * when it is not in the chain. */
static int layer_depth(struct qmp_server *s, const struct subject *j, json_t *args, const char *node_arg,
                       const char *file_arg, int dflt, struct qmp_reply *r)
{
    const char *node = str_arg(args, node_arg), *file = file_arg ? str_arg(args, file_arg) : NULL;
    if (node && file) {
        qmp_fail(r, QMP_GENERIC, "'%s' and '%s' cannot be used at the same time", file_arg, node_arg);
        return -1;
    }
    int depth;
    if (node) {
        struct subject named = parse_node(s, node, &depth);
        if (!same_subject(&named, j)) {
            qmp_fail(r, QMP_GENERIC, "Node '%s' is not in the backing chain of '%s'", node, j->name);
            return -1;
        }
        return depth;
    }
    if (!file) {
        return dflt;
    }
    struct disk_layer layers[MAX_LAYERS];
    int n = subject_chain(s, j, layers, MAX_LAYERS);
    char want[PATH_MAX], have[PATH_MAX];
    for (int d = 0; realpath(file, want) && d < n; d++) {
        if (realpath(layers[d].filename, have) && strcmp(want, have) == 0) {
            return d;
        }
    }
    qmp_fail(r, QMP_GENERIC, "Can't find '%s' in the backing chain", file);
    return -1;
}

static int chain_length(struct qmp_server *s, const struct subject *j)
{
    struct disk_layer layers[MAX_LAYERS];
    return subject_chain(s, j, layers, MAX_LAYERS);
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

/* Checks what every job takes and fills p and j; false: r failed. */
static bool common_params(struct qmp_server *s, json_t *args, enum block_job_type type, struct block_job_params *p,
                          struct subject *j, struct qmp_reply *r)
{
    const char *dev = str_arg(args, "device"), *id = str_arg(args, "job-id");
    int depth;
    *j = parse_node(s, dev, &depth);
    json_int_t speed = json_integer_value(json_object_get(args, "speed"));
    static const char *const error_args[] = { "on-error", "on-source-error", "on-target-error" };
    *p = (struct block_job_params){ .type = type, .speed = (uint64_t)speed,
                                    .auto_finalize = bool_arg(args, "auto-finalize", true),
                                    .auto_dismiss = bool_arg(args, "auto-dismiss", true) };
    if (!subject_found(j)) {
        qmp_fail(r, QMP_GENERIC, "Cannot find device='%s' nor node-name='%s'", dev, dev);
        return false;
    }
    if (j->node && !j->node->node.bd) {
        qmp_fail(r, QMP_GENERIC, "Node '%s' is busy: block device is in use by block job: backup", dev);
        return false;
    }
    if (depth > 0) {
        qmp_fail(r, QMP_GENERIC, "cowvisor runs jobs on a disk's top node ('%s'), not on '%s'", j->name, dev);
        return false;
    }
    if (speed < 0) {
        qmp_fail(r, QMP_GENERIC, "Parameter 'speed' expects a non-negative value");
        return false;
    }
    for (size_t i = 0; i < sizeof(error_args) / sizeof(error_args[0]); i++) {
        const char *v = str_arg(args, error_args[i]);
        if (v && strcmp(v, "report") != 0) {
            qmp_fail(r, QMP_GENERIC, "%s '%s' is not supported: cowvisor's jobs stop at the first error (report)",
                     error_args[i], v);
            return false;
        }
    }
    if (json_object_get(args, "filter-node-name")) {
        qmp_fail(r, QMP_GENERIC, "filter-node-name is not supported: cowvisor's jobs have no filter node");
        return false;
    }
    snprintf(p->id, sizeof(p->id), "%s", id ? id : dev);
    if (qmp_block_job_find(s, p->id) >= 0 || qmp_snapshot_job_find(s, p->id) >= 0) {
        qmp_fail(r, QMP_GENERIC, "Job ID '%s' already in use", p->id);
        return false;
    }
    if (s->nblock_jobs == QMP_MAX_BLOCK_JOBS) {
        qmp_fail(r, QMP_GENERIC, "Too many block jobs");
        return false;
    }
    return !has_block_job(s, j, r);
}

/* Starts the job on j (p->target, if any, is the job's even on failure;
 * so is the bitmap hold, given back on failure). */
static void start_backup(struct qmp_server *s, const struct subject *j, struct block_job_params *p,
                         struct qmp_bitmap_hold *hold, struct block_node *target, struct qmp_reply *r)
{
    struct block_job_host host;
    struct error err = { 0 };
    struct block_job *job = NULL;
    int ret = 0;
    if (j->node) {
        block_node_job_host(j->node, &host);
    } else {
        ret = machine_disk_job_host(s->m, j->disk, &host, &err);
    }
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
        release_bitmap(hold, false);
        if (target) {
            give_back_target(s, target);
        }
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    s->block_jobs[s->nblock_jobs++] = (struct qmp_block_job){ job, j->disk, j->node, target, *hold };
    if (j->node) {
        j->node->jobs++;
    }
    if (target) {
        target->jobs++;
        snprintf(target->job_target, sizeof(target->job_target), "%s", block_job_type_name(p->type));
    }
    pump(s, s->nblock_jobs - 1);
}

static void start(struct qmp_server *s, const struct subject *j, struct block_job_params *p, struct qmp_reply *r)
{
    struct qmp_bitmap_hold none = { 0 };
    start_backup(s, j, p, &none, NULL, r);
}

void qmp_block_commit(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    struct subject j;
    if (!qmp_check_args(args, qmp_block_commit_args, r) || !common_params(s, args, BLOCK_JOB_COMMIT, &p, &j, r)) {
        return;
    }
    int n = chain_length(s, &j);
    p.top_depth = layer_depth(s, &j, args, "top-node", "top", 0, r);
    p.base_depth = p.top_depth < 0 ? -1 : layer_depth(s, &j, args, "base-node", "base", n - 1, r);
    if (p.base_depth < 0) {
        return;
    }
    if (n < 2) {
        qmp_fail(r, QMP_GENERIC, "Top image file %s has no backing file: nothing to commit", j.name);
        return;
    }
    if (p.base_depth <= p.top_depth) {
        qmp_fail(r, QMP_GENERIC, "Base (depth %d) is not below top (depth %d) in the chain of '%s'",
                 p.base_depth, p.top_depth, j.name);
        return;
    }
    p.backing_file = str_arg(args, "backing-file");
    if (p.backing_file && p.top_depth == 0) {
        qmp_fail(r, QMP_GENERIC, "backing-file cannot be set when committing the active layer");
        return;
    }
    start(s, &j, &p, r);
}

void qmp_block_stream(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    struct subject j;
    if (!qmp_check_args(args, qmp_block_stream_args, r) || !common_params(s, args, BLOCK_JOB_STREAM, &p, &j, r)) {
        return;
    }
    int n = chain_length(s, &j), bottom;
    p.base_depth = layer_depth(s, &j, args, "base-node", "base", n, r);
    if (p.base_depth < 0 || (bottom = layer_depth(s, &j, args, "bottom", NULL, -2, r)) == -1) {
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
        qmp_fail(r, QMP_GENERIC, "The base of a stream must be below its top node '%s'", j.name);
        return;
    }
    p.backing_file = str_arg(args, "backing-file");
    start(s, &j, &p, r);
}

/* The target drive-backup writes: created (mode absolute-paths) or opened
 * (existing), the source's size, with the source's backing file for
 * sync=top. */
static int open_backup_target(struct qmp_server *s, const struct subject *j, json_t *args, bool top,
                              struct blockdev **out, struct error *err)
{
    struct disk_layer layers[MAX_LAYERS];
    int n = subject_chain(s, j, layers, MAX_LAYERS);
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

static bool has_bitmap(struct blockdev *bd, const char *name)
{
    struct blockdev_bitmap_info *list;
    int n;
    bool found = false;
    if (blockdev_bitmap_list(bd, &list, &n, NULL) == 0) {
        for (int i = 0; i < n; i++) {
            found = found || strcmp(list[i].name, name) == 0;
        }
        blockdev_bitmap_list_free(list, n);
    }
    return found;
}

static int enum_arg(json_t *args, const char *key, const char *const *values, int dflt, struct qmp_reply *r)
{
    const char *v = str_arg(args, key);
    for (int i = 0; v && values[i]; i++) {
        if (strcmp(v, values[i]) == 0) {
            return i;
        }
    }
    if (v) {
        qmp_fail(r, QMP_GENERIC, "Parameter '%s' does not accept value '%s'", key, v);
        return -1;
    }
    return dflt;
}

enum sync { SYNC_TOP, SYNC_FULL, SYNC_NONE, SYNC_INCREMENTAL, SYNC_BITMAP };

/* sync and the bitmap arguments, checked in QEMU's order (incremental is
 * bitmap with on-success); takes the source's bitmap into *hold. */
static int backup_sync(struct qmp_server *s, const struct subject *j, json_t *args, struct qmp_bitmap_hold *hold,
                       struct qmp_reply *r)
{
    static const char *const syncs[] = { "top", "full", "none", "incremental", "bitmap", NULL };
    static const char *const modes[] = { "on-success", "never", "always", NULL };
    int sync = enum_arg(args, "sync", syncs, -1, r), mode = enum_arg(args, "bitmap-mode", modes, -1, r);
    const char *bitmap = str_arg(args, "bitmap");
    if (sync < 0 || (json_object_get(args, "bitmap-mode") && mode < 0)) {
        return -1;
    }
    if ((sync == SYNC_BITMAP || sync == SYNC_INCREMENTAL) && !bitmap) {
        qmp_fail(r, QMP_GENERIC, "must provide a valid bitmap name for '%s' sync mode", syncs[sync]);
        return -1;
    }
    if (sync == SYNC_INCREMENTAL) {
        if (mode >= 0 && mode != QMP_BITMAP_ON_SUCCESS) {
            qmp_fail(r, QMP_GENERIC, "Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
            return -1;
        }
        sync = SYNC_BITMAP;
        mode = QMP_BITMAP_ON_SUCCESS;
    }
    if (sync == SYNC_NONE) {
        qmp_fail(r, QMP_GENERIC, "sync mode 'none' is not supported (full, top, bitmap and incremental are)");
        return -1;
    }
    if (!bitmap) {
        if (mode >= 0) {
            qmp_fail(r, QMP_GENERIC, "Cannot specify bitmap sync mode without a bitmap");
            return -1;
        }
        return sync;
    }
    struct disk_layer top;
    subject_chain(s, j, &top, 1);
    if (!top.bd || !has_bitmap(top.bd, bitmap)) {
        qmp_fail(r, QMP_GENERIC, "Bitmap '%s' could not be found", bitmap);
        return -1;
    }
    if (mode < 0) {
        qmp_fail(r, QMP_GENERIC, "Bitmap sync mode must be given when providing a bitmap");
        return -1;
    }
    struct error err = { 0 };
    if (blockdev_bitmap_backup_begin(top.bd, bitmap, &hold->taken, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return -1;
    }
    if (mode == QMP_BITMAP_NEVER && sync != SYNC_BITMAP) {
        blockdev_bitmap_backup_end(top.bd, bitmap, hold->taken, true);
        qmp_fail(r, QMP_GENERIC, "Bitmap sync mode 'never' has no meaningful effect when combined with sync mode "
                 "'%s'", syncs[sync]);
        return -1;
    }
    hold->bd = top.bd;
    snprintf(hold->name, sizeof(hold->name), "%s", bitmap);
    hold->mode = (enum qmp_bitmap_mode)mode;
    return sync;
}

/* What the job copies for that sync mode: all, the top's own ranges, or
 * the granules dirty in the bitmap when the job started. */
static void backup_ranges(struct block_job_params *p, int sync, const struct qmp_bitmap_hold *hold)
{
    p->top_only = sync == SYNC_TOP;
    if (sync == SYNC_BITMAP) {
        p->granules = dirty_bitmap_words(hold->taken);
        p->granule_size = dirty_bitmap_granularity(hold->taken);
    }
}

/* What both backups check and copy; false: r failed. */
static bool backup_params(struct qmp_server *s, const struct subject *j, json_t *args, struct block_job_params *p,
                          struct qmp_bitmap_hold *hold, struct qmp_reply *r)
{
    if (bool_arg(args, "compress", false)) {
        qmp_fail(r, QMP_GENERIC, "compress is not supported yet");
        return false;
    }
    int sync = backup_sync(s, j, args, hold, r);
    if (sync >= 0) {
        backup_ranges(p, sync, hold);
    }
    return sync >= 0;
}

void qmp_drive_backup(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    struct subject j;
    if (!qmp_check_args(args, qmp_drive_backup_args, r) || !common_params(s, args, BLOCK_JOB_BACKUP, &p, &j, r)) {
        return;
    }
    struct qmp_bitmap_hold hold = { 0 };
    if (!backup_params(s, &j, args, &p, &hold, r)) {
        return;
    }
    struct error err = { 0 };
    if (open_backup_target(s, &j, args, p.top_only, &p.target, &err) < 0) {
        release_bitmap(&hold, false);
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    start_backup(s, &j, &p, &hold, NULL, r);
}

/* blockdev-backup's target: a node blockdev-add made that nothing else
 * uses; the job takes its image (block_node_take_image). */
static struct block_node *backup_target_node(struct qmp_server *s, const char *target, struct blockdev **out,
                                             struct qmp_reply *r)
{
    int depth;
    struct subject t = parse_node(s, target, &depth);
    if (t.disk >= 0) {
        qmp_fail(r, QMP_GENERIC, "Node '%s' is in use by a disk: it cannot be a backup target", target);
        return NULL;
    }
    if (!t.node) {
        qmp_fail(r, QMP_GENERIC, "Cannot find device='%s' nor node-name='%s'", target, target);
        return NULL;
    }
    if (t.node->device[0] || t.node->jobs) {
        qmp_fail(r, QMP_GENERIC, "Node '%s' is busy: it is in use by %s", target,
                 t.node->device[0] ? t.node->device : "a block job");
        return NULL;
    }
    if (!t.node->node.bd || blockdev_is_read_only(t.node->node.bd)) {
        qmp_fail(r, QMP_GENERIC, "Node '%s' is read-only: it cannot be a backup target", target);
        return NULL;
    }
    struct error err = { 0 };
    if (block_nodes_check_backup_target(machine_block_nodes(s->m), t.node, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return NULL;
    }
    *out = block_node_take_image(t.node);
    return t.node;
}

void qmp_blockdev_backup(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct block_job_params p;
    struct subject j;
    if (!qmp_check_args(args, qmp_blockdev_backup_args, r)) {
        return;
    }
    /* QEMU finds both nodes before it checks what uses them. */
    const char *target_name = str_arg(args, "target");
    int depth;
    struct subject source = parse_node(s, str_arg(args, "device"), &depth),
                   target_node = parse_node(s, target_name, &depth);
    if (subject_found(&source) && !subject_found(&target_node)) {
        qmp_fail(r, QMP_GENERIC, "Cannot find device='%s' nor node-name='%s'", target_name, target_name);
        return;
    }
    if (source.node && source.node == target_node.node) {
        qmp_fail(r, QMP_GENERIC, "Source and target cannot be the same");
        return;
    }
    if (!common_params(s, args, BLOCK_JOB_BACKUP, &p, &j, r)) {
        return;
    }
    struct qmp_bitmap_hold hold = { 0 };
    if (!backup_params(s, &j, args, &p, &hold, r)) {
        return;
    }
    struct block_node *target = backup_target_node(s, target_name, &p.target, r);
    if (!target) {
        release_bitmap(&hold, false);
        return;
    }
    start_backup(s, &j, &p, &hold, target, r);
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
