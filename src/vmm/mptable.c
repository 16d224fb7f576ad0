/* An Intel MultiProcessor Specification 1.4 table in the BIOS area, so that
 * kernels without ACPI find every vCPU, the IOAPIC and the ISA interrupts. */
#include <errno.h>
#include <string.h>

#include "vmm/boot.h"

#define MPTABLE_ADDR 0xf0000
#define IOAPIC_ADDR 0xfec00000u
#define LAPIC_ADDR 0xfee00000u
#define IOAPIC_PINS 24

struct mp_floating {
    char signature[4];
    uint32_t config;
    uint8_t length;     /* in 16-byte units */
    uint8_t revision;
    uint8_t checksum;
    uint8_t feature[5];
} __attribute__((packed));

struct mp_config {
    char signature[4];
    uint16_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_table;
    uint16_t oem_size;
    uint16_t entries;
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));

struct mp_cpu {
    uint8_t type, apic_id, apic_version, flags;
    uint32_t signature, features;
    uint32_t reserved[2];
} __attribute__((packed));

struct mp_bus {
    uint8_t type, id;
    char name[6];
} __attribute__((packed));

struct mp_ioapic {
    uint8_t type, id, version, flags;
    uint32_t address;
} __attribute__((packed));

struct mp_irq {
    uint8_t type, irq_type;
    uint16_t flags;
    uint8_t bus, bus_irq, apic, pin;
} __attribute__((packed));

static uint8_t checksum(const void *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum = (uint8_t)(sum + ((const uint8_t *)p)[i]);
    }
    return (uint8_t)-sum;
}

int boot_write_mptable(struct vm *vm, struct error *err)
{
    uint8_t buf[4096];
    memset(buf, 0, sizeof(buf));
    struct mp_floating *mpf = (void *)buf;
    struct mp_config *cfg = (void *)(buf + sizeof(*mpf));
    uint8_t *p = (uint8_t *)(cfg + 1);
    uint16_t entries = 0;
    uint8_t ioapic_id = (uint8_t)vm->ncpus;
    for (int i = 0; i < vm->ncpus; i++) {
        struct mp_cpu c = { 0, (uint8_t)i, 0x14, (uint8_t)(1 | (i == 0 ? 2 : 0)), 0x600, 0x201, { 0, 0 } };
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
        entries++;
    }
    struct mp_bus isa = { 1, 0, { 'I', 'S', 'A', ' ', ' ', ' ' } };
    memcpy(p, &isa, sizeof(isa));
    p += sizeof(isa);
    struct mp_ioapic io = { 2, ioapic_id, 0x11, 1, IOAPIC_ADDR };
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    entries += 2;
    for (uint8_t irq = 0; irq < 16; irq++) {
        /* The PIT's IRQ 0 arrives on pin 2, as on PCs. */
        struct mp_irq e = { 3, 0, 0, 0, irq, ioapic_id, irq == 0 ? 2 : irq };
        memcpy(p, &e, sizeof(e));
        p += sizeof(e);
        entries++;
    }
    memcpy(cfg->signature, "PCMP", 4);
    cfg->length = (uint16_t)(p - (uint8_t *)cfg);
    cfg->revision = 4;
    memcpy(cfg->oem, "COWVISOR", 8);
    memcpy(cfg->product, "KVM VM      ", 12);
    cfg->entries = entries;
    cfg->lapic = LAPIC_ADDR;
    cfg->checksum = checksum(cfg, cfg->length);
    memcpy(mpf->signature, "_MP_", 4);
    mpf->config = MPTABLE_ADDR + sizeof(*mpf);
    mpf->length = 1;
    mpf->revision = 4;
    mpf->checksum = checksum(mpf, sizeof(*mpf));
    return guest_memory_write(&vm->mem, MPTABLE_ADDR, buf, (size_t)(p - buf), err);
}
