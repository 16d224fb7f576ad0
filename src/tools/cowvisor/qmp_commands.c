/* The QMP commands cowvisor implements, with QEMU's argument names,
 * return shapes and error classes. */
#include "qmp_int.h"

#include "machine/block_nodes.h"
#include "qmp_json_u64.h"
#include "qmp_migration.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


const struct qmp_arg *qmp_arg_find(const struct qmp_arg *spec, const char *key)
{
    const struct qmp_arg *a = spec;
    while (a->name && strcmp(a->name, key) != 0) {
        a++;
    }
    return a->name ? a : NULL;
}

bool qmp_check_args(json_t *args, const struct qmp_arg *spec, struct qmp_reply *r)
{
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        const struct qmp_arg *a = qmp_arg_find(spec, key);
        if (!a) {
            qmp_fail(r, QMP_GENERIC, "Parameter '%s' is unexpected", key);
            return false;
        }
        uint64_t big;   /* a number past INT64_MAX, marked as a string (qmp_json_u64.h) is no string */
        bool ok = a->type == JSON_STRING ? json_is_string(v) && !qmp_json_get_u64(v, &big)
                : a->type == JSON_TRUE ? json_is_boolean(v)
                : a->type == JSON_ARRAY ? json_is_array(v)
                : a->type == JSON_INTEGER ? json_is_integer(v) : false;
        if (!ok) {
            const char *want = a->type == JSON_STRING ? "string" : a->type == JSON_TRUE ? "boolean"
                             : a->type == JSON_ARRAY ? "array" : "integer";
            qmp_fail(r, QMP_GENERIC, "Invalid parameter type for '%s', expected: %s", key, want);
            return false;
        }
    }
    for (const struct qmp_arg *a = spec; a->name; a++) {
        if (!a->optional && !json_object_get(args, a->name)) {
            qmp_fail(r, QMP_GENERIC, "Parameter '%s' is missing", a->name);
            return false;
        }
    }
    return true;
}

const struct qmp_arg qmp_no_args[] = { { NULL, 0, false } };

/* ---- run state ---- */

void qmp_vm_stop(struct qmp_server *s)
{
    machine_pause(s->m);
}

void qmp_vm_cont(struct qmp_server *s)
{
    machine_resume(s->m);
}

bool qmp_vm_pause_for(struct qmp_server *s)
{
    bool was_running = machine_run_state(s->m) == MACHINE_RUNNING;
    qmp_vm_stop(s);
    return was_running;
}

void qmp_vm_resume_after(struct qmp_server *s, bool was_running)
{
    if (was_running) {
        qmp_vm_cont(s);
    }
}

const char *qmp_status_name(struct qmp_server *s)
{
    if (qmp_migration_run_state()) {
        return qmp_migration_run_state();
    }
    switch (machine_run_state(s->m)) {
    case MACHINE_RUNNING: return "running";
    case MACHINE_PAUSED: return machine_needs_reset(s->m) ? "internal-error" : "paused";
    default: return "shutdown";
    }
}

static void cmd_query_status(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, qmp_no_args, r)) {
        r->ret = json_pack("{s:s,s:b,s:b}", "status", qmp_status_name(s), "singlestep", 0, "running",
                           machine_run_state(s->m) == MACHINE_RUNNING);
    }
}

static void cmd_stop(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, qmp_no_args, r)) {
        qmp_vm_stop(s);
    }
}

static void cmd_cont(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r) || qmp_migration_refuse_cont(r)) {
        return;
    }
    if (machine_needs_reset(s->m)) {
        qmp_fail(r, QMP_GENERIC, "Resetting the Virtual Machine is required");
        return;
    }
    qmp_vm_cont(s);
}

static void cmd_system_reset(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    /* QEMU says so before it replies (and resets at once; a paused VM
     * stays paused: the machine resets it when it goes on). */
    qmp_event(s, "RESET", json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-system-reset"));
    machine_request_reset(s->m);
}

static void cmd_system_powerdown(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    /* As QEMU: the event, then the ACPI power button; a guest that handles
     * it powers off (SHUTDOWN follows), one that does not goes on. */
    if (qmp_check_args(args, qmp_no_args, r)) {
        qmp_event(s, "POWERDOWN", NULL);
        machine_power_button(s->m);
    }
}

void qmp_vm_quit(struct qmp_server *s)
{
    s->shutdown_sent = true;
    qmp_event(s, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-quit"));
    qmp_jobs_end(s);
    machine_quit(s->m);
}

static void cmd_quit(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, qmp_no_args, r)) {
        qmp_vm_quit(s);
    }
}

/* ---- block ---- */

