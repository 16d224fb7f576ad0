/* The cowvisor machine: a KVM VM with the PC devices (COM1, CMOS RTC, i8042,
 * debug exit, PCI host) and virtio devices, booted from a kernel or firmware,
 * and driven by one epoll main loop. */
#ifndef COWVISOR_MACHINE_H
#define COWVISOR_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/cmos_rtc.h"
#include "hw/fw_cfg.h"
#include "hw/pci.h"
#include "hw/system_ports.h"
#include "hw/uart.h"
#include "state/state_buf.h"
#include "util/error.h"
#include "vmm/boot.h"
#include "vmm/event_loop.h"
#include "vmm/vm.h"

#define MACHINE_MAX_DISKS 8
#define MACHINE_MAX_VIRTIO 16

enum transport { TRANSPORT_PCI, TRANSPORT_MMIO };

struct disk_config {
    const char *file;
    const char *format;     /* NULL: probe */
    bool read_only;
    enum transport transport;
    const char *serial;
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
};

struct virtio_device;
struct virtio_mmio;
struct virtio_pci;
struct blockdev;

/* Lifecycle events the guest causes, for the QMP monitor (its events). */
enum machine_event { MACHINE_EVENT_POWER_OFF, MACHINE_EVENT_RESET };

struct machine {
    const struct machine_config *cfg;
    void (*event_hook)(void *opaque, enum machine_event ev);
    void *event_hook_opaque;
    struct vm vm;
    struct event_loop loop;
    struct uart uart;
    struct system_ports sys;
    struct cmos_rtc rtc;
    struct pci_host pci;
    struct fw_cfg fw_cfg;           /* only with --bios */
    int console_in;
    int console_out;
    int console_listen;
    bool console_is_tty;
    int exit_status;
    struct state_buf initial_cpu_state;     /* restored on reset */
    struct blockdev *disks[MACHINE_MAX_DISKS];
    struct virtio_device *virtio[MACHINE_MAX_VIRTIO];
    struct virtio_mmio *mmio[MACHINE_MAX_VIRTIO];
    struct virtio_pci *vpci[MACHINE_MAX_VIRTIO];
    int nvirtio;
    int nmmio;
};

int machine_create(struct machine *m, const struct machine_config *cfg, struct error *err);
/* Runs until the guest powers off or exits; returns the process exit status. */
int machine_run(struct machine *m, struct error *err);
void machine_destroy(struct machine *m);

#endif
