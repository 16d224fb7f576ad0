#include "hw/acpi_tables.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/acpi_dsdt.h"
#include "hw/acpi_pm.h"
#include "util/bswap.h"

#define FACS_SIZE 64
#define FADT_SIZE 244           /* revision 3 (ACPI 2.0): the X_ blocks, the reset register */
#define RSDT_ENTRIES 2          /* FADT, MADT */
#define MADT_LAPIC_SIZE 8
#define MADT_IOAPIC_SIZE 12
#define MADT_OVERRIDE_SIZE 10
#define MADT_LAPIC_NMI_SIZE 6
#define MADT_FIXED 44
#define GAS_SYSTEM_IO 1

/* ---- the blob ---- */

static int add_pointer(struct acpi_blob *b, bool in_rsdp, size_t offset, uint8_t size)
{
    if (b->nptrs == ACPI_MAX_FIXUPS) {
        return -E2BIG;
    }
    b->ptrs[b->nptrs++] = (struct acpi_pointer){ in_rsdp, size, (uint32_t)offset };
    return 0;
}

static int add_checksum(struct acpi_blob *b, bool in_rsdp, size_t offset, size_t start, size_t length)
{
    if (b->nsums == ACPI_MAX_FIXUPS) {
        return -E2BIG;
    }
    b->sums[b->nsums++] = (struct acpi_checksum){ in_rsdp, (uint32_t)offset, (uint32_t)start, (uint32_t)length };
    return 0;
}

/* A table at offset of the tables: its header's checksum. */
static int add_table_checksum(struct acpi_blob *b, size_t offset)
{
    return add_checksum(b, false, offset + 9, offset, ld_le32(b->tables + offset + 4));
}

/* A pointer field in the tables that points at the table at target. */
static int link(struct acpi_blob *b, size_t field, uint8_t size, size_t target)
{
    uint8_t *p = b->tables + field;
    if (size == 4) {
        st_le32(p, (uint32_t)target);
    } else {
        st_le64(p, target);
    }
    return add_pointer(b, false, field, size);
}

void acpi_header(uint8_t *h, const char *sig, uint32_t length, uint8_t revision)
{
    memset(h, 0, ACPI_HEADER_SIZE);
    memcpy(h, sig, 4);
    st_le32(h + 4, length);
    h[8] = revision;
    memcpy(h + 10, "COWVSR", 6);
    memcpy(h + 16, "COWVISOR", 8);
    st_le32(h + 24, 1);
    memcpy(h + 28, "COWV", 4);
    st_le32(h + 32, 1);
}

/* ---- the tables ---- */

static void gas_io(uint8_t *g, uint8_t bits, uint16_t port)
{
    g[0] = GAS_SYSTEM_IO;
    g[1] = bits;
    st_le64(g + 4, port);
}

static void fill_facs(uint8_t *t)
{
    memcpy(t, "FACS", 4);
    st_le32(t + 4, FACS_SIZE);
}

/* Fixed-feature power button (flag clear), sleep button by control method. */
#define FADT_FLAGS (1u << 0 | 1u << 2 | 1u << 5 | 1u << 7 | 1u << 10 | 1u << 15)
#define FADT_BOOT_LEGACY_DEVICES_8042 0x3
#define RTC_CENTURY_INDEX 0x32
#define RESET_VALUE 0x06

static void fill_fadt(uint8_t *t, const struct acpi_config *cfg)
{
    uint8_t timer_len = cfg->pm_timer ? 4 : 0;
    uint16_t timer_port = cfg->pm_timer ? ACPI_PM_TIMER_PORT : 0;
    acpi_header(t, "FACP", FADT_SIZE, 3);
    st_le16(t + 46, ACPI_SCI_IRQ);
    /* No SMI command port: the machine is in ACPI mode from power-on
     * (SCI_EN reads as set), so the OS has nothing to switch. */
    st_le32(t + 56, ACPI_PM1_EVT_PORT);
    st_le32(t + 64, ACPI_PM1_CNT_PORT);
    st_le32(t + 76, timer_port);
    st_le32(t + 80, ACPI_GPE0_PORT);
    t[88] = ACPI_PM1_EVT_LEN;
    t[89] = ACPI_PM1_CNT_LEN;
    t[91] = timer_len;
    t[92] = ACPI_GPE0_LEN;
    st_le16(t + 96, 0x0fff);    /* no C2 */
    st_le16(t + 98, 0x0fff);    /* no C3 */
    t[108] = RTC_CENTURY_INDEX;
    st_le16(t + 109, FADT_BOOT_LEGACY_DEVICES_8042);
    st_le32(t + 112, FADT_FLAGS);
    gas_io(t + 116, 8, 0xcf9);  /* the reset control register (system_ports.c) */
    t[128] = RESET_VALUE;
    gas_io(t + 148, 8 * ACPI_PM1_EVT_LEN, ACPI_PM1_EVT_PORT);
    gas_io(t + 172, 8 * ACPI_PM1_CNT_LEN, ACPI_PM1_CNT_PORT);
    if (cfg->pm_timer) {
        gas_io(t + 208, 32, ACPI_PM_TIMER_PORT);
    }
    gas_io(t + 220, 8 * ACPI_GPE0_LEN, ACPI_GPE0_PORT);
}

