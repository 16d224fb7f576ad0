/* QMP's migration commands with QEMU 7.2's names and reply shapes:
 * migrate, migrate-incoming, query-migrate, migrate_cancel,
 * migrate-set-capabilities / query-migrate-capabilities,
 * migrate-set-parameters / query-migrate-parameters,
 * migrate-start-postcopy, pmemsave; the MIGRATION and MIGRATION_PASS
 * events; the run states inmigrate and postmigrate.
 *
 * A migration runs on its own thread (src/migration). Whatever it needs
 * done to the machine (stop, start) or to the QMP client (events) is
 * handed to the main loop through an eventfd, so the machine and the
 * monitor are only ever touched from the main loop. One migration per
 * process, as in QEMU: the state is this file's. */
#include "qmp_int.h"
#include "qmp_migration.h"
#include "qmp_migration_info.h"
#include "qmp_migration_params.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/migration.h"
#include "util/log.h"

enum op { OP_NONE, OP_STOP, OP_START, OP_CALL };

#define QUEUE 64

static struct {
    struct machine *m;
    struct qmp_server *qmp;         /* for events; NULL without a monitor */
    int efd, listen_fd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum op op;                     /* asked by the migration thread */
    bool op_done;
    int (*call_fn)(void *arg, struct error *err);   /* OP_CALL's function, its argument and result */
    void *call_arg;
    int call_ret;
    struct error call_err;
    enum migration_status status_q[QUEUE];
    bool status_dest[QUEUE];        /* the change is the incoming side's */
    int nstatus;
    uint64_t pass_q[QUEUE];
    int npass;
    struct migration_source *src;
    struct migration_dest *dst;
    struct migration_params params;
    bool cap_events, cap_postcopy, cap_auto_converge, cap_blocktime, cap_ignore_shared, cap_preempt;
    char uri[512];                  /* the source's: postcopy-preempt connects to it again */
    bool listening_preempt;         /* the incoming listener waits for the second connection */
    bool inmigrate, postmigrate;
    bool finishing;                 /* the source stopped the guest for its last pass */
    bool incoming_failed;
    struct error incoming_err;
    bool loop_gone;                 /* main loop over: ops are dropped */
    bool params_ready;
} mig = { .efd = -1, .listen_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static const struct qmp_arg no_args[] = { { NULL, 0, false } };

/* ---- the migration thread's side ---- */

static void kick(void)
{
    uint64_t one = 1;
    if (write(mig.efd, &one, sizeof(one)) != sizeof(one)) {
        log_warn("migration: cannot wake the main loop");
    }
}

/* Runs op on the main loop and waits for it; false: the loop is gone. */
static bool run_on_loop(enum op op)
{
    pthread_mutex_lock(&mig.lock);
    mig.op = op;
    mig.op_done = false;
    pthread_mutex_unlock(&mig.lock);
    kick();
    pthread_mutex_lock(&mig.lock);
    while (!mig.op_done && !mig.loop_gone) {
        pthread_cond_wait(&mig.cond, &mig.lock);
    }
    bool done = mig.op_done;
    pthread_mutex_unlock(&mig.lock);
    return done;
}

static void hook_stop(void *opaque)
{
    run_on_loop(OP_STOP);
}

static void hook_start(void *opaque)
{
    run_on_loop(OP_START);
}

/* The destination's device-set changes, where QMP's handlers use the devices. */
static int hook_on_main_loop(void *opaque, int (*fn)(void *arg, struct error *err), void *arg, struct error *err)
{
    mig.call_fn = fn;       /* one migration thread asks at a time; read by the loop after the kick */
    mig.call_arg = arg;
    if (!run_on_loop(OP_CALL)) {
        return error_set(err, -ECANCELED, "the main loop ended before the device state could load");
    }
    if (mig.call_ret < 0) {
        *err = mig.call_err;
    }
    return mig.call_ret;
}

static const bool role_source = false, role_dest = true;

static void hook_status(void *opaque, enum migration_status st)
{
    pthread_mutex_lock(&mig.lock);
    if (mig.nstatus < QUEUE) {
        mig.status_dest[mig.nstatus] = *(const bool *)opaque;
        mig.status_q[mig.nstatus++] = st;
    }
    pthread_mutex_unlock(&mig.lock);
    kick();
}

static void hook_pass(void *opaque, uint64_t pass)
{
    pthread_mutex_lock(&mig.lock);
    if (mig.npass < QUEUE) {
        mig.pass_q[mig.npass++] = pass;
    }
    pthread_mutex_unlock(&mig.lock);
    kick();
}

/* postcopy-preempt: a second connection to the same URI (on the migration thread). */
static int hook_open_channel(void *opaque, struct error *err)
{
    return migration_connect(mig.uri, err);
}

/* throttle: NULL, the machine's own vCPU throttle (safe from any thread). */
static const struct migration_hooks src_hooks = {
    .stop = hook_stop, .start = hook_start, .status = hook_status, .pass = hook_pass,
    .open_channel = hook_open_channel, .opaque = (void *)&role_source,
};
static const struct migration_hooks dest_hooks = {
    .start = hook_start, .status = hook_status, .on_main_loop = hook_on_main_loop, .opaque = (void *)&role_dest,
};

/* ---- the main loop's side ---- */

static void emit(const char *name, json_t *data)
{
    if (mig.qmp && mig.cap_events) {
        qmp_event(mig.qmp, name, data);
    } else {
        json_decref(data);
    }
}

static void on_source_status(enum migration_status st)
{
    if (st == MIGRATION_COMPLETED) {
        mig.postmigrate = true;
    }
    if (st == MIGRATION_COMPLETED || st == MIGRATION_FAILED || st == MIGRATION_CANCELLED) {
        mig.finishing = false;
    }
}

static void on_dest_status(enum migration_status st)
{
    if (st == MIGRATION_COMPLETED || st == MIGRATION_POSTCOPY_ACTIVE) {
        mig.inmigrate = false;
    }
    if (st != MIGRATION_FAILED) {
        return;
    }
    /* The process ends with the reason. After a post-copy that broke
     * off, vCPUs may wait on missing pages: letting guest RAM go (below)
     * is what lets them be stopped; ops the loader still asks for are
     * dropped, since the main loop is ending. */
    migration_dest_wait(mig.dst, &mig.incoming_err);
    mig.incoming_failed = true;
    machine_quit(mig.m);
    pthread_mutex_lock(&mig.lock);
    mig.loop_gone = true;
    pthread_cond_broadcast(&mig.cond);
    pthread_mutex_unlock(&mig.lock);
    migration_dest_free(mig.dst);
    mig.dst = NULL;
}

static void on_status(enum migration_status st, bool dest)
{
    emit("MIGRATION", json_pack("{s:s}", "status", migration_status_name(st)));
    if (dest && mig.dst) {
        on_dest_status(st);
    } else if (!dest) {
        on_source_status(st);
    }
}

static void loop_event(void *opaque, int fd, uint32_t events)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0) {
        return;
    }
    pthread_mutex_lock(&mig.lock);
    enum op op = mig.op_done ? OP_NONE : mig.op;
    enum migration_status st[QUEUE];
    bool st_dest[QUEUE];
    uint64_t passes[QUEUE];
    int nst = mig.nstatus, np = mig.npass;
    memcpy(st, mig.status_q, sizeof(st[0]) * (size_t)nst);
    memcpy(st_dest, mig.status_dest, sizeof(st_dest[0]) * (size_t)nst);
    memcpy(passes, mig.pass_q, sizeof(passes[0]) * (size_t)np);
    mig.nstatus = mig.npass = 0;
    pthread_mutex_unlock(&mig.lock);
    if (op == OP_STOP) {
        machine_pause(mig.m);
        mig.finishing = mig.src != NULL;
    } else if (op == OP_START) {
        mig.finishing = false;
        machine_resume(mig.m);
    } else if (op == OP_CALL) {
        error_clear(&mig.call_err);
        mig.call_ret = mig.call_fn(mig.call_arg, &mig.call_err);
    }
    if (op != OP_NONE) {
        pthread_mutex_lock(&mig.lock);
        mig.op_done = true;
        pthread_cond_broadcast(&mig.cond);
        pthread_mutex_unlock(&mig.lock);
    }
    for (int i = 0; i < np; i++) {
        emit("MIGRATION_PASS", json_pack("{s:I}", "pass", (json_int_t)passes[i]));
    }
    for (int i = 0; i < nst; i++) {
        on_status(st[i], st_dest[i]);
    }
}

