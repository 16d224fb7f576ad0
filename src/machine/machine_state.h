/* The whole machine as VM-state stream sections: "config" (what the guest
 * saw of the machine, checked on load), then one section per registered
 * device, named as it registered ("kvm-vm", "vcpu.N", "uart", "cmos-rtc",
 * "system-ports", "pci-host", "fw-cfg", "virtio.N"), in registry order.
 * Guest RAM follows ("memory" or "ram"): see machine_snapshot.c and
 * machine_savevm.c. Everything runs with the machine paused or not started. */
#ifndef MACHINE_MACHINE_STATE_H
#define MACHINE_MACHINE_STATE_H

#include "machine/machine_int.h"
#include "state/vmstate_stream.h"

/* Saving quiesces the devices (disk requests in flight complete). */
int machine_state_save(struct machine *m, struct vmstate_writer *w, struct error *err);

/* The "config" section alone: a migration checks it before the source
 * stops (the full state repeats it). */
int machine_state_save_config(struct machine *m, struct vmstate_writer *w, struct error *err);
int machine_state_check_config(struct machine *m, struct vmstate_reader *r, struct error *err);

/* What machine_state_read found, checked but not yet applied. */
struct machine_state_image {
    int count;
    struct registered_device *device[DEVICE_REGISTRY_MAX];
    uint32_t version[DEVICE_REGISTRY_MAX];
    uint8_t *data[DEVICE_REGISTRY_MAX];
    size_t len[DEVICE_REGISTRY_MAX];
    bool eject[MACHINE_MAX_DISKS];  /* cold-plugged disks the saved guest had ejected, still here */
};
/* Reads and checks config (against this machine), then the device
 * sections, each for a device of this machine and every device once.
 * Stops before guest RAM ("memory", "ram" or a migration's "mig-*"
 * sections) or the end. */
int machine_state_read(struct machine *m, struct vmstate_reader *r, struct machine_state_image *img,
                       struct error *err);
/* Whether applying img drops devices (disks the saved guest had ejected). */
bool machine_state_changes_devices(const struct machine_state_image *img);
/* Drops those disks (quietly: that guest saw them go long ago). It changes
 * the device set: run it where nothing else uses the devices (the main
 * loop; an incoming migration hands it there). Done once: apply skips it. */
int machine_state_eject_saved(struct machine *m, const struct machine_state_image *img, struct error *err);
/* Drops the disks img ejects (if still here), loads every device, then
 * lets them look at requests the guest posted before the snapshot. */
int machine_state_apply(struct machine *m, const struct machine_state_image *img, struct error *err);
void machine_state_image_free(struct machine_state_image *img);

#endif
