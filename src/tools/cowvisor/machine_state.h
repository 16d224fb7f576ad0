/* The whole machine as VM-state stream sections, and its snapshots:
 *  - to files (a directory with "state" and "memory"; full or diff) and
 *    their lazy restore;
 *  - into the VM-state area of a qcow2 disk, with an internal disk snapshot
 *    (savevm/loadvm/delvm, as QEMU's).
 * Everything here runs in the main loop with the vCPUs paused. */
#ifndef COWVISOR_MACHINE_STATE_H
#define COWVISOR_MACHINE_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "machine.h"
#include "state/guest_ram.h"
#include "state/vmstate_stream.h"

struct machine_snapshots {
    struct ram_backing backing;
    bool dirty_tracking;            /* KVM dirty log on since the last files snapshot/restore */
    char last_dir[PATH_MAX];        /* that snapshot: the parent of the next diff */
    uint64_t last_id;
};

/* Stream sections: "config", "kvm-vm" (irqchip, PIT, clock), "vcpu.N"
 * for each vCPU, then one per device ("uart", "cmos-rtc", "system-ports",
 * "pci-host", "virtio.N" for each virtio device with its transport), each
 * with its own checksum. Saving drains disk requests in flight. */
int machine_state_save(struct machine *m, struct vmstate_writer *w, struct error *err);

/* What machine_state_read found, checked but not yet applied. */
#define MACHINE_STATE_MAX_SECTIONS (VM_MAX_CPUS + MACHINE_MAX_VIRTIO + 8)
struct machine_state_image {
    int count;
    uint8_t *data[MACHINE_STATE_MAX_SECTIONS];
    size_t len[MACHINE_STATE_MAX_SECTIONS];
};
/* Reads and checks config (against this machine), then every CPU and
 * device section. */
int machine_state_read(struct machine *m, struct vmstate_reader *r, struct machine_state_image *img,
                       struct error *err);
/* Loads vCPUs, irqchip, PIT, clock and devices, then lets devices look at
 * requests the guest posted before the snapshot. */
int machine_state_apply(struct machine *m, const struct machine_state_image *img, struct error *err);
void machine_state_image_free(struct machine_state_image *img);

/* Snapshots to files (VM paused). diff: only the pages dirtied since the
 * previous files snapshot (or restore) of this VM. */
int machine_snapshot_files(struct machine *m, struct machine_snapshots *s, const char *dir, bool diff,
                           struct error *err);
/* --restore DIR, before the vCPUs start. */
int machine_restore_files(struct machine *m, struct machine_snapshots *s, const char *dir, struct error *err);

/* Internal snapshots of the qcow2 disks with the VM state (VM paused). */
int machine_savevm(struct machine *m, struct machine_snapshots *s, const char *name, struct error *err);
/* *changed tells whether a failure came after the VM or its disks changed
 * (then the VM cannot go on); NULL when the caller does not care. */
int machine_loadvm(struct machine *m, struct machine_snapshots *s, const char *name, bool *changed,
                   struct error *err);
/* Deleting a name no disk has succeeds, as in QEMU. */
int machine_delvm(struct machine *m, const char *name, struct error *err);
/* "info snapshots" text, malloc'd. */
char *machine_info_snapshots(struct machine *m, struct error *err);

#endif
