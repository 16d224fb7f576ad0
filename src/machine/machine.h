/* The machine: one KVM virtual machine with its PC devices (COM1, CMOS
 * RTC, i8042, debug exit, PCI host, fw_cfg) and virtio devices, composed
 * from a machine_config, booted from a kernel or firmware and driven by
 * one epoll main loop. It owns the run state (running, paused, shut down),
 * the device registry, snapshots and savevm. Programs see only this
 * header: no device, vCPU or block-driver detail. */
#ifndef MACHINE_MACHINE_H
#define MACHINE_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "machine/console_mux.h"
#include "util/error.h"
#include "vmm/boot.h"
#include "vmm/event_loop.h"

#define MACHINE_MAX_DISKS 8
#define MACHINE_MAX_VIRTIO 16

enum transport { TRANSPORT_PCI, TRANSPORT_MMIO };

struct disk_config {
    const char *file;
    const char *format;     /* NULL: probe */
    bool read_only;
    enum transport transport;
    const char *serial;
    bool compressed_cache_set;      /* qcow2: decompressed clusters kept (blockdev_open_opts) */
    uint64_t compressed_cache_size;
    int num_queues;                 /* virtio-blk request queues; 0: one per vCPU */
    bool queue_threads;             /* each queue served by its own thread, off the main loop */
    uint64_t poll_max_ns;           /* queue threads spin on the ring this long (0: never) */
    enum blockdev_detect_zeroes detect_zeroes;
    bool discard_unmap;             /* discard=unmap|on (QEMU's -drive default: ignore) */
};

struct machine_config {
    const char *kernel;
    const char *initrd;
    const char *append;
    enum boot_decompress kernel_decompress;
    const char *bios;
    int cpus;
    uint64_t memory;
    struct disk_config disks[MACHINE_MAX_DISKS];
    int ndisks;
    const char *net_tap;
    const char *net_mac;
    enum transport net_transport;
    const char *console;    /* stdio, file:PATH, unix:PATH */
    bool no_reboot;
    enum transport rng[4];          /* --device virtio-rng */
    int nrng;
    enum transport vconsole[4];     /* --device virtio-console */
    int nvconsole;
    const char *name;       /* --name, for monitors (NULL: none) */
    const char *uuid;       /* --uuid (NULL: all zeroes, as QEMU) */
    bool record_replay;     /* --record/--replay: one vCPU, user-space PIT and PIC, the exit clock */
    bool incoming;          /* --incoming: disks open inactive until the migration hands them over */
};

struct machine;

/* cfg must outlive the machine. */
int machine_create(struct machine **out, const struct machine_config *cfg, struct error *err);
/* Starts the vCPUs and runs the main loop until the guest powers off or
 * exits (or machine_quit); returns the process exit status or <0. */
int machine_run(struct machine *m, struct error *err);
void machine_destroy(struct machine *m);

const struct machine_config *machine_config(const struct machine *m);
/* The main loop, for the program's own file descriptors (a monitor). */
struct event_loop *machine_loop(struct machine *m);

/* ---- run state ---- */

enum machine_run_state { MACHINE_RUNNING, MACHINE_PAUSED, MACHINE_SHUTDOWN };

enum machine_run_state machine_run_state(const struct machine *m);
/* Parks the vCPUs and quiesces the devices (disk requests in flight
 * complete, the network stops receiving). No-op unless running. */
void machine_pause(struct machine *m);
/* Undoes machine_pause (and does a reset asked for meanwhile). */
void machine_resume(struct machine *m);
/* A reset asked for by the host; while paused it happens at resume. */
void machine_request_reset(struct machine *m);
/* Presses the ACPI power button (QMP system_powerdown): a guest that
 * handles it powers off (its S5), one that does not goes on. */
void machine_power_button(struct machine *m);
/* Ends machine_run with exit status 0 (the monitor's quit). */
void machine_quit(struct machine *m);
/* Guest RAM found unreadable (a restored memory file truncated since):
 * pauses the machine and says so; true when there was such a fault. The
 * main loop calls it when the memory's fault_fd fires. */
