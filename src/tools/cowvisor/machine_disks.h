/* The machine's disks as the monitor sees them: their backing chains and
 * external snapshots (a new qcow2 overlay on top of the current image). */
#ifndef COWVISOR_MACHINE_DISKS_H
#define COWVISOR_MACHINE_DISKS_H

#include <stdbool.h>
#include <stdint.h>

#include "machine.h"

struct disk_layer {
    const char *filename;
    const char *format;
    const char *backing_filename;   /* as recorded, or NULL */
    uint64_t size;
    uint32_t cluster_size;
};

/* Layers of disk i from the top; returns how many (at most max). */
int machine_disk_chain(struct machine *m, int i, struct disk_layer *out, int max, bool *read_only);
/* Creates a qcow2 overlay at file backed by disk i's image (absolute path)
 * and switches the disk to it. */
int machine_disk_overlay(struct machine *m, int i, const char *file, struct error *err);

/* Waits until no disk request is in flight (the main loop starts new ones:
 * until it runs again, none will). */
void machine_disks_drain(struct machine *m);

#endif
