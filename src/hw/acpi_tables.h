/* The ACPI tables a PC guest reads: RSDP, RSDT and XSDT, FADT (a full one,
 * not hardware-reduced: PM1a event/control blocks, PM timer and GPE0 on
 * I/O ports, SCI on IRQ 9, as QEMU's piix4 machine), FACS, MADT and the
 * DSDT (acpi_dsdt.c).
 *
 * They are built once into a blob whose pointer fields hold offsets into
 * the blob, with a list of those fields and of the checksums: a direct
 * boot places the blob at a guest address (acpi_blob_place), firmware
 * gets it through fw_cfg with QEMU's table-loader commands
 * (acpi_blob_loader), which make SeaBIOS do the same at addresses it
 * chooses. */
#ifndef HW_ACPI_TABLES_H
#define HW_ACPI_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define ACPI_RSDP_SIZE 36
#define ACPI_MAX_FIXUPS 32
#define ACPI_IOAPIC_ADDR 0xfec00000u
#define ACPI_LAPIC_ADDR 0xfee00000u
#define ACPI_SCI_IRQ 9
#define ACPI_TABLES_FILE "etc/acpi/tables"
#define ACPI_RSDP_FILE "etc/acpi/rsdp"
#define ACPI_LOADER_FILE "etc/table-loader"

/* What the tables describe; the machine fills it in from its devices. */
struct acpi_config {
    int ncpus;
    uint8_t ioapic_id;
    uint64_t pci_mem_start, pci_mem_end;    /* the PCI bus's 32-bit MMIO window [start, end) */
    uint32_t hotplug_slots;                 /* bus 0 slots a guest may eject (bit per slot) */
    bool pm_timer;                          /* false: the FADT declares none */
};

/* A pointer field (size bytes at offset, in the RSDP or the tables) that
 * holds an offset into the tables until the blob is placed. */
struct acpi_pointer {
    bool in_rsdp;
    uint8_t size;
    uint32_t offset;
};

/* The 8-bit checksum at offset over [start, start + length). */
struct acpi_checksum {
    bool in_rsdp;
    uint32_t offset, start, length;
};

struct acpi_blob {
    uint8_t *tables;
    size_t len;
    uint8_t rsdp[ACPI_RSDP_SIZE];
    struct acpi_pointer ptrs[ACPI_MAX_FIXUPS];
    int nptrs;
    struct acpi_checksum sums[ACPI_MAX_FIXUPS];
    int nsums;
};

int acpi_build(struct acpi_blob *b, const struct acpi_config *cfg, struct error *err);
void acpi_blob_free(struct acpi_blob *b);
/* Pointers become guest addresses for tables at base, checksums are
 * filled in: the RSDP and the tables are ready to copy into the guest. */
void acpi_blob_place(struct acpi_blob *b, uint64_t base);
/* QEMU's table-loader commands (allocate, add pointer, add checksum) for
 * the blob in fw_cfg's ACPI_TABLES_FILE and ACPI_RSDP_FILE (malloc'd). */
int acpi_blob_loader(const struct acpi_blob *b, uint8_t **out, size_t *len, struct error *err);

/* The standard table header (36 bytes) with the project's OEM ids and a
 * zero checksum, for the tables built elsewhere (the DSDT). */
#define ACPI_HEADER_SIZE 36
void acpi_header(uint8_t *h, const char *sig, uint32_t length, uint8_t revision);

#endif
