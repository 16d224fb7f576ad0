/* The machine's virtio devices: disks, console, rng, net on the transports
 * the command line asks for, and what the kernel command line must say
 * about virtio-mmio devices. */
#ifndef COWVISOR_MACHINE_VIRTIO_H
#define COWVISOR_MACHINE_VIRTIO_H

#include "machine.h"

int machine_add_virtio(struct machine *m, struct error *err);
void machine_reset_virtio(struct machine *m);
void machine_destroy_virtio(struct machine *m);
/* --append plus "virtio_mmio.device=..." for each MMIO device (malloc'd). */
char *machine_kernel_cmdline(struct machine *m);

#endif