static size_t madt_size(const struct acpi_config *cfg)
{
    return MADT_FIXED + (size_t)cfg->ncpus * MADT_LAPIC_SIZE + MADT_IOAPIC_SIZE + 2 * MADT_OVERRIDE_SIZE +
           MADT_LAPIC_NMI_SIZE;
}

static uint8_t *madt_override(uint8_t *p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
    p[0] = 2;
    p[1] = MADT_OVERRIDE_SIZE;
    p[3] = irq;
    st_le32(p + 4, gsi);
    st_le16(p + 8, flags);
    return p + MADT_OVERRIDE_SIZE;
}

/* As the MP table (mptable.c): one LAPIC per vCPU, the IOAPIC with the ISA
 * IRQs on the same pins except the PIT's IRQ 0 on pin 2; the SCI is level,
 * active high. */
static void fill_madt(uint8_t *t, const struct acpi_config *cfg)
{
    acpi_header(t, "APIC", (uint32_t)madt_size(cfg), 1);
    st_le32(t + 36, ACPI_LAPIC_ADDR);
    st_le32(t + 40, 1);         /* PCAT_COMPAT: there are 8259s too */
    uint8_t *p = t + MADT_FIXED;
    for (int i = 0; i < cfg->ncpus; i++, p += MADT_LAPIC_SIZE) {
        p[0] = 0;
        p[1] = MADT_LAPIC_SIZE;
        p[2] = (uint8_t)i;
        p[3] = (uint8_t)i;
        st_le32(p + 4, 1);      /* enabled */
    }
    p[0] = 1;
    p[1] = MADT_IOAPIC_SIZE;
    p[2] = cfg->ioapic_id;
    st_le32(p + 4, ACPI_IOAPIC_ADDR);
    p = madt_override(p + MADT_IOAPIC_SIZE, 0, 2, 0);
    p = madt_override(p, ACPI_SCI_IRQ, ACPI_SCI_IRQ, 0xd);
    p[0] = 4;                   /* LINT1 of every processor is NMI */
    p[1] = MADT_LAPIC_NMI_SIZE;
    p[2] = 0xff;
    p[5] = 1;
}

static void fill_rsdp(uint8_t *r)
{
    memset(r, 0, ACPI_RSDP_SIZE);
    memcpy(r, "RSD PTR ", 8);
    memcpy(r + 9, "COWVSR", 6);
    r[15] = 2;                  /* ACPI 2.0+: the XSDT */
    st_le32(r + 20, ACPI_RSDP_SIZE);
}

/* ---- composition ---- */

struct layout {
    size_t facs, dsdt, fadt, madt, rsdt, xsdt, end;
};

static size_t align8(size_t v)
{
    return (v + 7) & ~(size_t)7;
}

static struct layout lay_out(const struct acpi_config *cfg, size_t dsdt_len)
{
    struct layout l;
    l.facs = 0;                 /* first: the blob is 64-byte aligned, as the FACS must be */
    l.dsdt = FACS_SIZE;
    l.fadt = align8(l.dsdt + dsdt_len);
    l.madt = align8(l.fadt + FADT_SIZE);
    l.rsdt = align8(l.madt + madt_size(cfg));
    l.xsdt = align8(l.rsdt + ACPI_HEADER_SIZE + 4 * RSDT_ENTRIES);
    l.end = l.xsdt + ACPI_HEADER_SIZE + 8 * RSDT_ENTRIES;
    return l;
}

