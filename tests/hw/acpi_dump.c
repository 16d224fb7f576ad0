/* Writes the ACPI tables cowvisor builds, one file per table as acpidump's
 * -b names them (dsdt.dat, facp.dat, apic.dat, rsdt.dat, xsdt.dat,
 * facs.dat, rsdp.dat), placed at a guest address as a direct boot places
 * them, for iasl -d and acpiexec in acpi_tables.sh.
 * Usage: acpi_dump DIR [NCPUS [HOTPLUG_SLOT_MASK]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/acpi_tables.h"
#include "util/bswap.h"

#define BASE 0xe0040u

static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: acpi_dump DIR [NCPUS [HOTPLUG_SLOT_MASK]]\n");
        return 2;
    }
    struct acpi_config cfg = { .ncpus = argc > 2 ? atoi(argv[2]) : 2,
                               .pci_mem_start = 0xc0000000u, .pci_mem_end = 0xfec00000u,
                               .hotplug_slots = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 0xfffffff0u,
                               .pm_timer = true };
    cfg.ioapic_id = (uint8_t)cfg.ncpus;
    struct acpi_blob b;
    struct error err = { 0 };
    if (acpi_build(&b, &cfg, &err) < 0) {
        fprintf(stderr, "acpi_build: %s\n", err.msg);
        return 1;
    }
    acpi_blob_place(&b, BASE);
    int bad = write_file(argv[1], "rsdp", b.rsdp, sizeof(b.rsdp));
    /* Walk from the RSDP as an OS does: XSDT, its tables, the FADT's. */
    uint64_t xsdt = ld_le64(b.rsdp + 24) - BASE;
    uint32_t n = (ld_le32(b.tables + xsdt + 4) - ACPI_HEADER_SIZE) / 8;
    bad |= write_file(argv[1], "xsdt", b.tables + xsdt, ld_le32(b.tables + xsdt + 4));
    uint64_t rsdt = ld_le32(b.rsdp + 16) - BASE;
    bad |= write_file(argv[1], "rsdt", b.tables + rsdt, ld_le32(b.tables + rsdt + 4));
    for (uint32_t i = 0; i < n; i++) {
        uint64_t t = ld_le64(b.tables + xsdt + ACPI_HEADER_SIZE + 8 * i) - BASE;
        char name[5] = { 0 };
        for (int c = 0; c < 4; c++) {
            name[c] = (char)(b.tables[t + (uint64_t)c] | 0x20);
        }
        bad |= write_file(argv[1], name, b.tables + t, ld_le32(b.tables + t + 4));
        if (!memcmp(b.tables + t, "FACP", 4)) {
            uint64_t facs = ld_le32(b.tables + t + 36) - BASE, dsdt = ld_le32(b.tables + t + 40) - BASE;
            bad |= write_file(argv[1], "facs", b.tables + facs, ld_le32(b.tables + facs + 4));
            bad |= write_file(argv[1], "dsdt", b.tables + dsdt, ld_le32(b.tables + dsdt + 4));
        }
    }
    acpi_blob_free(&b);
    return bad;
}