int qmp_find_disk(struct qmp_server *s, const char *name)
{
    int i;
    if (sscanf(name, "disk%d", &i) == 1 && i >= 0 && i < machine_disk_count(s->m)) {
        char check[16];
        struct disk_layer top;
        bool ro;
        snprintf(check, sizeof(check), "disk%d", i);
        if (strcmp(check, name) == 0 && qmp_disk_layers(s, i, &top, NULL, 1, &ro) >= 0) {
            return i;       /* not ejected */
        }
    }
    return -1;
}

/* blockdev-snapshot-sync: an external snapshot. The current image becomes
 * the read-only backing file of a new qcow2 overlay the disk writes to. */
static const struct qmp_arg snapshot_sync_args[] = {
    { "device", JSON_STRING, true }, { "node-name", JSON_STRING, true },
    { "snapshot-file", JSON_STRING, false }, { "snapshot-node-name", JSON_STRING, true },
    { "format", JSON_STRING, true }, { "mode", JSON_STRING, true }, { NULL, 0, false },
};

/* The new overlay's nodes: its format node named as asked (NULL: QEMU
 * names it), its file's node by QEMU's counter, before anything else is. */
static void name_overlay(struct qmp_server *s, int i, const char *format_node)
{
    struct disk_layer top;
    bool ro;
    struct block_node_table *t = machine_block_nodes(s->m);
    if (format_node && machine_disk_chain(s->m, i, &top, 1, &ro) == 1) {
        disk_node_names_add(&t->disks, i, top.bd, top.filename, format_node, &t->implicit_names);
    }
    qmp_disk_nodes_sync(s);
}