static struct migration_params *params(void)
{
    if (!mig.params_ready) {
        migration_params_default(&mig.params);
        mig.params_ready = true;
    }
    return &mig.params;
}

static int attach(struct machine *m, struct error *err)
{
    if (mig.efd >= 0) {
        return 0;
    }
    mig.m = m;
    mig.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (mig.efd < 0) {
        return error_set_errno(err, -errno, "eventfd");
    }
    int ret = event_loop_add(machine_loop(m), mig.efd, EPOLLIN, loop_event, NULL, err);
    if (ret < 0) {
        close(mig.efd);
        mig.efd = -1;
    }
    return ret;
}

/* ---- incoming ---- */

static void accept_incoming(void *opaque, int fd, uint32_t events)
{
    struct error err = { 0 };
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
        return;
    }
    /* With postcopy-preempt the source connects twice: the stream first,
     * then the channel for requested pages. */
    bool again = mig.cap_preempt && !mig.dst;
    if (!again) {
        event_loop_remove(machine_loop(mig.m), fd);
        close(fd);
        mig.listen_fd = -1;
    }
    mig.listening_preempt = again;
    if (mig.dst) {
        if (migration_dest_add_channel(mig.dst, c, &err) < 0) {
            log_warn("incoming migration: %s", err.msg);
        }
        return;
    }
    if (migration_dest_start(&mig.dst, mig.m, c, &dest_hooks, &err) < 0) {
        mig.incoming_err = err;
        mig.incoming_failed = true;
        machine_quit(mig.m);
    }
}

