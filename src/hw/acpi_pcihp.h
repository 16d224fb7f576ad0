/* ACPI PCI hotplug of bus 0 as QEMU's piix4 machine does it
 * (docs/specs/acpi_pci_hotplug.rst in QEMU): a register block at 0xae00
 * with a bit per slot, read by the DSDT's GPE handler (acpi_dsdt.c):
 *   0x00 up (read): slots with a device added, to be noticed by the guest
 *   0x04 down (read): slots whose device the host wants removed
 *   0x08 eject (write): the guest's _EJ0 ejects the slot; reads 0 (no
 *        optional features)
 *   0x0c removable (read): slots that can be hot-unplugged
 *   0x10 bus select (read/write): only bus 0 here
 * Up and down bits are reported through GPE0 bit 1 (the SCI) and stay set
 * until the device is ejected (down) or the guest's next scan finds it
 * (up: cleared once read, as QEMU clears it when the guest acts). */
#ifndef HW_ACPI_PCIHP_H
#define HW_ACPI_PCIHP_H

#include <pthread.h>
#include <stdint.h>

#include "hw/acpi_pm.h"
#include "state/state_buf.h"
#include "vmm/device.h"

#define ACPI_PCIHP_PORT 0xae00
#define ACPI_PCIHP_LEN 0x14
#define ACPI_PCIHP_UP 0x00
#define ACPI_PCIHP_DOWN 0x04
#define ACPI_PCIHP_EJECT 0x08
#define ACPI_PCIHP_REMOVABLE 0x0c
#define ACPI_PCIHP_BUS_SELECT 0x10
#define ACPI_PCIHP_GPE_BIT 1

struct acpi_pcihp {
    pthread_mutex_t lock;
    struct acpi_pm *pm;             /* where the GPE goes */
    /* The guest ejected slot: the owner removes the device (called with
     * no lock held, on the vCPU thread that wrote the eject register). */
    void (*eject)(void *opaque, int slot);
    void *opaque;
    uint32_t up, down, removable;
    uint32_t bus_select;
    /* Ejected by the guest, not yet removed by the owner (it may wait for
     * a block job or a migration): saved, so a machine loading the state
     * removes them too (the guest let them go). */
    uint32_t ejected;
};

void acpi_pcihp_init(struct acpi_pcihp *h, struct acpi_pm *pm, void (*eject)(void *, int), void *opaque);
void acpi_pcihp_destroy(struct acpi_pcihp *h);
uint64_t acpi_pcihp_read(void *opaque, uint64_t offset, unsigned size);
void acpi_pcihp_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* A device present from the start in slot may be ejected (QEMU's pc lets
 * the guest eject cold-plugged devices in hotpluggable slots). */
void acpi_pcihp_set_removable(struct acpi_pcihp *h, int slot);
/* The host plugged a device into slot / asks the guest to release it. */
void acpi_pcihp_plug(struct acpi_pcihp *h, int slot);
void acpi_pcihp_unplug_request(struct acpi_pcihp *h, int slot);
/* The device in slot is gone (ejected): nothing is pending for it. */
void acpi_pcihp_removed(struct acpi_pcihp *h, int slot);

/* 2: the ejected slots not yet removed. */
#define ACPI_PCIHP_STATE_VERSION 2
extern const struct device_ops acpi_pcihp_device_ops;

#endif
