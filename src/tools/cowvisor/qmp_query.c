/* The queries management tools send first to learn what they talk to:
 * version, accelerator, name, machine type, vCPUs, memory, character
 * devices, with QEMU 7.2's reply shapes. */
#include "qmp_int.h"

#include <stdio.h>
#include <unistd.h>

#include "vmm/vm.h"

/* QEMU's names for what cowvisor has: one machine type, one CPU model. */
#define MACHINE_TYPE "cowvisor"
#define CPU_TYPE "host-x86_64-cpu"

static bool no_args(json_t *args, struct qmp_reply *r)
{
    return qmp_check_args(args, qmp_no_args, r);
}

void qmp_query_version(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (no_args(args, r)) {
        r->ret = json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "micro", 0, "minor", QMP_QEMU_MINOR, "major",
                           QMP_QEMU_MAJOR, "package", QMP_PACKAGE);
    }
}

void qmp_query_kvm(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    /* A machine exists only on KVM. */
    if (no_args(args, r)) {
        r->ret = json_pack("{s:b,s:b}", "enabled", 1, "present", 1);
    }
}

void qmp_query_name(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!no_args(args, r)) {
        return;
    }
    const char *name = machine_config(s->m)->name;
    r->ret = name ? json_pack("{s:s}", "name", name) : json_object();
}

void qmp_query_uuid(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (no_args(args, r)) {
        const char *uuid = machine_config(s->m)->uuid;
        r->ret = json_pack("{s:s}", "UUID", uuid ? uuid : "00000000-0000-0000-0000-000000000000");
    }
}

void qmp_query_target(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (no_args(args, r)) {
        r->ret = json_pack("{s:s}", "arch", "x86_64");
    }
}

void qmp_query_machines(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (no_args(args, r)) {
        r->ret = json_pack("[{s:b,s:s,s:b,s:s,s:i,s:b,s:b,s:s}]", "hotpluggable-cpus", 0, "name", MACHINE_TYPE,
                           "numa-mem-supported", 0, "default-cpu-type", CPU_TYPE, "cpu-max", VM_MAX_CPUS,
                           "deprecated", 0, "is-default", 1, "default-ram-id", "pc.ram");
    }
}

static json_t *cpu_props(int i)
{
    /* One socket per vCPU, as -smp N gives by default. */
    return json_pack("{s:i,s:i,s:i}", "core-id", 0, "thread-id", 0, "socket-id", i);
}

static json_t *cpu_path(int i)
{
    char path[64];
    snprintf(path, sizeof(path), "/machine/unattached/device[%d]", i);
    return json_string(path);
}

void qmp_query_cpus_fast(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!no_args(args, r)) {
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < machine_cpu_count(s->m); i++) {
        int tid = machine_cpu_thread_id(s->m, i);
        json_array_append_new(list, json_pack("{s:I,s:o,s:o,s:i,s:s}", "thread-id", (json_int_t)(tid ? tid : getpid()),
                                              "props", cpu_props(i), "qom-path", cpu_path(i), "cpu-index", i,
                                              "target", "x86_64"));
    }
    r->ret = list;
}

void qmp_query_hotpluggable_cpus(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!no_args(args, r)) {
        return;
    }
    /* Highest index first, as QEMU lists them; all present, none pluggable. */
    json_t *list = json_array();
    for (int i = machine_cpu_count(s->m) - 1; i >= 0; i--) {
        json_array_append_new(list, json_pack("{s:o,s:i,s:o,s:s}", "props", cpu_props(i), "vcpus-count", 1,
                                              "qom-path", cpu_path(i), "type", CPU_TYPE));
    }
    r->ret = list;
}

void qmp_query_memory_size_summary(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (no_args(args, r)) {
        r->ret = json_pack("{s:I,s:I}", "base-memory", (json_int_t)machine_config(s->m)->memory, "plugged-memory",
                           (json_int_t)0);
    }
}

/* QEMU's chardev filename for a socket: "unix:PATH,server=on". */
static json_t *socket_filename(const struct server_socket *ss)
{
    char buf[200];
    if (ss->is_unix) {
        snprintf(buf, sizeof(buf), "unix:%s,server=on", ss->path);
    } else {
        snprintf(buf, sizeof(buf), "%s", ss->where);
    }
    return json_string(buf);
}

void qmp_query_chardev(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!no_args(args, r)) {
        return;
    }
    const char *console = machine_config(s->m)->console;
    json_t *list = json_array();
    json_array_append_new(list, json_pack("{s:b,s:s,s:s}", "frontend-open", 1, "filename",
                                          console ? console : "stdio", "label", "serial0"));
    json_array_append_new(list, json_pack("{s:b,s:o,s:s}", "frontend-open", 1, "filename",
                                          socket_filename(&s->listen), "label", "compat_monitor0"));
    r->ret = list;
}

void qmp_query_iothreads(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    /* No -object iothread: the disks' worker threads are not iothreads. */
    if (no_args(args, r)) {
        r->ret = json_array();
    }
}

void qmp_query_events(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!no_args(args, r)) {
        return;
    }
    json_t *list = json_array();
    for (const struct qmp_event_info *e = qmp_events; e->name; e++) {
        json_array_append_new(list, json_pack("{s:s}", "name", e->name));
    }
    r->ret = list;
}
