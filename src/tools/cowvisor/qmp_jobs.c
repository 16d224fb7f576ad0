/* snapshot-save, snapshot-load and snapshot-delete as QEMU runs them: jobs
 * that go created -> running -> waiting -> pending -> concluded (or
 * aborting -> concluded with an error), announced by JOB_STATUS_CHANGE,
 * listed by query-jobs and removed by job-dismiss. The work itself runs in
 * the main loop right after the command's reply. */
#include "qmp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_status(struct qmp_server *s, struct qmp_job *j, const char *status)
{
    j->status = status;
    qmp_event(s, "JOB_STATUS_CHANGE", json_pack("{s:s,s:s}", "status", status, "id", j->id));
}

static int find_job(struct qmp_server *s, const char *id)
{
    for (int i = 0; i < s->njobs; i++) {
        if (strcmp(s->jobs[i].id, id) == 0) {
            return i;
        }
    }
    return -1;
}

int qmp_snapshot_job_find(struct qmp_server *s, const char *id)
{
    return find_job(s, id);
}

const struct qmp_arg qmp_snapshot_save_args[] = {
    { "job-id", JSON_STRING, false }, { "tag", JSON_STRING, false }, { "vmstate", JSON_STRING, false },
    { "devices", JSON_ARRAY, false }, { NULL, 0, false },
};
const struct qmp_arg qmp_snapshot_delete_args[] = {
    { "job-id", JSON_STRING, false }, { "tag", JSON_STRING, false }, { "devices", JSON_ARRAY, false },
    { NULL, 0, false },
};
const struct qmp_arg qmp_job_id_args[] = { { "id", JSON_STRING, false }, { NULL, 0, false } };

void qmp_job_start(struct qmp_server *s, const char *type, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, strcmp(type, "snapshot-delete") == 0 ? qmp_snapshot_delete_args
                                                                    : qmp_snapshot_save_args, r)) {
        return;
    }
    const char *id = json_string_value(json_object_get(args, "job-id"));
    if (find_job(s, id) >= 0 || qmp_block_job_find(s, id) >= 0) {
        qmp_fail(r, QMP_GENERIC, "Job ID '%s' already in use", id);
        return;
    }
    if (s->njobs == QMP_MAX_JOBS) {
        qmp_fail(r, QMP_GENERIC, "Too many jobs: dismiss concluded ones first");
        return;
    }
    struct qmp_job *j = &s->jobs[s->njobs++];
    memset(j, 0, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", id);
    snprintf(j->type, sizeof(j->type), "%s", type);
    j->args = json_deep_copy(args);
    j->scheduled = true;
    set_status(s, j, "created");
    set_status(s, j, "running");
}

/* Device names must be disks of this VM (a disk's top node or its device
 * name); the VM-state device must be one of them. cowvisor snapshots every writable disk (like savevm). */
static int check_devices(struct qmp_server *s, struct qmp_job *j, char *msg, size_t n)
{
    json_t *devices = json_object_get(j->args, "devices");
    const char *vmstate = json_string_value(json_object_get(j->args, "vmstate"));
    bool vmstate_listed = vmstate == NULL;
    size_t i;
    json_t *d;
    if (json_array_size(devices) == 0) {
        snprintf(msg, n, "At least one device is required for snapshot");
        return -1;
    }
    json_array_foreach(devices, i, d) {
        const char *name = json_string_value(d);
        /* QEMU's node names (a disk's top, "#blockNNN"); its device name too. */
        int depth = 0;
        int k = name ? qmp_find_disk_node(s, name, &depth) : -1;
        if (k < 0 || depth > 0) {
            snprintf(msg, n, "No block device node '%s'", name ? name : "");
            return -1;
        }
        if (vmstate && strcmp(vmstate, name) == 0) {
            vmstate_listed = true;
        }
    }
    if (!vmstate_listed) {
        snprintf(msg, n, "vmstate block device '%s' does not exist", vmstate);
        return -1;
    }
    return 0;
}

static void run_job(struct qmp_server *s, struct qmp_job *j)
{
    char msg[1100];
    const char *tag = json_string_value(json_object_get(j->args, "tag"));
    int ret = check_devices(s, j, msg, sizeof(msg));
    if (ret == 0) {
        struct error err = { 0 };
        if (strcmp(j->type, "snapshot-delete") == 0) {
            ret = machine_delvm(s->m, tag, &err);
        } else {
            bool was_running = qmp_vm_pause_for(s), changed = false;
            ret = strcmp(j->type, "snapshot-save") == 0 ? machine_savevm(s->m, tag, &err)
                                                        : machine_loadvm(s->m, tag, &changed, &err);
            /* A load that failed half-way leaves the VM broken: it stays paused. */
            qmp_vm_resume_after(s, was_running && (ret == 0 || !changed));
        }
        snprintf(msg, sizeof(msg), "%s", err.msg);
    }
    if (ret < 0) {
        j->error = strdup(msg);
        set_status(s, j, "aborting");
    } else {
        set_status(s, j, "waiting");
        set_status(s, j, "pending");
    }
    set_status(s, j, "concluded");
}

void qmp_jobs_run(struct qmp_server *s)
{
    for (int i = 0; i < s->njobs; i++) {
        if (s->jobs[i].scheduled) {
            s->jobs[i].scheduled = false;
            run_job(s, &s->jobs[i]);
        }
    }
}

void qmp_query_jobs(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    json_t *list = json_array();
    /* Newest first, as QEMU lists them. */
    for (int i = s->njobs - 1; i >= 0; i--) {
        struct qmp_job *j = &s->jobs[i];
        bool done = strcmp(j->status, "concluded") == 0;
        json_t *o = json_pack("{s:i,s:s,s:i,s:s,s:s}", "current-progress", done ? 1 : 0, "status", j->status,
                              "total-progress", 1, "type", j->type, "id", j->id);
        if (j->error) {
            json_object_set_new(o, "error", json_string(j->error));
        }
        json_array_append_new(list, o);
    }
    qmp_block_jobs_list(s, list);
    r->ret = list;
}

static void free_job(struct qmp_job *j)
{
    free(j->error);
    json_decref(j->args);
    j->error = NULL;
    j->args = NULL;
}

void qmp_job_dismiss(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_job_id_args, r)) {
        return;
    }
    const char *id = json_string_value(json_object_get(args, "id"));
    int i = find_job(s, id);
    if (i < 0 && qmp_block_job_dismiss_id(s, args, r)) {
        return;
    }
    if (i < 0) {
        qmp_fail(r, QMP_GENERIC, "Job not found");
        return;
    }
    struct qmp_job *j = &s->jobs[i];
    if (strcmp(j->status, "concluded") != 0) {
        qmp_fail(r, QMP_GENERIC, "Job '%s' in state '%s' cannot accept command verb 'dismiss'", id, j->status);
        return;
    }
    set_status(s, j, "null");
    free_job(j);
    memmove(&s->jobs[i], &s->jobs[i + 1], (size_t)(s->njobs - i - 1) * sizeof(s->jobs[0]));
    s->njobs--;
}

void qmp_jobs_end(struct qmp_server *s)
{
    for (int i = s->njobs - 1; i >= 0; i--) {
        set_status(s, &s->jobs[i], "null");
    }
}

void qmp_jobs_free(struct qmp_server *s)
{
    for (int i = 0; i < s->njobs; i++) {
        free_job(&s->jobs[i]);
    }
    s->njobs = 0;
}
