/* Inside the QMP monitor: the server, its client, commands, jobs. */
#ifndef COWVISOR_QMP_INT_H
#define COWVISOR_QMP_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

#include "qmp.h"
#include "qmp_output.h"
#include "server_socket.h"

/* util/json.h (linked into every program) has its own json_string and
 * json_null, which take the place of jansson's at link time: never call
 * those two here. */
static inline json_t *qmp_string(const char *s)
{
    return json_stringn(s, strlen(s));
}

#define QMP_MAX_JOBS 16

struct qmp_job {
    char id[64];
    char type[32];          /* snapshot-save, snapshot-load, snapshot-delete */
    const char *status;     /* QEMU's JobStatus names */
    char *error;            /* set when the job failed */
    json_t *args;
    bool scheduled;
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

/* Argument helpers: check names, types, missing and unexpected members. */
struct qmp_arg {
    const char *name;
    int type;               /* JSON_STRING, JSON_TRUE (bool), JSON_ARRAY, JSON_INTEGER */
    bool optional;
};
bool qmp_check_args(json_t *args, const struct qmp_arg *spec, struct qmp_reply *r);

/* VM control shared by commands, HMP and jobs: the machine's run state,
 * whose changes come back as STOP and RESUME events. */
void qmp_vm_stop(struct qmp_server *s);
void qmp_vm_cont(struct qmp_server *s);
const char *qmp_status_name(struct qmp_server *s);
/* Pauses for an operation and tells whether the VM was running. */
bool qmp_vm_pause_for(struct qmp_server *s);
void qmp_vm_resume_after(struct qmp_server *s, bool was_running);

void qmp_hmp(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_job_start(struct qmp_server *s, const char *type, json_t *args, struct qmp_reply *r);
void qmp_query_jobs(struct qmp_server *s, json_t *args, struct qmp_reply *r);
void qmp_job_dismiss(struct qmp_server *s, json_t *args, struct qmp_reply *r);
/* Runs jobs that were created (after their creation was answered). */
void qmp_jobs_run(struct qmp_server *s);
/* At quit: every job goes away (JOB_STATUS_CHANGE null, newest first). */
void qmp_jobs_end(struct qmp_server *s);
void qmp_jobs_free(struct qmp_server *s);

#endif
