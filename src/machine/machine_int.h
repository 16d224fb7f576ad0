/* Inside the machine: its parts and the functions its files share. Only
 * src/machine and the tests that look into a machine include this. */
#ifndef MACHINE_MACHINE_INT_H
#define MACHINE_MACHINE_INT_H

#include <limits.h>

#include "hw/acpi_pcihp.h"
#include "hw/acpi_pm.h"
#include "hw/cmos_rtc.h"
#include "hw/fw_cfg.h"
#include "hw/pci.h"
#include "hw/system_ports.h"
#include "hw/uart.h"
#include "machine/block_nodes.h"
#include "machine/console_mux.h"
#include "machine/device_registry.h"
#include "machine/machine.h"
#include "state/state_buf.h"
#include "vmm/vm.h"

struct blockdev;
struct machine_replay;
struct virtio_device;
struct virtio_mmio;
struct virtio_pci;

/* A virtio device on its transport: what the registry sees as "virtio.N". */
struct virtio_slot {
    struct virtio_device *dev;
    struct virtio_mmio *mmio;       /* one of the two */
    struct virtio_pci *pci;
};

/* A device_add'ed virtio-blk-pci ("virtio-hotplug.<PCI slot>" in the
 * registry) over a named block node (machine_hotplug.c). */
#define MACHINE_MAX_HOTPLUG (PCI_MAX_SLOTS - 1)     /* every slot but the host bridge's */
struct hotplugged {
    int pci_slot;                   /* 0: this entry is free */
    char id[64];                    /* "": added without one */
    char path[MACHINE_QOM_PATH_MAX];    /* /machine/peripheral/ID or /machine/peripheral-anon/device[N] */
    struct virtio_slot slot;
    struct block_node *node;
    bool unplug_requested;
};

/* The KVM VM's and each vCPU's state at power-on, loaded again at reset. */
struct cpu_slot {
    struct vm *vm;
    struct vcpu *vcpu;              /* NULL: the VM-wide part (irqchip, PIT, clock) */
    struct state_buf initial;
};

struct console {
    int in;
    int out;
    int listen;
    bool is_tty;
    struct console_mux mux;         /* a terminal's escapes and monitor (is_tty) */
    /* Typed for the guest, not yet taken by the UART's FIFO (as QEMU's mux
     * buffer): what is read is never dropped, and the monitor keeps reading
     * while the guest takes nothing. */
    uint8_t pending[64];
    size_t pending_len;
    bool input_paused;              /* in unwatched until the guest takes some */
    int retry_timer;                /* timerfd: looks again while bytes wait */
    bool retry_armed;
};

/* The files snapshots' chain: the parent of the next diff snapshot, whose
 * pages guest memory's dirty tracking has followed since. */
struct snapshot_chain {
    char last_dir[PATH_MAX];
    uint64_t last_id;
};

struct machine {
    const struct machine_config *cfg;
    machine_event_fn event_hook;
    void *event_hook_opaque;
    struct vm vm;
    struct event_loop loop;
    struct device_registry devices;
    struct console console;
    struct uart uart;
    struct system_ports sys;
    struct cmos_rtc rtc;
    struct pci_host pci;
    struct fw_cfg fw_cfg;           /* only with --bios */
    struct acpi_pm acpi_pm;
    struct acpi_pcihp pcihp;
    uint8_t *acpi_image;            /* RSDP and tables for a kernel boot (machine_acpi.c) */
    size_t acpi_image_len;
    struct hotplugged hotplug[MACHINE_MAX_HOTPLUG];
    uint32_t ejected_slots;         /* the guest ejected them; the main loop removes (atomic) */
    uint32_t deferred_ejects;       /* ejected while a migration or job used them (atomic) */
    int eject_fd;                   /* wakes the main loop for that */
    machine_device_deleted_fn device_deleted_hook;
    void *device_deleted_opaque;
    struct cpu_slot cpus[VM_MAX_CPUS + 1];
    struct blockdev *disks[MACHINE_MAX_DISKS];   /* NULL once ejected (disk_unplug) */
    /* A cold-plugged disk on PCI asked to go (device_del), and gone. */
    enum disk_unplug { DISK_PLUGGED, DISK_UNPLUG_REQUESTED, DISK_UNPLUGGED } disk_unplug[MACHINE_MAX_DISKS];
    struct machine_disk_ref { struct machine *m; int i; } disk_refs[MACHINE_MAX_DISKS];  /* block job hosts */
    int disk_jobs[MACHINE_MAX_DISKS];   /* jobs holding the disk's image (atomic) */
    struct block_node_table nodes;  /* blockdev-add's named nodes */
    struct virtio_slot virtio[MACHINE_MAX_VIRTIO];
    int nvirtio;
    int nmmio;
    enum machine_run_state run_state;
    bool quiesced;                  /* devices quiesced (paused, or stopped for a reset) */
    bool reset_pending;             /* host reset asked for while paused */
    bool host_reset;                /* the reset now requested is the host's */
    bool memory_lost;               /* guest RAM was unreadable: only a reset goes on */
    bool migrating;                 /* an outgoing migration runs (atomic: its thread ends it) */
    int exit_status;
    struct snapshot_chain snaps;
    /* The boot files as read at creation: a reset loads these (as QEMU
     * keeps its ROMs), not whatever the paths hold now, and works after
     * --chroot. */
    uint8_t *boot_image, *boot_initrd;
    size_t boot_image_len, boot_initrd_len;
    struct machine_replay *replay;  /* record/replay mode (machine_replay*.c), else NULL */
};

/* Registers one device (machine_int: every part calls this once). */
int machine_add_device(struct machine *m, const char *type, int instance, const struct device_ops *ops, void *dev,
                       struct error *err);
