/* HMP's info commands and help, through human-monitor-command: the text
 * QEMU 7.2 prints for the same command (lines end in \r\n, as HMP's). */
#include "qmp_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "hw/pci.h"
#include "machine/block_nodes.h"
#include "qmp_migration.h"

void qmp_hmp_out_open(struct hmp_out *o)
{
    o->buf = NULL;
    o->len = 0;
    o->f = open_memstream(&o->buf, &o->len);
}

json_t *qmp_hmp_out_close(struct hmp_out *o)
{
    if (!o->f) {
        return json_string("out of memory\r\n");
    }
    fclose(o->f);
    size_t lines = 0;
    for (size_t i = 0; i < o->len; i++) {
        lines += o->buf[i] == '\n';
    }
    char *crlf = malloc(o->len + lines + 1);
    json_t *ret;
    if (!crlf) {
        ret = json_string("out of memory\r\n");
    } else {
        size_t k = 0;
        for (size_t i = 0; i < o->len; i++) {
            if (o->buf[i] == '\n') {
                crlf[k++] = '\r';
            }
            crlf[k++] = o->buf[i];
        }
        crlf[k] = 0;
        ret = json_string(crlf);
        free(crlf);
    }
    free(o->buf);
    return ret;
}

static void info_status(struct qmp_server *s, FILE *f)
{
    fprintf(f, "VM status: %s\n", qmp_status_name(s));
}

static void info_version(struct qmp_server *s, FILE *f)
{
    fprintf(f, "%d.%d.0 (%s)\n", QMP_QEMU_MAJOR, QMP_QEMU_MINOR, QMP_PACKAGE);
}

static void info_name(struct qmp_server *s, FILE *f)
{
    const char *name = machine_config(s->m)->name;
    if (name) {
        fprintf(f, "%s\n", name);
    }
}

/* A device_add'ed disk: named by its node, as QEMU names a device without
 * a drive name. */
static void info_hotplugged_block(struct qmp_server *s, FILE *f, const struct machine_hotplugged_disk *hot,
                                  bool first)
{
    const struct block_node *node = machine_block_node_find(s->m, hot->node);
    struct blockdev *bd = node ? node->node.bd : NULL;
    if (!bd) {
        fprintf(f, "%s%s: [not inserted]\n", first ? "" : "\n", hot->node);
    } else {
        fprintf(f, "%s%s: %s (%s%s)\n", first ? "" : "\n", hot->node, blockdev_filename(bd), node->node.driver,
                blockdev_is_read_only(bd) ? ", read-only" : "");
    }
    fprintf(f, "    Attached to:      %s/virtio-backend\n", hot->path);
    fprintf(f, "    Cache mode:       writeback\n");
}

static void info_block(struct qmp_server *s, FILE *f)
{
    int shown = 0;
    for (int i = 0; i < machine_disk_count(s->m); i++) {
        struct disk_layer l[16];
        const struct disk_node_name *names[16];
        bool ro;
        int n = qmp_disk_layers(s, i, l, names, 16, &ro);
        if (n < 0) {
            continue;           /* ejected */
        }
        if (n == 0) {
            fprintf(f, "%sdisk%d: [not inserted]\n", shown++ ? "\n" : "", i);
            continue;
        }
        fprintf(f, "%sdisk%d (%s): %s (%s%s)\n", shown++ ? "\n" : "", i, qmp_disk_node_name(names[0]), l[0].filename,
                l[0].format, ro ? ", read-only" : "");
        fprintf(f, "    Attached to:      /machine/peripheral-anon/device[%d]/virtio-backend\n", i);
        fprintf(f, "    Cache mode:       writeback\n");
        if (l[0].backing_filename) {
            fprintf(f, "    Backing file:     %s (chain depth: %d)\n", l[0].backing_filename, n - 1);
        }
    }
    struct machine_hotplugged_disk hot[QMP_MAX_HOTPLUGGED];
    int nhot = machine_hotplugged_disks(s->m, hot, QMP_MAX_HOTPLUGGED);
    for (int k = 0; k < nhot; k++) {
        info_hotplugged_block(s, f, &hot[k], shown++ == 0);
    }
}

