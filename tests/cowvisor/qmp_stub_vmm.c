/* qmp_stub_vmm ADDR|- [DISK...]: cowvisor's QMP server on a machine without
 * a guest (stub_machine.c), serving ADDR (a --qmp argument; -: none) until a
 * client sends quit. On a terminal, stdio is the console (Ctrl-A c shows
 * the monitor, Ctrl-A x quits) and the stub's guest echoes what it gets. It lets clients that are programs of their own (go-qemu,
 * Python) drive the real monitor where /dev/kvm is absent. The machine is
 * "running", with 2 vCPUs, 256 MiB and the given disk files (qcow2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stub_machine.h"
#include "tools/cowvisor/qmp.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: qmp_stub_vmm ADDR|- [DISK...]\n");
        return 2;
    }
    static struct machine_config cfg = { .cpus = 2, .memory = 256ull << 20, .console = "stdio", .name = "stub" };
    for (int i = 2; i < argc && cfg.ndisks < MACHINE_MAX_DISKS; i++) {
        cfg.disks[cfg.ndisks++] = (struct disk_config){ .file = argv[i], .format = "qcow2" };
    }
    struct machine *m = stub_machine_create(&cfg);
    struct qmp_server *q;
    struct error err = { 0 };
    stub_machine_console_stdio(m);
    if (qmp_server_start(&q, m, strcmp(argv[1], "-") ? argv[1] : NULL, &err) < 0) {
        fprintf(stderr, "qmp_stub_vmm: %s\n", err.msg);
        stub_machine_destroy(m);
        return 1;
    }
    int ret = event_loop_run(machine_loop(m), &err);
    qmp_server_stop(q);
    stub_machine_destroy(m);
    return ret < 0 ? 1 : 0;
}