bool machine_handle_memory_fault(struct machine *m);
/* After such a fault the guest's memory is gone: resuming needs a reset
 * first (QEMU's internal-error state). */
bool machine_needs_reset(const struct machine *m);
/* -EIO when guest RAM was found unreadable (machine_handle_memory_fault),
 * now or since the last reset or load: what reads RAM must not save the
 * zeros that stand in for lost pages. Checked before and after reading. */
int machine_memory_intact(struct machine *m, struct error *err);

/* What happened, for a monitor. guest: the guest caused it (not the host
 * through this API). */
enum machine_event {
    MACHINE_EVENT_POWER_OFF,    /* the machine is shut down */
    MACHINE_EVENT_RESET,        /* with --no-reboot the machine is shut down */
    MACHINE_EVENT_STOP,         /* paused */
    MACHINE_EVENT_RESUME,
};
typedef void (*machine_event_fn)(void *opaque, enum machine_event ev, bool guest);
void machine_set_event_hook(struct machine *m, machine_event_fn fn, void *opaque);
/* The monitor behind Ctrl-A c on a stdio terminal (NULL: none). */
void machine_set_console_monitor(struct machine *m, console_monitor_fn fn, void *opaque);

/* ---- vCPUs ---- */

int machine_cpu_count(const struct machine *m);
/* The vCPU thread's kernel id, 0 before it runs. */
int machine_cpu_thread_id(const struct machine *m, int i);
/* Each vCPU sleeps percent (0-99) of its time (a migration's
 * auto-converge); 0 ends it. Safe from any thread. */
int machine_throttle_cpus(struct machine *m, int percent, struct error *err);

/* A vCPU's registers as HMP's info registers shows them. */
struct machine_segment {
    uint16_t selector;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;         /* QEMU's descriptor flags word (type, S, DPL, P, AVL, L, DB, G) */
};
struct machine_cpu_regs {
    uint64_t gpr[16];       /* RAX RCX RDX RBX RSP RBP RSI RDI R8..R15 (x86 encoding order) */
    uint64_t rip, rflags;
    struct machine_segment es, cs, ss, ds, fs, gs, ldt, tr;
    uint64_t gdt_base, idt_base;
    uint16_t gdt_limit, idt_limit;
    uint64_t cr0, cr2, cr3, cr4, efer;
    bool halted;
};
/* Only while the machine is paused (the vCPUs are out of the guest). */
int machine_cpu_registers(struct machine *m, int i, struct machine_cpu_regs *out, struct error *err);

/* ---- disks ---- */

struct disk_layer {
    const char *filename;
    const char *format;
    const char *backing_filename;   /* as recorded, or NULL */
    uint64_t size;
    uint32_t cluster_size;
    struct blockdev *bd;            /* the open layer (dirty bitmaps); NULL if none */
};

int machine_disk_count(const struct machine *m);
/* Layers of disk i from the top; returns how many (at most max), or
 * -ENODEV once the guest ejected the disk (device_del). */
int machine_disk_chain(struct machine *m, int i, struct disk_layer *out, int max, bool *read_only);
/* Creates a qcow2 overlay at file backed by disk i's image (absolute path)
 * and switches the disk to it. */
int machine_disk_overlay(struct machine *m, int i, const char *file, struct error *err);
/* Live migration on shared storage: the source hands its disks' images
 * over at switchover (flushed, locks released, no more writes), the
 * destination (created with cfg->incoming) takes them over before its
 * guest runs; a source whose migration failed takes them back. */
int machine_disks_inactivate(struct machine *m, struct error *err);
/* An outgoing migration runs from start to its thread's end: meanwhile
 * what would change the devices or disks it sends (device_add/_del, disk
 * jobs, overlays, resizes) is refused, as QEMU refuses it. */
void machine_set_migrating(struct machine *m, bool on);
bool machine_migrating(const struct machine *m);
int machine_disks_activate(struct machine *m, struct error *err);

