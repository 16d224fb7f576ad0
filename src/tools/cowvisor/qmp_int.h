/* Inside the QMP monitor: the server, its client, commands, jobs. */
#ifndef COWVISOR_QMP_INT_H
#define COWVISOR_QMP_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "qmp.h"
#include "qmp_output.h"
#include "util/server_socket.h"

#define QMP_MAX_JOBS 16

struct qmp_job {
    char id[64];
    char type[32];          /* snapshot-save, snapshot-load, snapshot-delete */
    const char *status;     /* QEMU's JobStatus names */
    char *error;            /* set when the job failed */
    json_t *args;
    bool scheduled;
};

#define QMP_MAX_BLOCK_JOBS 8

struct block_job;
struct block_node;
struct dirty_bitmap;
/* A backup's hold on its source's dirty bitmap (bitmap, incremental). */
enum qmp_bitmap_mode { QMP_BITMAP_ON_SUCCESS, QMP_BITMAP_NEVER, QMP_BITMAP_ALWAYS };
struct qmp_bitmap_hold {
    struct blockdev *bd;        /* NULL: the job holds no bitmap */
    char name[1024];
    struct dirty_bitmap *taken; /* its bits when the job started */
    enum qmp_bitmap_mode mode;
};
struct qmp_block_job {
    struct block_job *job;
    int disk;                   /* the disk it runs on, or -1 ... */
    struct block_node *node;    /* ... the blockdev-add node */
    struct block_node *target;  /* blockdev-backup's target node, or NULL */
    struct qmp_bitmap_hold bitmap;
};

struct qmp_server {
    struct machine *m;
    struct server_socket listen;
    int client_fd;
    struct qmp_output out;  /* what the client has yet to read */
    bool client_dead;       /* dropped: closed when control is back in the loop */
    bool out_watched;       /* EPOLLOUT asked for (output waits) */
    bool negotiated;
    char *in;               /* bytes received, not yet a whole JSON value */
    size_t in_len, in_cap;
    bool shutdown_sent;
    struct qmp_job jobs[QMP_MAX_JOBS];
    int njobs;
    struct qmp_block_job block_jobs[QMP_MAX_BLOCK_JOBS];
    int nblock_jobs;
};

/* Replies and events (to the connected client, if any). */
void qmp_send(struct qmp_server *s, json_t *msg);      /* steals msg */
void qmp_event(struct qmp_server *s, const char *name, json_t *data);   /* steals data (may be NULL) */

/* Error classes, as QEMU names them. */
#define QMP_GENERIC "GenericError"
#define QMP_NOT_FOUND "CommandNotFound"
#define QMP_DEVICE_NOT_FOUND "DeviceNotFound"

