/* The DSDT: the PCI root bridge (PNP0A03 with the bus, I/O and MMIO
 * windows the machine's PCI host uses and the INTx routing), the sleep
 * state S5, and QEMU piix4-style ACPI PCI hotplug (slot devices with
 * _SUN/_EJ0 and the GPE handler that notifies the guest). */
#ifndef HW_ACPI_DSDT_H
#define HW_ACPI_DSDT_H

#include "hw/acpi_tables.h"

/* The whole table, header and checksum included (malloc'd). */
int acpi_dsdt_build(const struct acpi_config *cfg, uint8_t **out, size_t *len, struct error *err);

#endif