/* Disk i as the host of a block job (block/block_job.h): its top image,
 * its virtio-blk device drained around the job's graph changes, and the
 * switch to another image (the guest's device keeps going on it). Hand it
 * to block_job_start: until the job is freed, a guest's eject of the disk
 * waits (the job reads its image). Refused (-EBUSY) during a migration and
 * a record or replay. */
struct block_job_host;
int machine_disk_job_host(struct machine *m, int i, struct block_job_host *out, struct error *err);

/* ---- guest memory ---- */

/* [gpa, gpa+size) of guest RAM into a new file (QMP pmemsave). */
int machine_pmemsave(struct machine *m, uint64_t gpa, uint64_t size, const char *path, struct error *err);
/* [va, va+size) as vCPU cpu sees it through its page tables (QMP memsave;
 * a running vCPU is parked for an instant to read its registers). */
int machine_memsave(struct machine *m, int cpu, uint64_t va, uint64_t size, const char *path, struct error *err);

/* What the guest asked of disk i (its virtio-blk device), for monitors. */
struct machine_disk_stats {
    uint64_t rd_bytes, wr_bytes;
    uint64_t rd_ops, wr_ops, flush_ops, unmap_ops;
    uint64_t failed_rd_ops, failed_wr_ops, failed_flush_ops, failed_unmap_ops;
    uint64_t rd_total_ns, wr_total_ns, flush_total_ns, unmap_total_ns;
    int64_t idle_ns;        /* since the last request; -1 before the first */
};
int machine_disk_stats(struct machine *m, int i, struct machine_disk_stats *out);

/* ---- PCI bus 0, as the guest sees its configuration space ---- */

struct machine_pci_function {
    int slot;
    uint8_t config[256];
    uint32_t bar_size[6];   /* 0: no BAR */
};
/* Fills out with the present functions in slot order; returns how many. */
int machine_pci_list(struct machine *m, struct machine_pci_function *out, int max);

/* Resizes disk i's image (block_resize) and tells the guest through a
 * virtio config-change interrupt; requests in flight finish first. */
int machine_disk_resize(struct machine *m, int i, uint64_t size, struct error *err);

/* ---- PCI hotplug (ACPI, as QEMU's pc machine) ---- */

#define MACHINE_QOM_PATH_MAX 128

/* device_add virtio-blk-pci: a virtio-blk device over the named block
 * node drive (block_nodes.h) in the first free slot of bus 0; the guest
 * is notified through its ACPI GPE. id NULL: an anonymous device, named
 * /machine/peripheral-anon/device[N] as QEMU names it. Errors in QEMU's
 * words (duplicate id, unknown node, node in use, no free slot). */
int machine_device_add_virtio_blk(struct machine *m, const char *id, const char *drive, struct error *err);
/* The same with the device's serving options (--disk's queue-threads= and
 * poll-max-ns=); machine_device_add_virtio_blk takes the defaults (the
 * queues served on the main loop). */
struct machine_blk_options {
    bool queue_threads;
    uint64_t poll_max_ns;
};
int machine_device_add_virtio_blk_with(struct machine *m, const char *id, const char *drive,
                                       const struct machine_blk_options *o, struct error *err);
/* device_del: asks the guest to eject the device named by its id or QOM
 * path (-ENODEV: no such device; -EALREADY: asked already). It goes when
 * the guest ejects it. */
int machine_device_del(struct machine *m, const char *id, struct error *err);
/* QEMU's QOM path for a new device: /machine/peripheral/ID, or without an
 * id /machine/peripheral-anon/device[N] with the lowest N whose path
 * taken() says no device has. */
void machine_device_path(char *out, size_t size, const char *id, bool (*taken)(void *opaque, const char *path),
                         void *opaque);
/* Called in the main loop once a device the guest ejected is gone (id
 * NULL for an anonymous device). */
typedef void (*machine_device_deleted_fn)(void *opaque, const char *id, const char *path);
void machine_set_device_deleted_hook(struct machine *m, machine_device_deleted_fn fn, void *opaque);