/* A command: fills *ret (a return value) or returns an error (class, desc). */
struct qmp_reply {
    json_t *ret;
    const char *err_class;
    char err_desc[1024];
};
void qmp_fail(struct qmp_reply *r, const char *cls, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef void (*qmp_handler)(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* NULL when there is no such command. */
qmp_handler qmp_find_command(const char *name);
/* The migration commands (qmp_migration.c). */
qmp_handler qmp_migration_command(const char *name);
void qmp_migration_list_commands(json_t *list);

/* Argument helpers: check names, types, missing and unexpected members. */
struct qmp_arg {
    const char *name;
    int type;               /* JSON_STRING, JSON_TRUE (bool), JSON_ARRAY (of strings), JSON_INTEGER */
    bool optional;
};
bool qmp_check_args(json_t *args, const struct qmp_arg *spec, struct qmp_reply *r);
/* spec's member named key, or NULL. */
const struct qmp_arg *qmp_arg_find(const struct qmp_arg *spec, const char *key);
extern const struct qmp_arg qmp_no_args[];

/* The command table (qmp_commands.c), ended by a NULL name. */
struct qmp_command {
    const char *name;
    qmp_handler fn;
    const struct qmp_arg *args;     /* for query-qmp-schema; NULL: none */
};
extern const struct qmp_command qmp_commands[];

/* The events this server sends (qmp_schema.c), ended by a NULL name. */
struct qmp_event_info {
    const char *name;
    const struct qmp_arg *data;     /* NULL: no data */
};
extern const struct qmp_event_info qmp_events[];

/* Index of the disk a device name ("diskN") designates, or -1. */
int qmp_find_disk(struct qmp_server *s, const char *name);

/* Machine disk i's layers from the top (machine_disk_chain), named as
 * QEMU names a -drive's nodes (qmp_disk_nodes.c): names[k] (may be NULL)
 * gets layer k's; a names entry is NULL only when the table is full. */
struct disk_node_name;
int qmp_disk_layers(struct qmp_server *s, int i, struct disk_layer *out, const struct disk_node_name **names,
                    int max, bool *ro);
/* Names the disks' new layers now, in the order QEMU opens them. */
void qmp_disk_nodes_sync(struct qmp_server *s);
/* The format node's name of a named layer ("": none). */
const char *qmp_disk_node_name(const struct disk_node_name *name);
/* The disk whose layer a node name designates, and the layer's depth: a
 * layer's format node ("#blockNNN") or, for the top, the device ("diskN")
 * as QEMU accepts a device name for its root node. -1: none. */
int qmp_find_disk_node(struct qmp_server *s, const char *name, int *depth);

/* VM control shared by commands, HMP and jobs: the machine's run state,
 * whose changes come back as STOP and RESUME events. */
void qmp_vm_stop(struct qmp_server *s);
void qmp_vm_cont(struct qmp_server *s);
const char *qmp_status_name(struct qmp_server *s);
/* Pauses for an operation and tells whether the VM was running. */
bool qmp_vm_pause_for(struct qmp_server *s);
void qmp_vm_resume_after(struct qmp_server *s, bool was_running);

void qmp_hmp(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* A line typed at the console's monitor (qmp_console.c): a console_monitor_fn. */
char *qmp_console_monitor_line(void *opaque, const char *line);
/* QMP's and HMP's quit: SHUTDOWN (host-qmp-quit), then the loop ends. */
void qmp_vm_quit(struct qmp_server *s);
extern const struct qmp_arg qmp_hmp_args[];
/* info WHAT (NULL: the list of info commands); cpu: for info registers,
 * -1 for all. */
void qmp_hmp_info(struct qmp_server *s, const char *what, int cpu, struct qmp_reply *r);
void qmp_hmp_help(struct qmp_reply *r);
/* An HMP reply's text, built with stdio (open_memstream). */
struct hmp_out {
    char *buf;
    size_t len;
    FILE *f;
};
void qmp_hmp_out_open(struct hmp_out *o);
/* The reply: each \n becomes \r\n, as HMP's lines end. */
json_t *qmp_hmp_out_close(struct hmp_out *o);

/* qemu-io DEVICE "COMMAND" (rest: what follows "qemu-io", modified). */
void qmp_hmp_qemu_io(struct qmp_server *s, char *rest, struct qmp_reply *r);
extern const struct qmp_arg qmp_snapshot_save_args[], qmp_snapshot_delete_args[], qmp_job_id_args[];

/* Block queries (qmp_block.c). */
void qmp_query_block(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_named_block_nodes(struct qmp_server *s, json_t *args, struct qmp_reply *r);
extern const struct qmp_arg qmp_named_block_nodes_args[];
void qmp_query_blockstats(struct qmp_server *s, json_t *args, struct qmp_reply *r);
extern const struct qmp_arg qmp_blockstats_args[];
void qmp_query_block_jobs(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_block_resize(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* blockdev-add, blockdev-del (qmp_blockdev.c). */
void qmp_blockdev_add(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_blockdev_del(struct qmp_server *s, json_t *args, struct qmp_reply *r);
extern const struct qmp_arg qmp_blockdev_del_args[];

/* device_add, device_del (qmp_device.c); the machine's device-deleted hook.
 * The device_add'ed disks a query lists: as many as PCI slots. */
#define QMP_MAX_HOTPLUGGED 32
void qmp_device_add(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_device_del(struct qmp_server *s, json_t *args, struct qmp_reply *r);
extern const struct qmp_arg qmp_device_add_args[], qmp_device_del_args[];
void qmp_device_deleted(void *opaque, const char *id, const char *path);

/* qmp_bitmap.c */
extern const struct qmp_arg qmp_bitmap_add_args[], qmp_bitmap_args[], qmp_bitmap_merge_args[];
void qmp_bitmap_add(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_bitmap_remove(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_bitmap_clear(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_bitmap_enable(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_bitmap_disable(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_bitmap_merge(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* The open layer a node name designates, or NULL after failing r as
 * block-dirty-bitmap-clear does. */
struct blockdev *qmp_bitmap_node(struct qmp_server *s, const char *node, struct qmp_reply *r);
/* transaction (qmp_transaction.c). */
void qmp_transaction(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* BlockDirtyInfo list of a node's bitmaps, or NULL when it has none. */
json_t *qmp_dirty_bitmaps_info(struct blockdev *bd);
extern const struct qmp_arg qmp_block_resize_args[];

/* The machine and the program (qmp_query.c). */
void qmp_query_cpus_fast(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_hotpluggable_cpus(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_version(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_kvm(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_name(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_uuid(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_target(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_machines(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_memory_size_summary(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_chardev(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_iothreads(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_query_events(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* Record/replay (qmp_replay.c). */
void qmp_query_replay(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_replay_break(struct qmp_server *s, json_t *args, struct qmp_reply *r);
extern const struct qmp_arg qmp_replay_break_args[];
void qmp_replay_delete_break(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_replay_seek(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* PCI (qmp_pci.c) and the schema (qmp_schema.c). */
void qmp_query_pci(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* A little-endian field of a function's configuration space. */
uint32_t qmp_pci_config_le(const uint8_t *config, int off, int size);
/* QEMU's description of the class cowvisor's devices use, NULL for others. */
const char *qmp_pci_class_desc(uint32_t class16);
void qmp_query_qmp_schema(struct qmp_server *s, json_t *args, struct qmp_reply *r);

/* QEMU 7.2, as the greeting and query-version say. */
#define QMP_QEMU_MAJOR 7
#define QMP_QEMU_MINOR 2
#define QMP_PACKAGE "cowvisor 0.1.0"
void qmp_job_start(struct qmp_server *s, const char *type, json_t *args, struct qmp_reply *r);
void qmp_query_jobs(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_job_dismiss(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* Block jobs (qmp_block_jobs.c). */
#define QMP_BLOCK_JOB_COMMANDS(X) \
    X(block-commit, qmp_block_commit, qmp_block_commit_args) \
    X(block-stream, qmp_block_stream, qmp_block_stream_args) \
    X(drive-backup, qmp_drive_backup, qmp_drive_backup_args) \
    X(blockdev-backup, qmp_blockdev_backup, qmp_blockdev_backup_args) \
    X(job-pause, qmp_job_pause, qmp_job_id_args) \
    X(job-resume, qmp_job_resume, qmp_job_id_args) \
    X(job-cancel, qmp_job_cancel, qmp_job_id_args) \
    X(job-complete, qmp_job_complete, qmp_job_id_args) \
    X(job-finalize, qmp_job_finalize, qmp_job_id_args) \
    X(block-job-pause, qmp_block_job_pause, qmp_device_args) \
    X(block-job-resume, qmp_block_job_resume, qmp_device_args) \
    X(block-job-complete, qmp_block_job_complete, qmp_device_args) \
    X(block-job-cancel, qmp_block_job_cancel, qmp_block_job_cancel_args) \
    X(block-job-set-speed, qmp_block_job_set_speed, qmp_block_job_set_speed_args) \
    X(block-job-finalize, qmp_block_job_finalize, qmp_job_id_args) \
    X(block-job-dismiss, qmp_block_job_dismiss, qmp_job_id_args)
#define QMP_DECLARE_COMMAND(name, fn, args) void fn(struct qmp_server *s, json_t *a, struct qmp_reply *r);
QMP_BLOCK_JOB_COMMANDS(QMP_DECLARE_COMMAND)
extern const struct qmp_arg qmp_block_commit_args[], qmp_block_stream_args[], qmp_drive_backup_args[],
    qmp_blockdev_backup_args[], qmp_device_args[], qmp_block_job_cancel_args[], qmp_block_job_set_speed_args[];
/* Fails the reply (with QEMU's op blocker words) and returns true while
 * any block job has not concluded: a snapshot, a snapshot load or a
 * migration would save, replace or hand over images the job is changing
 * (QEMU 7.2 lets them run alongside a backup; cowvisor does not). */
bool qmp_block_job_running(struct qmp_server *s, struct qmp_reply *r);
/* The same for the commands that do so (migrate, snapshot-save,
 * snapshot-load); false for every other command. */
bool qmp_block_jobs_refuse(struct qmp_server *s, const char *command, struct qmp_reply *r);
/* Fails the reply and returns true when a block job runs on disk. */
bool qmp_disk_has_block_job(struct qmp_server *s, int disk, struct qmp_reply *r);
/* The index of the block job or snapshot job with that id, or -1. */
int qmp_block_job_find(struct qmp_server *s, const char *id);
int qmp_snapshot_job_find(struct qmp_server *s, const char *id);
/* job-dismiss of a block job (false: id is no block job's). */
bool qmp_block_job_dismiss_id(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* query-jobs' entries for the block jobs, newest first. */
void qmp_block_jobs_list(struct qmp_server *s, json_t *list);
/* Cancels and frees every block job (at the end, disks still open). */
void qmp_block_jobs_free(struct qmp_server *s);
/* Runs jobs that were created (after their creation was answered). */
void qmp_jobs_run(struct qmp_server *s);
/* At quit: every job goes away (JOB_STATUS_CHANGE null, newest first). */
void qmp_jobs_end(struct qmp_server *s);
void qmp_jobs_free(struct qmp_server *s);

#endif
