/* Record/replay's QMP query (issue 13), in QEMU's shape: query-replay
 * {mode: none|record|play, filename (when recording or replaying), icount}.
 * QEMU counts instructions; cowvisor's clock is the vCPU's exit ordinal. */
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
    /* json_pack, not json_string: util/json.h has a json_string of its own. */
    r->ret = info.file ? json_pack("{s:s,s:s,s:I}", "mode", modes[info.mode], "filename", info.file, "icount",
                                   (json_int_t)info.icount)
                       : json_pack("{s:s,s:I}", "mode", modes[info.mode], "icount", (json_int_t)info.icount);
}