/* One device's line; a device_add'ed one has no drive name (QEMU's ": ..."). */
static void blockstats_line(FILE *f, const char *name, const struct machine_disk_stats *st)
{
    fprintf(f, "%s: rd_bytes=%" PRIu64 " wr_bytes=%" PRIu64 " rd_operations=%" PRIu64 " wr_operations=%" PRIu64
            " flush_operations=%" PRIu64 " wr_total_time_ns=%" PRIu64 " rd_total_time_ns=%" PRIu64
            " flush_total_time_ns=%" PRIu64 " rd_merged=0 wr_merged=0 idle_time_ns=%" PRId64 "\n", name,
            st->rd_bytes, st->wr_bytes, st->rd_ops, st->wr_ops, st->flush_ops, st->wr_total_ns, st->rd_total_ns,
            st->flush_total_ns, st->idle_ns < 0 ? 0 : st->idle_ns);
}

static void info_blockstats(struct qmp_server *s, FILE *f)
{
    for (int i = 0; i < machine_disk_count(s->m); i++) {
        struct machine_disk_stats st;
        char name[16];
        if (machine_disk_stats(s->m, i, &st) < 0) {
            continue;           /* ejected */
        }
        snprintf(name, sizeof(name), "disk%d", i);
        blockstats_line(f, name, &st);
    }
    struct machine_hotplugged_disk hot[QMP_MAX_HOTPLUGGED];
    int nhot = machine_hotplugged_disks(s->m, hot, QMP_MAX_HOTPLUGGED);
    for (int k = 0; k < nhot; k++) {
        blockstats_line(f, "", &hot[k].stats);
    }
}

static void info_cpus(struct qmp_server *s, FILE *f)
{
    for (int i = 0; i < machine_cpu_count(s->m); i++) {
        int tid = machine_cpu_thread_id(s->m, i);
        fprintf(f, "%c CPU #%d: thread_id=%d\n", i == 0 ? '*' : ' ', i, tid ? tid : (int)getpid());
    }
}

static void segment_line(FILE *f, const char *name, const struct machine_segment *sg)
{
    fprintf(f, "%s=%04x %016" PRIx64 " %08x %08x\n", name, sg->selector, sg->base, sg->limit, sg->flags);
}

static void registers_of(FILE *f, const struct machine_cpu_regs *r)
{
    static const char *const names[16] = { "RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
                                           "R8 ", "R9 ", "R10", "R11", "R12", "R13", "R14", "R15" };
    /* QEMU's order: RAX RBX RCX RDX / RSI RDI RBP RSP / R8.. */
    static const int order[16] = { 0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15 };
    for (int k = 0; k < 16; k++) {
        fprintf(f, "%s=%016" PRIx64 "%c", names[order[k]], r->gpr[order[k]], k % 4 == 3 ? '\n' : ' ');
    }
    fprintf(f, "RIP=%016" PRIx64 " RFL=%08" PRIx64 " CPL=%u HLT=%d\n", r->rip, r->rflags,
            (unsigned)(r->cs.selector & 3), r->halted);
    segment_line(f, "ES ", &r->es);
    segment_line(f, "CS ", &r->cs);
    segment_line(f, "SS ", &r->ss);
    segment_line(f, "DS ", &r->ds);
    segment_line(f, "FS ", &r->fs);
    segment_line(f, "GS ", &r->gs);
    segment_line(f, "LDT", &r->ldt);
    segment_line(f, "TR ", &r->tr);
    fprintf(f, "GDT=     %016" PRIx64 " %08x\n", r->gdt_base, r->gdt_limit);
    fprintf(f, "IDT=     %016" PRIx64 " %08x\n", r->idt_base, r->idt_limit);
    fprintf(f, "CR0=%08" PRIx64 " CR2=%016" PRIx64 " CR3=%016" PRIx64 " CR4=%08" PRIx64 "\n", r->cr0, r->cr2, r->cr3,
            r->cr4);
    fprintf(f, "EFER=%016" PRIx64 "\n", r->efer);
}

