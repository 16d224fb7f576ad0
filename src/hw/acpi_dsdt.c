#include "hw/acpi_dsdt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/acpi_aml.h"
#include "hw/acpi_pcihp.h"
#include "hw/acpi_pm.h"
#include "hw/pci.h"
#include "util/bswap.h"

#define DSDT_REVISION 2         /* 64-bit integers */
#define NOTIFY_BUS_CHECK 1
#define NOTIFY_EJECT_REQUEST 3

/* ---- _CRS: resource descriptors (ACPI 6.4 section 6.4) ---- */

static uint8_t *word_space(uint8_t *p, uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max)
{
    p[0] = 0x88;                /* Word Address Space Descriptor */
    st_le16(p + 1, 13);
    p[3] = type;
    p[4] = 0x0c;                /* producer, min and max fixed */
    p[5] = type_flags;
    st_le16(p + 6, 0);
    st_le16(p + 8, min);
    st_le16(p + 10, max);
    st_le16(p + 12, 0);
    st_le16(p + 14, (uint16_t)(max - min + 1));
    return p + 16;
}

static uint8_t *dword_memory(uint8_t *p, uint32_t min, uint32_t max)
{
    p[0] = 0x87;                /* DWord Address Space Descriptor */
    st_le16(p + 1, 23);
    p[3] = 0;                   /* memory */
    p[4] = 0x0c;
    p[5] = 0x01;                /* read/write, non-cacheable */
    memset(p + 6, 0, 20);
    st_le32(p + 10, min);
    st_le32(p + 14, max);
    st_le32(p + 22, max - min + 1);
    return p + 26;
}

static uint8_t *io_port(uint8_t *p, uint16_t port, uint8_t len)
{
    p[0] = 0x47;                /* I/O Port Descriptor */
    p[1] = 1;                   /* 16-bit decode */
    st_le16(p + 2, port);
    st_le16(p + 4, port);
    p[6] = 1;
    p[7] = len;
    return p + 8;
}

/* Bus 0 only, the config ports, all other I/O ports, and the 32-bit
 * window BARs live in (the VMM's or the firmware's assignment). */
static void root_bridge_crs(struct aml *a, const struct acpi_config *cfg)
{
    uint8_t crs[128], *p = crs;
    p = word_space(p, 2, 0, 0, 0xff);
    p = io_port(p, PCI_CONFIG_ADDRESS_PORT, 8);
    p = word_space(p, 1, 0x03, 0, PCI_CONFIG_ADDRESS_PORT - 1);
    p = word_space(p, 1, 0x03, PCI_CONFIG_DATA_PORT + 4, 0xffff);
    p = dword_memory(p, (uint32_t)cfg->pci_mem_start, (uint32_t)(cfg->pci_mem_end - 1));
    *p++ = 0x79;                /* End Tag, checksum 0: "the sum is right" */
    *p++ = 0;
    aml_name_decl(a, "_CRS");
    aml_buffer(a, crs, (size_t)(p - crs));
}

/* ---- the root bridge ---- */

static void prt(struct aml *a)
{
    aml_name_decl(a, "_PRT");
    aml_package(a, (PCI_MAX_SLOTS - 1) * PCI_INTX_PINS);
    for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        for (unsigned pin = 0; pin < PCI_INTX_PINS; pin++) {
            aml_package(a, 4);
            aml_int(a, (uint64_t)slot << 16 | 0xffff);
            aml_int(a, pin);    /* 0: INTA */
            aml_int(a, 0);      /* no link device: the GSI follows */
            aml_int(a, pci_intx_gsi((int)slot, (int)pin + 1));
            aml_close(a);
        }
    }
    aml_close(a);
}

static void opregion(struct aml *a, const char *name, uint16_t port, uint8_t len)
{
    aml_op(a, AML_OPREGION);
    aml_name(a, name);
    aml_bytes(a, &(uint8_t){ AML_SYSTEM_IO }, 1);
    aml_int(a, port);
    aml_int(a, len);
}

/* Field(region, DWordAcc, NoLock, WriteAsZeros) { names[i], 32 ... } */
static void dword_fields(struct aml *a, const char *region, const char *const *names, int n)
{
    aml_open(a, AML_FIELD);
    aml_name(a, region);
    aml_bytes(a, &(uint8_t){ AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_AS_ZEROS }, 1);
    for (int i = 0; i < n; i++) {
        aml_name(a, names[i]);
        aml_bytes(a, &(uint8_t){ 32 }, 1);  /* its PkgLength: 32 bits */
    }
    aml_close(a);
}

