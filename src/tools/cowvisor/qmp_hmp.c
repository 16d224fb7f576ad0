/* human-monitor-command: the HMP commands QMP clients send through it for
 * snapshots (savevm, loadvm, delvm), run control (stop, cont, quit), help, the info set
 * (qmp_hmp_info.c) and qemu-io (qmp_hmp_qemu_io.c). The reply is the text HMP would print, errors
 * included, as QEMU does. */
#include "qmp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *text(const char *fmt, const char *a)
{
    char buf[1200];
    snprintf(buf, sizeof(buf), fmt, a);
    return json_string(buf);
}

static json_t *error_text(const struct error *err)
{
    return text("Error: %s\r\n", err->msg);
}

/* HMP prints a running block job's refusal as its error. */
static bool refused_by_block_job(struct qmp_server *s, struct qmp_reply *r)
{
    struct qmp_reply jr = { 0 };
    if (!qmp_block_job_running(s, &jr)) {
        return false;
    }
    r->ret = text("Error: %s\r\n", jr.err_desc);
    return true;
}

static void hmp_savevm(struct qmp_server *s, const char *name, struct qmp_reply *r)
{
    if (refused_by_block_job(s, r)) {
        return;
    }
    char generated[64];
    if (!name || !*name) {
        /* QEMU's default name: vm-YYYYMMDDHHMMSS. */
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(generated, sizeof(generated), "vm-%Y%m%d%H%M%S", &tm);
        name = generated;
    }
    struct error err = { 0 };
    bool was_running = qmp_vm_pause_for(s);
    int ret = machine_savevm(s->m, name, &err);
    qmp_vm_resume_after(s, was_running);
    r->ret = ret < 0 ? error_text(&err) : json_string("");
}

static void hmp_loadvm(struct qmp_server *s, const char *name, struct qmp_reply *r)
{
    if (refused_by_block_job(s, r)) {
        return;
    }
    struct error err = { 0 };
    bool was_running = qmp_vm_pause_for(s);
    bool changed;
    int ret = machine_loadvm(s->m, name, &changed, &err);
    /* A load that failed half-way leaves the VM broken: it stays paused. */
    qmp_vm_resume_after(s, was_running && (ret == 0 || !changed));
    r->ret = ret < 0 ? error_text(&err) : json_string("");
}

const struct qmp_arg qmp_hmp_args[] = {
    { "command-line", JSON_STRING, false }, { "cpu-index", JSON_INTEGER, true }, { NULL, 0, false },
};

void qmp_hmp(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_hmp_args, r)) {
        return;
    }
    char *line = strdup(json_string_value(json_object_get(args, "command-line")));
    if (!line) {
        qmp_fail(r, QMP_GENERIC, "out of memory");
        return;
    }
    if (!strncmp(line, "qemu-io ", 8)) {
        qmp_hmp_qemu_io(s, line + 8, r);
        free(line);
        return;
    }
    char *save = NULL;
    char *cmd = strtok_r(line, " \t", &save);
    char *arg = cmd ? strtok_r(NULL, " \t", &save) : NULL;
    char *extra = arg ? strtok_r(NULL, " \t", &save) : NULL;
    struct error err = { 0 };
    json_t *cpu_index = json_object_get(args, "cpu-index");
    if (!cmd) {
        r->ret = json_string("");
    } else if (strcmp(cmd, "info") == 0 && arg && strcmp(arg, "registers") == 0 && extra &&
               strcmp(extra, "-a") == 0 && !strtok_r(NULL, " \t", &save)) {
        qmp_hmp_info(s, arg, -1, r);
    } else if (extra) {
        r->ret = text("%s: extraneous characters at the end of line\r\n", cmd);
    } else if (strcmp(cmd, "savevm") == 0) {
        hmp_savevm(s, arg, r);
    } else if (strcmp(cmd, "loadvm") == 0 || strcmp(cmd, "delvm") == 0) {
        if (!arg) {
            r->ret = json_string("Parameter 'name' is missing\r\n");
        } else if (cmd[0] == 'l') {
            hmp_loadvm(s, arg, r);
        } else {
            int ret = machine_delvm(s->m, arg, &err);
            r->ret = ret < 0 ? error_text(&err) : json_string("");
        }
    } else if (strcmp(cmd, "info") == 0) {
        json_int_t cpu = cpu_index ? json_integer_value(cpu_index) : 0;
        if (cpu < 0 || cpu >= machine_cpu_count(s->m)) {
            qmp_fail(r, QMP_GENERIC, "CPU %lld is not present", (long long)cpu);
        } else {
            qmp_hmp_info(s, arg, (int)cpu, r);
        }
    } else if ((strcmp(cmd, "help") == 0 || strcmp(cmd, "?") == 0) && (!arg || strcmp(arg, "info") == 0)) {
        if (arg) {
            qmp_hmp_info(s, NULL, 0, r);
        } else {
            qmp_hmp_help(r);
        }
    } else if ((strcmp(cmd, "quit") == 0 || strcmp(cmd, "q") == 0) && !arg) {
        qmp_vm_quit(s);
        r->ret = json_string("");
    } else if ((strcmp(cmd, "stop") == 0 || strcmp(cmd, "s") == 0) && !arg) {
        qmp_vm_stop(s);
        r->ret = json_string("");
    } else if ((strcmp(cmd, "cont") == 0 || strcmp(cmd, "c") == 0) && !arg) {
        if (machine_needs_reset(s->m)) {
            r->ret = json_string("Error: Resetting the Virtual Machine is required\r\n");
        } else {
            qmp_vm_cont(s);
            r->ret = json_string("");
        }
    } else {
        r->ret = text("unknown command: '%s'\r\n", cmd);
    }
    free(line);
}