static int listen_incoming(const char *uri, struct error *err)
{
    int fd = migration_listen(uri, err);
    if (fd < 0) {
        return fd;
    }
    int ret = event_loop_add(machine_loop(mig.m), fd, EPOLLIN, accept_incoming, NULL, err);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    mig.listen_fd = fd;
    return 0;
}

int qmp_migration_incoming(struct machine *m, const char *uri, struct error *err)
{
    int ret = attach(m, err);
    if (ret < 0) {
        return ret;
    }
    /* The guest does not run until the stream is complete. */
    machine_pause(m);
    mig.inmigrate = true;
    return strcmp(uri, "defer") == 0 ? 0 : listen_incoming(uri, err);
}

void qmp_migration_attach_monitor(struct qmp_server *s)
{
    mig.qmp = s;
}

int qmp_migration_exit_status(struct error *err)
{
    if (!mig.incoming_failed) {
        return 0;
    }
    *err = mig.incoming_err;
    error_prefix(err, "incoming migration failed");
    return err->code ? err->code : -EIO;
}

const char *qmp_migration_run_state(void)
{
    return mig.inmigrate ? "inmigrate" : mig.postmigrate ? "postmigrate" : mig.finishing ? "finish-migrate" : NULL;
}

bool qmp_migration_refuse_cont(struct qmp_reply *r)
{
    if (mig.postmigrate) {
        qmp_fail(r, QMP_GENERIC, "The VM was migrated away; it cannot continue here (status postmigrate)");
        return true;
    }
    if (mig.inmigrate || mig.finishing) {
        qmp_fail(r, QMP_GENERIC, "Migration is not finalized yet");
        return true;
    }
    return false;
}

void qmp_migration_end(void)
{
    pthread_mutex_lock(&mig.lock);
    mig.loop_gone = true;
    pthread_cond_broadcast(&mig.cond);
    pthread_mutex_unlock(&mig.lock);
    if (mig.src) {
        migration_source_cancel(mig.src);
        migration_source_free(mig.src);
        mig.src = NULL;
    }
    if (mig.dst) {
        migration_dest_free(mig.dst);
        mig.dst = NULL;
    }
    if (mig.listen_fd >= 0) {
        event_loop_remove(machine_loop(mig.m), mig.listen_fd);
        close(mig.listen_fd);
        mig.listen_fd = -1;
    }
    if (mig.efd >= 0) {
        event_loop_remove(machine_loop(mig.m), mig.efd);
        close(mig.efd);
        mig.efd = -1;
    }
}

/* ---- commands ---- */

static bool busy(struct qmp_reply *r)
{
    bool running = (mig.src && !migration_source_done(mig.src)) || (mig.dst && !migration_dest_done(mig.dst));
    if (running) {
        qmp_fail(r, QMP_GENERIC, "There's a migration process in progress");
    }
    return running;
}