/* The device_add'ed virtio-blk-pci devices, for monitors (query-block). */
struct machine_hotplugged_disk {
    const char *id;         /* NULL: anonymous */
    const char *path;       /* its QOM path */
    const char *node;       /* the block node it uses */
    struct machine_disk_stats stats;
};
/* Fills out in slot order (the strings last until the next device_add or
 * eject: the monitor's thread); returns how many. */
int machine_hotplugged_disks(struct machine *m, struct machine_hotplugged_disk *out, int max);

/* ---- snapshots (the machine paused or not started) ---- */

/* To files (a directory with "state" and "memory"). diff: only the pages
 * dirtied since the previous files snapshot (or restore) of this VM. */
int machine_snapshot_files(struct machine *m, const char *dir, bool diff, struct error *err);
/* --restore DIR, before the vCPUs start. */
int machine_restore_files(struct machine *m, const char *dir, struct error *err);
/* Internal snapshots of the qcow2 disks with the VM state (QEMU's savevm). */
int machine_savevm(struct machine *m, const char *name, struct error *err);
/* *changed tells whether a failure came after the VM or its disks changed
 * (then the VM cannot go on); NULL when the caller does not care. */
int machine_loadvm(struct machine *m, const char *name, bool *changed, struct error *err);
/* Deleting a name no disk has succeeds, as in QEMU. */
int machine_delvm(struct machine *m, const char *name, struct error *err);
/* "info snapshots" text, malloc'd. */
char *machine_info_snapshots(struct machine *m, struct error *err);

/* ---- record/replay (issue 13; cfg->record_replay) ---- */

enum machine_replay_mode { MACHINE_REPLAY_OFF, MACHINE_REPLAY_RECORD, MACHINE_REPLAY_PLAY };

/* Before machine_run, after --restore/--loadvm (restore_dir/loadvm_name
 * name the starting point; NULL both: boot). Record writes file; replay
 * refuses a log of another configuration, kernel, disk or starting point.
 * break_at > 0: a replay pauses after exit break_at. */
int machine_replay_start(struct machine *m, enum machine_replay_mode mode, const char *file,
                         const char *restore_dir, const char *loadvm_name, uint64_t break_at, struct error *err);
struct machine_replay_info {
    enum machine_replay_mode mode;
    const char *file;       /* NULL when off */
    uint64_t icount;        /* the exit ordinal */
};
void machine_replay_query(struct machine *m, struct machine_replay_info *out);
/* Replay only: pause after exit icount (> the current one; replaces the
 * break point there was, which a hit removes); 0 removes it. Any thread. */
int machine_replay_set_break(struct machine *m, uint64_t icount, struct error *err);
/* Replay only (QMP replay-seek): to exit icount, back or forward, from the
 * last time-travel snapshot at or before it when the replay is not between
 * that snapshot and icount already: the machine pauses, is restored, runs
 * on to icount and pauses there (the break point). Refused ("cannot seek")
 * back to before the first snapshot. */
int machine_replay_seek(struct machine *m, uint64_t icount, struct error *err);
/* Record, before machine_replay_start: a time-travel snapshot every exits
 * exits (0: none; MACHINE_REPLAY_SNAPSHOT_EVERY by default), in FILE.snap
 * beside the log; a replay's break point starts from the last one before it. */
#define MACHINE_REPLAY_SNAPSHOT_EVERY 1000000
void machine_replay_set_snapshot_interval(struct machine *m, uint64_t exits);
/* After machine_run: ends the log. *status is the run's result (>= 0: its
 * exit status; < 0: it failed, err says why). Record logs it. Replay sets
 * *status to the recorded run's (with its message in err when < 0): the
 * replay exits as the recording did; a run that ended by itself with
 * another status diverged. Returns how many events were recorded or
 * replayed, or <0 (a divergence: err says "diverged" and where). */
int64_t machine_replay_finish(struct machine *m, int *status, struct error *err);

#endif