/* Registers are read with the vCPUs out of the guest: the VM pauses for
 * the moment it takes, as QEMU synchronizes its CPU state. */
static void info_registers(struct qmp_server *s, FILE *f, int cpu)
{
    bool was_running = qmp_vm_pause_for(s);
    for (int i = cpu < 0 ? 0 : cpu; i < (cpu < 0 ? machine_cpu_count(s->m) : cpu + 1); i++) {
        struct machine_cpu_regs r;
        struct error err = { 0 };
        if (machine_cpu_registers(s->m, i, &r, &err) < 0) {
            fprintf(f, "%s\n", err.msg);
            break;
        }
        if (cpu < 0) {
            fprintf(f, "%sCPU#%d\n", i ? "\n" : "", i);
        }
        registers_of(f, &r);
    }
    qmp_vm_resume_after(s, was_running);
}

/* HMP says "Class" where QEMU has no name for it. */
static const char *class_name(uint32_t class16)
{
    const char *desc = qmp_pci_class_desc(class16);
    return desc ? desc : "Class";
}

/* The device tree: the PCI bus's functions (cowvisor's other devices
 * are the machine's own, not qdev devices). */
static void info_qtree(struct qmp_server *s, FILE *f)
{
    struct machine_pci_function *fns = calloc(PCI_MAX_SLOTS, sizeof(*fns));
    if (!fns) {
        fprintf(f, "out of memory\n");
        return;
    }
    int n = machine_pci_list(s->m, fns, PCI_MAX_SLOTS);
    fprintf(f, "bus: main-system-bus\n  type System\n  dev: cowvisor-pcihost, id \"\"\n    bus: pci.0\n"
               "      type PCI\n");
    for (int i = 0; i < n; i++) {
        const uint8_t *c = fns[i].config;
        uint32_t class16 = qmp_pci_config_le(c, PCI_CLASS_PROG + 1, 2);
        fprintf(f, "      dev: pci-device, id \"\"\n        addr = %02x.0\n", fns[i].slot);
        fprintf(f, "        class %s, addr 00:%02x.0, pci id %04x:%04x (sub %04x:%04x)\n", class_name(class16),
                fns[i].slot, qmp_pci_config_le(c, PCI_VENDOR_ID, 2), qmp_pci_config_le(c, PCI_DEVICE_ID, 2),
                qmp_pci_config_le(c, PCI_SUBSYSTEM_VENDOR_ID, 2), qmp_pci_config_le(c, PCI_SUBSYSTEM_ID, 2));
        for (int bar = 0; bar < PCI_BARS; bar++) {
            if (fns[i].bar_size[bar]) {
                uint32_t base = qmp_pci_config_le(c, PCI_BAR0 + 4 * bar, 4) & ~15u;
                fprintf(f, "        bar %d: mem at 0x%08x [0x%08x]\n", bar, base, base + fns[i].bar_size[bar] - 1);
            }
        }
    }
    free(fns);
}

/* Guest-physical memory: RAM (split around the PCI hole as the PC
 * machine does) and the PCI functions' BARs. */
static void info_mtree(struct qmp_server *s, FILE *f)
{
    uint64_t ram = machine_config(s->m)->memory;
    uint64_t low = ram < PCI_MMIO_WINDOW_START ? ram : PCI_MMIO_WINDOW_START;
    fprintf(f, "address-space: memory\n  0000000000000000-ffffffffffffffff (prio 0, i/o): system\n");
    fprintf(f, "    0000000000000000-%016" PRIx64 " (prio 0, ram): pc.ram\n", low - 1);
    if (ram > low) {
        fprintf(f, "    0000000100000000-%016" PRIx64 " (prio 0, ram): pc.ram @%016" PRIx64 "\n",
                (uint64_t)(0x100000000ull + (ram - low) - 1), low);
    }
    struct machine_pci_function *fns = calloc(PCI_MAX_SLOTS, sizeof(*fns));
    int n = fns ? machine_pci_list(s->m, fns, PCI_MAX_SLOTS) : 0;
    for (int i = 0; i < n; i++) {
        for (int bar = 0; bar < PCI_BARS; bar++) {
            uint32_t base = qmp_pci_config_le(fns[i].config, PCI_BAR0 + 4 * bar, 4) & ~15u;
            if (fns[i].bar_size[bar] && base) {
                fprintf(f, "    %016" PRIx64 "-%016" PRIx64 " (prio 1, i/o): pci 00:%02x.0 bar %d\n",
                        (uint64_t)base, (uint64_t)base + fns[i].bar_size[bar] - 1, fns[i].slot, bar);
            }
        }
    }
    free(fns);
    fprintf(f, "\naddress-space: I/O\n  0000000000000000-000000000000ffff (prio 0, i/o): io\n");
}