/* migrate resume=true: the paused post-copy goes on over a new connection
 * to the destination's migrate-recover address. */
static void resume_source(const char *uri, struct qmp_reply *r)
{
    struct error err = { 0 };
    if (!mig.src) {
        qmp_fail(r, QMP_GENERIC, "Cannot resume if there is no paused migration");
        return;
    }
    int fd = migration_connect(uri, &err);
    if (fd < 0 || migration_source_resume(mig.src, fd, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

static void cmd_migrate(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const struct qmp_arg spec[] = {
        { "uri", JSON_STRING, false }, { "blk", JSON_TRUE, true }, { "inc", JSON_TRUE, true },
        { "detach", JSON_TRUE, true }, { "resume", JSON_TRUE, true }, { NULL, 0, false },
    };
    struct error err = { 0 };
    if (!qmp_check_args(args, spec, r) || attach(s->m, &err) < 0 ||
        (!json_is_true(json_object_get(args, "resume")) && busy(r))) {
        if (err.code) {
            qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        }
        return;
    }
    mig.qmp = s;
    if (json_is_true(json_object_get(args, "resume"))) {
        resume_source(json_string_value(json_object_get(args, "uri")), r);
        return;
    }
    /* QEMU's block migration: only its incremental form, the overlay-only
     * mode (the base is on both hosts); without blk, disks are shared. */
    bool blk = json_is_true(json_object_get(args, "blk")), inc = json_is_true(json_object_get(args, "inc"));
    if (blk != inc) {
        qmp_fail(r, QMP_GENERIC, "cowvisor migrates disks either on shared storage (neither blk nor inc) or as "
                 "qcow2 overlays on a base both hosts have (blk and inc): a full disk copy is not supported");
        return;
    }
    if (machine_run_state(s->m) == MACHINE_SHUTDOWN || mig.inmigrate) {
        qmp_fail(r, QMP_GENERIC, "Guest is not in a state to be migrated");
        return;
    }
    const char *uri = json_string_value(json_object_get(args, "uri"));
    /* x-ignore-shared: guest RAM is not sent but shared; here that means
     * its memfds pass over a UNIX socket to a process on this host. */
    if (mig.cap_ignore_shared && strncmp(uri, "unix:", 5) != 0) {
        qmp_fail(r, QMP_GENERIC, "x-ignore-shared needs a unix: URI (a destination on this host)");
        return;
    }
    params()->block_incremental = inc;
    if (migration_source_check(s->m, params(), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    int fd = migration_connect(uri, &err);
    if (fd < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    migration_source_free(mig.src);
    mig.src = NULL;
    mig.postmigrate = false;
    params()->postcopy_ram = mig.cap_postcopy;
    params()->converge.auto_converge = mig.cap_auto_converge;
    params()->share_memfd = mig.cap_ignore_shared;
    params()->postcopy_preempt = mig.cap_preempt;
    snprintf(mig.uri, sizeof(mig.uri), "%s", uri);
    if (migration_source_start(&mig.src, s->m, fd, params(), &src_hooks, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

/* ---- post-copy recovery ---- */

static void accept_recovery(void *opaque, int fd, uint32_t events)
{
    struct error err = { 0 };
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
        return;
    }
    event_loop_remove(machine_loop(mig.m), fd);
    close(fd);
    mig.listen_fd = -1;
    if (!mig.dst || migration_dest_resume(mig.dst, c, &err) < 0) {
        log_warn("migrate-recover: %s", err.msg);
    }
}

static void cmd_migrate_recover(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const struct qmp_arg spec[] = { { "uri", JSON_STRING, false }, { NULL, 0, false } };
    struct error err = { 0 };
    struct migration_stats st;
    if (!qmp_check_args(args, spec, r)) {
        return;
    }
    if (mig.dst) {
        migration_dest_stats(mig.dst, &st);
    }
    if (mig.listen_fd >= 0 && mig.listening_preempt) {
        /* The source never opened its preempt channel: recovery's turn. */
        event_loop_remove(machine_loop(mig.m), mig.listen_fd);
        close(mig.listen_fd);
        mig.listen_fd = -1;
        mig.listening_preempt = false;
    }
    if (!mig.dst || st.status != MIGRATION_POSTCOPY_PAUSED || mig.listen_fd >= 0) {
        qmp_fail(r, QMP_GENERIC, "Migrate recover can only be run when postcopy is paused.");
        return;
    }
    int fd = migration_listen(json_string_value(json_object_get(args, "uri")), &err);
    if (fd < 0 || event_loop_add(machine_loop(mig.m), fd, EPOLLIN, accept_recovery, NULL, &err) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
        return;
    }
    mig.listen_fd = fd;
}

static void cmd_migrate_pause(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct error err = { 0 };
    if (qmp_check_args(args, no_args, r) &&
        (!mig.src || migration_source_pause(mig.src, &err) < 0)) {
        qmp_fail(r, QMP_GENERIC, "%s", err.code ? err.msg : "migrate-pause is currently only supported during "
                 "postcopy-active state");
    }
}

static void cmd_migrate_incoming(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const struct qmp_arg spec[] = { { "uri", JSON_STRING, false }, { NULL, 0, false } };
    struct error err = { 0 };
    if (!qmp_check_args(args, spec, r)) {
        return;
    }
    if (!mig.inmigrate || mig.listen_fd >= 0 || mig.dst) {
        qmp_fail(r, QMP_GENERIC, "'-incoming' was not specified on the command line");
        return;
    }
    mig.qmp = s;
    if (listen_incoming(json_string_value(json_object_get(args, "uri")), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

static void cmd_query_migrate(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, no_args, r)) {
        return;
    }
    struct migration_stats st;
    r->ret = json_object();
    if (mig.src) {
        migration_source_stats(mig.src, &st);
    } else if (mig.dst) {
        migration_dest_stats(mig.dst, &st);
    } else {
        return;     /* QEMU: {} before any migration */
    }
    json_object_set_new(r->ret, "status", json_string(migration_status_name(st.status)));
    if (st.status == MIGRATION_FAILED && st.error[0]) {
        json_object_set_new(r->ret, "error-desc", json_string(st.error));
    }
    if (mig.dst && mig.cap_blocktime) {
        qmp_migration_put_blocktime(r->ret, &st);
    }
    if (!mig.src || st.status == MIGRATION_SETUP || st.status == MIGRATION_FAILED ||
        st.status == MIGRATION_CANCELLED) {
        return;
    }
    qmp_migration_put_times(r->ret, &st);
    qmp_migration_put_stats(r->ret, &st);
    if (st.cpu_throttle_percentage) {
        json_object_set_new(r->ret, "cpu-throttle-percentage", json_integer(st.cpu_throttle_percentage));
    }
}

static void cmd_migrate_cancel(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, no_args, r) && mig.src && migration_source_cancel(mig.src) == -EBUSY) {
        qmp_fail(r, QMP_GENERIC, "Postcopy is active: the migration cannot be cancelled");
    }
}

static void cmd_migrate_start_postcopy(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct error err = { 0 };
    if (!qmp_check_args(args, no_args, r)) {
        return;
    }
    if (!mig.src || migration_source_done(mig.src)) {
        qmp_fail(r, QMP_GENERIC, "Postcopy must be started after migration has been started");
    } else if (migration_source_start_postcopy(mig.src, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

/* ---- capabilities and parameters ---- */

static bool *capability(const char *name)
{
    return strcmp(name, "events") == 0 ? &mig.cap_events
         : strcmp(name, "postcopy-ram") == 0 ? &mig.cap_postcopy
         : strcmp(name, "auto-converge") == 0 ? &mig.cap_auto_converge
         : strcmp(name, "postcopy-blocktime") == 0 ? &mig.cap_blocktime
         : strcmp(name, "x-ignore-shared") == 0 ? &mig.cap_ignore_shared
         : strcmp(name, "postcopy-preempt") == 0 ? &mig.cap_preempt : NULL;
}

static void cmd_set_capabilities(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const struct qmp_arg spec[] = { { "capabilities", JSON_ARRAY, false }, { NULL, 0, false } };
    if (!qmp_check_args(args, spec, r) || busy(r)) {
        return;
    }
    size_t i;
    json_t *c;
    /* All checked before any is set, as QEMU does. */
    json_array_foreach(json_object_get(args, "capabilities"), i, c) {
        json_t *name = json_object_get(c, "capability"), *state = json_object_get(c, "state");
        if (!json_is_string(name) || !json_is_boolean(state)) {
            qmp_fail(r, QMP_GENERIC, "Parameter 'capabilities' expects a list of {capability, state}");
            return;
        }
        if (!capability(json_string_value(name))) {
            qmp_fail(r, QMP_GENERIC, "Parameter 'capability' does not accept value '%s'", json_string_value(name));
            return;
        }
    }
    json_array_foreach(json_object_get(args, "capabilities"), i, c) {
        *capability(json_string_value(json_object_get(c, "capability"))) = json_is_true(json_object_get(c, "state"));
    }
}

static void cmd_query_capabilities(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const char *names[] = { "events", "postcopy-ram", "auto-converge", "postcopy-blocktime",
                                   "x-ignore-shared", "postcopy-preempt" };
    if (!qmp_check_args(args, no_args, r)) {
        return;
    }
    r->ret = json_array();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        json_array_append_new(r->ret, json_pack("{s:s,s:b}", "capability", names[i], "state", *capability(names[i])));
    }
}

/* Taken by the next migration, and by the running one (as QEMU does: a
 * larger downtime-limit is how a migration that does not converge is
 * made to). */
static void cmd_set_parameters(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct error err = { 0 };
    if (qmp_migration_params_set(args, params(), &err) < 0 ||
        (mig.src && !migration_source_done(mig.src) && migration_source_set_params(mig.src, params(), &err) < 0)) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

void qmp_migration_hmp_parameters(FILE *f)
{
    qmp_migration_params_hmp(params(), f);
}

static void cmd_query_parameters(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, no_args, r)) {
        r->ret = qmp_migration_params_query(params());
    }
}

static void cmd_pmemsave(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const struct qmp_arg spec[] = {
        { "val", JSON_INTEGER, false }, { "size", JSON_INTEGER, false }, { "filename", JSON_STRING, false },
        { NULL, 0, false },
    };
    struct error err = { 0 };
    if (qmp_check_args(args, spec, r) &&
        machine_pmemsave(s->m, (uint64_t)json_integer_value(json_object_get(args, "val")),
                         (uint64_t)json_integer_value(json_object_get(args, "size")),
                         json_string_value(json_object_get(args, "filename")), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

/* QEMU's memsave: val is a virtual address of vCPU cpu-index (default 0). */
static void cmd_memsave(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    static const struct qmp_arg spec[] = {
        { "val", JSON_INTEGER, false }, { "size", JSON_INTEGER, false }, { "filename", JSON_STRING, false },
        { "cpu-index", JSON_INTEGER, true }, { NULL, 0, false },
    };
    struct error err = { 0 };
    json_t *cpu = json_object_get(args, "cpu-index");
    if (qmp_check_args(args, spec, r) &&
        machine_memsave(s->m, !cpu ? 0 : json_integer_value(cpu) < 0 || json_integer_value(cpu) > 255 ? -1
                                        : (int)json_integer_value(cpu),
                        (uint64_t)json_integer_value(json_object_get(args, "val")),
                        (uint64_t)json_integer_value(json_object_get(args, "size")),
                        json_string_value(json_object_get(args, "filename")), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

static const struct {
    const char *name;
    qmp_handler fn;
} commands[] = {
    { "migrate", cmd_migrate },
    { "migrate-incoming", cmd_migrate_incoming },
    { "query-migrate", cmd_query_migrate },
    { "migrate_cancel", cmd_migrate_cancel },
    { "migrate-start-postcopy", cmd_migrate_start_postcopy },
    { "migrate-recover", cmd_migrate_recover },
    { "migrate-pause", cmd_migrate_pause },
    { "migrate-set-capabilities", cmd_set_capabilities },
    { "query-migrate-capabilities", cmd_query_capabilities },
    { "migrate-set-parameters", cmd_set_parameters },
    { "query-migrate-parameters", cmd_query_parameters },
    { "pmemsave", cmd_pmemsave },
    { "memsave", cmd_memsave },
};

qmp_handler qmp_migration_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return commands[i].fn;
        }
    }
    return NULL;
}

void qmp_migration_list_commands(json_t *list)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        json_array_append_new(list, json_pack("{s:s}", "name", commands[i].name));
    }
}
