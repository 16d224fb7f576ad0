/* Record/replay's QMP commands (issue 13), in QEMU's shapes and error
 * words: query-replay {mode: none|record|play, filename (when recording or
 * replaying), icount}, replay-break {icount}, replay-delete-break and
 * replay-seek {icount}. QEMU counts instructions; cowvisor's clock is the
 * vCPU's exit ordinal. A break point pauses the machine after that exit
 * (STOP event); a seek restores the nearest time-travel snapshot when it
 * has to and runs to its break point. */
#include "qmp_int.h"

void qmp_query_replay(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    static const char *const modes[] = { [MACHINE_REPLAY_OFF] = "none", [MACHINE_REPLAY_RECORD] = "record",
                                         [MACHINE_REPLAY_PLAY] = "play" };
    struct machine_replay_info info;
    machine_replay_query(s->m, &info);
    r->ret = info.file ? json_pack("{s:s,s:s,s:I}", "mode", modes[info.mode], "filename", info.file, "icount",
                                   (json_int_t)info.icount)
                       : json_pack("{s:s,s:I}", "mode", modes[info.mode], "icount", (json_int_t)info.icount);
}

const struct qmp_arg qmp_replay_break_args[] = { { "icount", JSON_INTEGER, false }, { NULL, 0, false } };

static void set_break(struct qmp_server *s, uint64_t icount, struct qmp_reply *r)
{
    struct error err = { 0 };
    if (machine_replay_set_break(s->m, icount, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

/* The icount argument: an exit ordinal, 1 or more. */
static bool exit_number(json_t *args, uint64_t *out, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_replay_break_args, r)) {
        return false;
    }
    json_int_t icount = json_integer_value(json_object_get(args, "icount"));
    if (icount <= 0) {
        qmp_fail(r, QMP_GENERIC, "Parameter 'icount' expects an exit number (1 or more)");
        return false;
    }
    *out = (uint64_t)icount;
    return true;
}

void qmp_replay_break(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    uint64_t icount;
    if (exit_number(args, &icount, r)) {
        set_break(s, icount, r);
    }
}

void qmp_replay_delete_break(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, qmp_no_args, r)) {
        set_break(s, 0, r);
    }
}

void qmp_replay_seek(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    uint64_t icount;
    struct error err = { 0 };
    if (exit_number(args, &icount, r) && machine_replay_seek(s->m, icount, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}