static void info_migrate(struct qmp_server *s, FILE *f)
{
    /* No migration has run: QEMU then prints its migration globals only. */
    fprintf(f, "globals:\nstore-global-state: on\nonly-migratable: off\nsend-configuration: on\n"
               "send-section-footer: on\ndecompress-error-check: on\nclear-bitmap-shift: 18\n");
}

static void info_migrate_parameters(struct qmp_server *s, FILE *f)
{
    qmp_migration_hmp_parameters(f);
}

static void info_snapshots(struct qmp_server *s, FILE *f)
{
    struct error err = { 0 };
    char *text = machine_info_snapshots(s->m, &err);
    /* machine_info_snapshots already ends lines in \r\n: strip the \r. */
    const char *t = text ? text : err.msg;
    for (; *t; t++) {
        if (*t != '\r') {
            fputc(*t, f);
        }
    }
    if (!text) {
        fputc('\n', f);
    }
    free(text);
}

static const struct {
    const char *name;
    void (*fn)(struct qmp_server *s, FILE *f);
    const char *help;
} infos[] = {
    { "block", info_block, "show the block devices" },
    { "blockstats", info_blockstats, "show block device statistics" },
    { "cpus", info_cpus, "show infos for each CPU" },
    { "migrate", info_migrate, "show migration status" },
    { "migrate_parameters", info_migrate_parameters, "show current migration parameters" },
    { "mtree", info_mtree, "show memory tree" },
    { "name", info_name, "show the current VM name" },
    { "qtree", info_qtree, "show device tree" },
    { "registers", NULL, "show the cpu registers" },
    { "snapshots", info_snapshots, "show the currently saved VM snapshots" },
    { "status", info_status, "show the current VM status (running|paused)" },
    { "version", info_version, "show the version of QEMU" },
};

void qmp_hmp_info(struct qmp_server *s, const char *what, int cpu, struct qmp_reply *r)
{
    struct hmp_out o;
    qmp_hmp_out_open(&o);
    if (!o.f) {
        r->ret = json_string("out of memory\r\n");
        return;
    }
    size_t i = 0;
    while (what && i < sizeof(infos) / sizeof(infos[0]) && strcmp(infos[i].name, what) != 0) {
        i++;
    }
    if (!what) {
        for (i = 0; i < sizeof(infos) / sizeof(infos[0]); i++) {
            fprintf(o.f, "info %-10s -- %s\n", infos[i].name, infos[i].help);
        }
    } else if (i == sizeof(infos) / sizeof(infos[0])) {
        fprintf(o.f, "unknown info command: '%s'\n", what);
    } else if (!infos[i].fn) {
        info_registers(s, o.f, cpu);
    } else {
        infos[i].fn(s, o.f);
    }
    r->ret = qmp_hmp_out_close(&o);
}

void qmp_hmp_help(struct qmp_reply *r)
{
    struct hmp_out o;
    qmp_hmp_out_open(&o);
    if (o.f) {
        fprintf(o.f, "cont|c  -- resume emulation\n"
                     "delvm tag -- delete a VM snapshot from its tag\n"
                     "help|? [cmd] -- show the help\n"
                     "info [subcommand] -- show various information about the system state\n"
                     "loadvm tag -- restore a VM snapshot from its tag\n"
                     "quit|q  -- quit the emulator\n"
                     "savevm [tag] -- save a VM snapshot. If no tag is provided, a new snapshot is created\n"
                     "stop|s  -- stop emulation\n");
    }
    r->ret = qmp_hmp_out_close(&o);
}