static int link_all(struct acpi_blob *b, const struct layout *l)
{
    int ret = 0;
    const size_t entries[RSDT_ENTRIES] = { l->fadt, l->madt };
    for (int i = 0; ret == 0 && i < RSDT_ENTRIES; i++) {
        ret = link(b, l->rsdt + ACPI_HEADER_SIZE + 4 * (size_t)i, 4, entries[i]);
        if (ret == 0) {
            ret = link(b, l->xsdt + ACPI_HEADER_SIZE + 8 * (size_t)i, 8, entries[i]);
        }
    }
    if (ret < 0 || (ret = link(b, l->fadt + 36, 4, l->facs)) < 0 || (ret = link(b, l->fadt + 40, 4, l->dsdt)) < 0 ||
        (ret = link(b, l->fadt + 140, 8, l->dsdt)) < 0) {
        return ret;
    }
    st_le32(b->rsdp + 16, (uint32_t)l->rsdt);
    st_le64(b->rsdp + 24, l->xsdt);
    if ((ret = add_pointer(b, true, 16, 4)) < 0 || (ret = add_pointer(b, true, 24, 8)) < 0) {
        return ret;
    }
    const size_t tables[] = { l->dsdt, l->fadt, l->madt, l->rsdt, l->xsdt };
    for (size_t i = 0; ret == 0 && i < sizeof(tables) / sizeof(tables[0]); i++) {
        ret = add_table_checksum(b, tables[i]);
    }
    if (ret == 0 && (ret = add_checksum(b, true, 8, 0, 20)) == 0) {
        ret = add_checksum(b, true, 32, 0, ACPI_RSDP_SIZE);   /* after the first: it covers it */
    }
    return ret;
}

int acpi_build(struct acpi_blob *b, const struct acpi_config *cfg, struct error *err)
{
    memset(b, 0, sizeof(*b));
    uint8_t *dsdt;
    size_t dsdt_len;
    int ret = acpi_dsdt_build(cfg, &dsdt, &dsdt_len, err);
    if (ret < 0) {
        return ret;
    }
    struct layout l = lay_out(cfg, dsdt_len);
    b->tables = calloc(1, l.end);
    if (!b->tables) {
        free(dsdt);
        return error_set(err, -ENOMEM, "out of memory building the ACPI tables");
    }
    b->len = l.end;
    fill_facs(b->tables + l.facs);
    memcpy(b->tables + l.dsdt, dsdt, dsdt_len);
    free(dsdt);
    fill_fadt(b->tables + l.fadt, cfg);
    fill_madt(b->tables + l.madt, cfg);
    acpi_header(b->tables + l.rsdt, "RSDT", ACPI_HEADER_SIZE + 4 * RSDT_ENTRIES, 1);
    acpi_header(b->tables + l.xsdt, "XSDT", ACPI_HEADER_SIZE + 8 * RSDT_ENTRIES, 1);
    fill_rsdp(b->rsdp);
    if ((ret = link_all(b, &l)) < 0) {
        acpi_blob_free(b);
        return error_set(err, ret, "too many ACPI table links");
    }
    return 0;
}

void acpi_blob_free(struct acpi_blob *b)
{
    free(b->tables);
    memset(b, 0, sizeof(*b));
}

static uint8_t *where(struct acpi_blob *b, bool in_rsdp)
{
    return in_rsdp ? b->rsdp : b->tables;
}

void acpi_blob_place(struct acpi_blob *b, uint64_t base)
{
    for (int i = 0; i < b->nptrs; i++) {
        uint8_t *p = where(b, b->ptrs[i].in_rsdp) + b->ptrs[i].offset;
        if (b->ptrs[i].size == 4) {
            st_le32(p, (uint32_t)(ld_le32(p) + base));
        } else {
            st_le64(p, ld_le64(p) + base);
        }
    }
    for (int i = 0; i < b->nsums; i++) {
        const struct acpi_checksum *c = &b->sums[i];
        uint8_t *d = where(b, c->in_rsdp);
        uint8_t sum = 0;
        d[c->offset] = 0;
        for (uint32_t j = 0; j < c->length; j++) {
            sum = (uint8_t)(sum + d[c->start + j]);
        }
        d[c->offset] = (uint8_t)-sum;
    }
}