/* The hotplug registers and PCEJ(slot): B0EJ = 1 << slot. */
static void hotplug_registers(struct aml *a)
{
    static const char *const status[] = { "PCIU", "PCID" }, *const eject[] = { "B0EJ" };
    opregion(a, "PCST", ACPI_PCIHP_PORT + ACPI_PCIHP_UP, 8);
    dword_fields(a, "PCST", status, 2);
    opregion(a, "SEJ", ACPI_PCIHP_PORT + ACPI_PCIHP_EJECT, 4);
    dword_fields(a, "SEJ", eject, 1);
    aml_method(a, "PCEJ", 1, false);
    aml_op(a, AML_STORE);
    aml_op(a, AML_SHIFT_LEFT);
    aml_int(a, 1);
    aml_op(a, AML_ARG0);
    aml_op(a, AML_ZERO);        /* no target */
    aml_name(a, "B0EJ");
    aml_close(a);
}

static void slot_name(char out[5], unsigned slot)
{
    snprintf(out, 5, "S%02X", slot * 8);     /* QEMU's names: S08, S10, ... */
}

/* Device(Sxx) { _ADR, _SUN, _EJ0(x) { PCEJ(_SUN) } } */
static void hotplug_slot(struct aml *a, unsigned slot)
{
    char name[5];
    slot_name(name, slot);
    aml_device(a, name);
    aml_name_decl(a, "_ADR");
    aml_int(a, (uint64_t)slot << 16);
    aml_name_decl(a, "_SUN");
    aml_int(a, slot);
    aml_method(a, "_EJ0", 1, false);
    aml_name(a, "PCEJ");
    aml_name(a, "_SUN");
    aml_close(a);
    aml_close(a);
}

/* DVNT(bits, event): Notify(Sxx, event) for each slot whose bit is set. */
static void notify_method(struct aml *a, uint32_t slots)
{
    aml_method(a, "DVNT", 2, false);
    for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        if (!(slots & (1u << slot))) {
            continue;
        }
        char name[5];
        slot_name(name, slot);
        aml_open(a, AML_IF);
        aml_op(a, AML_AND);
        aml_op(a, AML_ARG0);
        aml_int(a, 1u << slot);
        aml_op(a, AML_ZERO);
        aml_op(a, AML_NOTIFY);
        aml_name(a, name);
        aml_op(a, AML_ARG0 + 1);
        aml_close(a);
    }
    aml_close(a);
    /* PCNT: what was plugged gets a bus check, what is to go an eject request. */
    aml_method(a, "PCNT", 0, false);
    aml_name(a, "DVNT");
    aml_name(a, "PCIU");
    aml_int(a, NOTIFY_BUS_CHECK);
    aml_name(a, "DVNT");
    aml_name(a, "PCID");
    aml_int(a, NOTIFY_EJECT_REQUEST);
    aml_close(a);
}

static void pci_root(struct aml *a, const struct acpi_config *cfg)
{
    aml_device(a, "PCI0");
    aml_name_decl(a, "_HID");
    aml_eisaid(a, "PNP0A03");
    aml_name_decl(a, "_UID");
    aml_int(a, 0);
    root_bridge_crs(a, cfg);
    prt(a);
    hotplug_registers(a);
    for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        if (cfg->hotplug_slots & (1u << slot)) {
            hotplug_slot(a, slot);
        }
    }
    notify_method(a, cfg->hotplug_slots);
    aml_close(a);
}

/* ---- the rest ---- */

/* The GPE block device and GPE 1's handler (level 1 of the SCI). */
static void gpe_scope(struct aml *a)
{
    aml_scope(a, "\\_GPE");
    aml_name_decl(a, "_HID");
    aml_string(a, "ACPI0006");
    aml_method(a, "_E01", 0, false);
    aml_name(a, "\\_SB.PCI0.PCNT");
    aml_close(a);
    aml_close(a);
}

/* _S5: SLP_TYP for PM1a and PM1b, and two reserved values. */
static void sleep_state_s5(struct aml *a)
{
    aml_name_decl(a, "\\_S5");
    aml_package(a, 4);
    aml_int(a, ACPI_S5_SLP_TYP);
    aml_int(a, ACPI_S5_SLP_TYP);
    aml_int(a, 0);
    aml_int(a, 0);
    aml_close(a);
}

int acpi_dsdt_build(const struct acpi_config *cfg, uint8_t **out, size_t *len, struct error *err)
{
    struct aml a;
    aml_init(&a);
    aml_bytes(&a, (uint8_t[ACPI_HEADER_SIZE]){ 0 }, ACPI_HEADER_SIZE);
    aml_scope(&a, "\\_SB");
    pci_root(&a, cfg);
    aml_close(&a);
    gpe_scope(&a);
    sleep_state_s5(&a);
    int ret = aml_finish(&a, err);
    if (ret < 0) {
        aml_free(&a);
        return ret;
    }
    acpi_header(a.data, "DSDT", (uint32_t)a.len, DSDT_REVISION);
    *out = a.data;
    *len = a.len;
    return 0;
}