void machine_emit(struct machine *m, enum machine_event ev, bool guest);

/* The console (machine_console.c). */
int machine_console_open(struct machine *m, struct error *err);
int machine_console_start(struct machine *m, struct error *err);
/* Reads what the console's input fd has for the guest or the monitor. */
void machine_console_input(struct machine *m, int fd);
void machine_console_close(struct machine *m);

/* The KVM VM and its vCPUs as devices (machine_cpus.c); their reset loads
 * the state they had when this was called. */
int machine_add_cpus(struct machine *m, struct error *err);
/* Record/replay mode (machine_replay_cpu.c): the user-space PIT and PIC,
 * and on KVM the CPUID mask, the MSR filter and the exit hook. Before the
 * PC devices: they take their interrupt lines from machine_irq_line. */
int machine_add_replay_devices(struct machine *m, struct error *err);
/* What record/replay cannot do (yet), refused by name before KVM is touched. */
int machine_replay_check_config(const struct machine_config *cfg, struct error *err);
void machine_replay_free(struct machine *m);
/* The main loop, when a vCPU parked itself: a time-travel snapshot it
 * waits for is taken and the machine goes on (true), else false. */
bool machine_replay_snapshot_pause(struct machine *m);
/* Record/replay mode, for the PC devices: port 0x61 (system control port
 * B) answered from the exit clock and the PIT, on one bus range with the
 * i8042's ports around it (0x60-0x64), registered with the machine. */
int machine_replay_add_i8042_port_b(struct machine *m, struct error *err);
/* ISA interrupt pin gsi: the user-space PIC's in record/replay mode, else KVM's. */
struct irq_line machine_irq_line(struct machine *m, unsigned gsi);
/* The interrupt of virtio-mmio device n: GSI 16-19 then free ISA pins on
 * KVM's IOAPIC (apart from PCI's INTx GSIs 20-23), a free ISA pin of the
 * user-space PIC in record/replay mode; each device its own, for up to
 * machine_mmio_max devices. */
unsigned machine_mmio_irq(struct machine *m, int n);
int machine_mmio_max(struct machine *m);
/* The PC devices and, with firmware, fw_cfg (machine_pc.c). */
int machine_add_pc_devices(struct machine *m, struct error *err);
int machine_add_fw_cfg(struct machine *m, struct error *err);
/* The ACPI PM device and PCI hotplug registers (machine_acpi.c); the
 * tables once every cold-plugged device is there (to fw_cfg with
 * firmware, kept for the kernel's boot otherwise), written into guest
 * memory at each kernel (re)load. */
int machine_add_acpi(struct machine *m, struct error *err);
int machine_build_acpi(struct machine *m, struct error *err);
int machine_write_acpi(struct machine *m, struct error *err);
/* The hotplug registers with the guest's ejects served in the main loop
 * (machine_hotplug.c); tests without a main loop serve them directly. */
int machine_add_pci_hotplug(struct machine *m, struct error *err);
/* Cold-plugged disk i on PCI: its virtio slot, or NULL (on MMIO, or gone). */
struct virtio_slot *machine_disk_pci_slot(struct machine *m, int i);
void machine_pci_process_ejects(struct machine *m);
/* Ejects held back while a migration or block job used the disk are
 * served now (any thread: the main loop is woken). */
void machine_ejects_resume(struct machine *m);
/* Cold-plugged disk i leaves its slot as if the guest had ejected it, but
 * without a DEVICE_DELETED event: a restored snapshot's guest had. */
int machine_cold_disk_eject_now(struct machine *m, int i, struct error *err);
/* The virtio devices on their transports (machine_virtio.c); a slot
 * registers as "virtio.N" with these operations. */
extern const struct device_ops machine_virtio_slot_ops;
int machine_add_virtio(struct machine *m, struct error *err);
/* After the devices that use them are gone. */
void machine_close_disks(struct machine *m);
/* --append plus "virtio_mmio.device=..." for each MMIO device (malloc'd). */
char *machine_kernel_cmdline(struct machine *m);
/* Kernel or firmware into guest memory and the boot vCPU's registers. */
int machine_load_boot_image(struct machine *m, struct error *err);

/* A virtio-blk device's request counters as monitors show them. */
struct virtio_blk;
void machine_blk_stats(struct virtio_blk *b, struct machine_disk_stats *out);

/* Devices finish and stop their own work (again when already quiesced),
 * and start it again. Quiescing marks the virtio rings dirty (below). */
void machine_quiesce(struct machine *m);
void machine_unquiesce(struct machine *m);
/* machine_disk_job_host for the record/replay's own switches of disk i
 * (machine_replay_disks.c), which that refuses to anyone else. */
int machine_disk_switch_host(struct machine *m, int i, struct block_job_host *out, struct error *err);
/* machine_disk_overlay without the record/replay refusal: the recording's own overlay. */
int machine_disk_add_overlay(struct machine *m, int i, const char *file, struct error *err);
/* Every ready virtio queue's used ring marked dirty in guest memory's
 * tracking (machine_dirty_rings.c): the VMM writes them around KVM's log. */
void machine_mark_rings_dirty(struct machine *m);
/* Power-on state again: vCPUs, devices and the boot image (vCPUs stopped). */
int machine_reset(struct machine *m, struct error *err);
/* Guest memory's dirty tracking off: the next diff snapshot has no parent. */
void machine_forget_snapshot_chain(struct machine *m);
/* machine_memsave with the paging registers given (machine_memdump.c;
 * tests walk hand-built page tables without a vCPU). */
struct x86_paging;
int machine_memsave_paging(struct machine *m, const struct x86_paging *pg, uint64_t va, uint64_t size,
                           const char *path, struct error *err);

#endif