static void cmd_blockdev_snapshot_sync(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, snapshot_sync_args, r)) {
        return;
    }
    const char *dev = json_string_value(json_object_get(args, "device"));
    const char *node = json_string_value(json_object_get(args, "node-name"));
    const char *file = json_string_value(json_object_get(args, "snapshot-file"));
    const char *format = json_string_value(json_object_get(args, "format"));
    const char *mode = json_string_value(json_object_get(args, "mode"));
    if (!dev && !node) {
        qmp_fail(r, QMP_GENERIC, "Cannot find device= nor node_name=");
        return;
    }
    int depth = 0;
    int i = dev ? qmp_find_disk(s, dev) : qmp_find_disk_node(s, node, &depth);
    if (i < 0 || depth > 0) {
        qmp_fail(r, dev ? QMP_DEVICE_NOT_FOUND : QMP_GENERIC, dev ? "Device '%s' not found"
                 : "Cannot find device= nor node_name=%s", dev ? dev : node);
        return;
    }
    const char *snapshot_node = json_string_value(json_object_get(args, "snapshot-node-name"));
    int unused;
    if (snapshot_node && (qmp_find_disk_node(s, snapshot_node, &unused) >= 0 ||
                          machine_block_node_find(s->m, snapshot_node) ||
                          disk_node_names_find(&machine_block_nodes(s->m)->disks, snapshot_node))) {
        qmp_fail(r, QMP_GENERIC, "New overlay node-name already in use");
        return;
    }
    if (format && strcmp(format, "qcow2") != 0) {
        qmp_fail(r, QMP_GENERIC, "cowvisor creates qcow2 overlays only, not '%s'", format);
        return;
    }
    if (mode && strcmp(mode, "absolute-paths") != 0) {
        qmp_fail(r, QMP_GENERIC, "mode '%s' is not supported (absolute-paths only)", mode);
        return;
    }
    if (qmp_disk_has_block_job(s, i, r)) {
        return;
    }
    struct error err = { 0 };
    if (machine_disk_overlay(s->m, i, file, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    name_overlay(s, i, snapshot_node);
}

/* cowvisor's own: a snapshot to files, as Firecracker's snapshot/create. */
static const struct qmp_arg snapshot_files_args[] = {
    { "directory", JSON_STRING, false }, { "type", JSON_STRING, true }, { NULL, 0, false },
};

static void cmd_snapshot_files(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, snapshot_files_args, r)) {
        return;
    }
    const char *type = json_string_value(json_object_get(args, "type"));
    if (type && strcmp(type, "full") != 0 && strcmp(type, "diff") != 0) {
        qmp_fail(r, QMP_GENERIC, "Parameter 'type' does not accept value '%s' (full, diff)", type);
        return;
    }
    bool was_running = qmp_vm_pause_for(s);
    struct error err = { 0 };
    int ret = machine_snapshot_files(s->m, json_string_value(json_object_get(args, "directory")),
                                     type && strcmp(type, "diff") == 0, &err);
    qmp_vm_resume_after(s, was_running);
    if (ret < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

static void cmd_snapshot_save(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    qmp_job_start(s, "snapshot-save", args, r);
}

static void cmd_snapshot_load(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    qmp_job_start(s, "snapshot-load", args, r);
}

static void cmd_snapshot_delete(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    qmp_job_start(s, "snapshot-delete", args, r);
}

static void cmd_query_commands(struct qmp_server *s, json_t *args, struct qmp_reply *r);

/* Every command, one line each: name, handler, arguments (for
 * query-qmp-schema; NULL: none). qmp_capabilities is the server's own. */
const struct qmp_command qmp_commands[] = {
    { "query-status", cmd_query_status, NULL },
    { "stop", cmd_stop, NULL },
    { "cont", cmd_cont, NULL },
    { "system_reset", cmd_system_reset, NULL },
    { "system_powerdown", cmd_system_powerdown, NULL },
    { "quit", cmd_quit, NULL },
    { "query-block", qmp_query_block, NULL },
    { "query-named-block-nodes", qmp_query_named_block_nodes, qmp_named_block_nodes_args },
    { "query-blockstats", qmp_query_blockstats, qmp_blockstats_args },
    { "query-block-jobs", qmp_query_block_jobs, NULL },
    { "block_resize", qmp_block_resize, qmp_block_resize_args },
    { "blockdev-add", qmp_blockdev_add, NULL },
    { "blockdev-del", qmp_blockdev_del, qmp_blockdev_del_args },
    { "device_add", qmp_device_add, qmp_device_add_args },
    { "device_del", qmp_device_del, qmp_device_del_args },
    { "transaction", qmp_transaction, NULL },
    { "block-dirty-bitmap-add", qmp_bitmap_add, qmp_bitmap_add_args },
    { "block-dirty-bitmap-remove", qmp_bitmap_remove, qmp_bitmap_args },
    { "block-dirty-bitmap-clear", qmp_bitmap_clear, qmp_bitmap_args },
    { "block-dirty-bitmap-enable", qmp_bitmap_enable, qmp_bitmap_args },
    { "block-dirty-bitmap-disable", qmp_bitmap_disable, qmp_bitmap_args },
    { "block-dirty-bitmap-merge", qmp_bitmap_merge, qmp_bitmap_merge_args },
    { "query-cpus-fast", qmp_query_cpus_fast, NULL },
    { "query-hotpluggable-cpus", qmp_query_hotpluggable_cpus, NULL },
    { "query-version", qmp_query_version, NULL },
    { "query-kvm", qmp_query_kvm, NULL },
    { "query-name", qmp_query_name, NULL },
    { "query-uuid", qmp_query_uuid, NULL },
    { "query-target", qmp_query_target, NULL },
    { "query-machines", qmp_query_machines, NULL },
    { "query-memory-size-summary", qmp_query_memory_size_summary, NULL },
    { "query-chardev", qmp_query_chardev, NULL },
    { "query-pci", qmp_query_pci, NULL },
    { "query-replay", qmp_query_replay, NULL },
    { "replay-break", qmp_replay_break, qmp_replay_break_args },
    { "replay-delete-break", qmp_replay_delete_break, NULL },
    { "replay-seek", qmp_replay_seek, qmp_replay_break_args },
    { "query-iothreads", qmp_query_iothreads, NULL },
    { "query-events", qmp_query_events, NULL },
    { "query-qmp-schema", qmp_query_qmp_schema, NULL },
    { "human-monitor-command", qmp_hmp, qmp_hmp_args },
    { "snapshot-save", cmd_snapshot_save, qmp_snapshot_save_args },
    { "snapshot-load", cmd_snapshot_load, qmp_snapshot_save_args },
    { "snapshot-delete", cmd_snapshot_delete, qmp_snapshot_delete_args },
    { "query-jobs", qmp_query_jobs, NULL },
    { "job-dismiss", qmp_job_dismiss, qmp_job_id_args },
    { "blockdev-snapshot-sync", cmd_blockdev_snapshot_sync, snapshot_sync_args },
    { "x-cowvisor-snapshot-files", cmd_snapshot_files, snapshot_files_args },
#define QMP_COMMAND_ENTRY(name, fn, args) { #name, fn, args },
    QMP_BLOCK_JOB_COMMANDS(QMP_COMMAND_ENTRY)
    { "query-commands", cmd_query_commands, NULL },
    { NULL, NULL, NULL },
};

static void cmd_query_commands(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    json_t *list = json_array();
    json_array_append_new(list, json_pack("{s:s}", "name", "qmp_capabilities"));
    for (const struct qmp_command *c = qmp_commands; c->name; c++) {
        json_array_append_new(list, json_pack("{s:s}", "name", c->name));
    }
    qmp_migration_list_commands(list);
    r->ret = list;
}

qmp_handler qmp_find_command(const char *name)
{
    for (const struct qmp_command *c = qmp_commands; c->name; c++) {
        if (strcmp(c->name, name) == 0) {
            return c->fn;
        }
    }
    return qmp_migration_command(name);
}
