/* The interrupts the machine gives its devices on KVM's IOAPIC, on a bare
 * machine: each virtio-mmio device has its own, none of them is a PC
 * device's (PIT, i8042, COM1, RTC, the ACPI SCI) or one of GSIs 20-23,
 * which the DSDT's _PRT routes PCI INTA-D to (tests/hw/acpi_tables.sh
 * evaluates that _PRT); one more device than there are interrupts is
 * refused by name. virtio-pci's INTA (a driver without MSI-X) drives the
 * GSI that _PRT names for its slot, rises and falls with its ISR, honours
 * INTx Disable, and shares its line with the devices 4 slots apart.
 * Whether a guest gets them needs /dev/kvm. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bare_machine.h"
#include "hw/acpi_tables.h"
#include "virtio/virtio_pci.h"

static const unsigned pc_device_irqs[] = { 0, 1, 2, 4, 8, ACPI_SCI_IRQ, 12 };

static void test_mmio_interrupts_are_their_own(void **state)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = 16 << 20 };
    struct machine *m = bare_machine(&cfg);
    uint32_t seen = 0;
    assert_true(machine_mmio_max(m) >= 8);
    for (int n = 0; n < machine_mmio_max(m); n++) {
        unsigned irq = machine_mmio_irq(m, n);
        assert_true(irq < 24);
        assert_false(irq >= 20 && irq <= 23);       /* PCI's INTx */
        for (size_t k = 0; k < sizeof(pc_device_irqs) / sizeof(pc_device_irqs[0]); k++) {
            assert_int_not_equal(irq, pc_device_irqs[k]);
        }
        assert_false(seen & (1u << irq));
        seen |= 1u << irq;
    }
    /* The first four keep GSIs 16-19, as before. */
    for (int n = 0; n < 4; n++) {
        assert_int_equal(machine_mmio_irq(m, n), 16 + n);
    }
    bare_destroy(m);
}

static void test_one_mmio_device_too_many_is_refused(void **state)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = 16 << 20, .nrng = 1,
                                               .rng = { TRANSPORT_MMIO } };
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    m->nmmio = machine_mmio_max(m);     /* as if that many were there */
    assert_int_equal(machine_add_virtio(m, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "virtio-mmio devices (one interrupt each)"));
    m->nmmio = 1;
    bare_destroy(m);
}

/* ---- legacy INTx of virtio-pci (a guest driver without MSI-X) ---- */

static int intx_level[PCI_INTX_PINS];

static void record_intx(void *opaque, unsigned gsi, int level)
{
    intx_level[gsi - PCI_INTX_FIRST_GSI] = level;
}

/* A bare machine with n virtio-rng-pci devices whose INTx lines are recorded. */
static struct machine *intx_machine(const struct machine_config *cfg)
{
    struct machine *m = bare_machine(cfg);
    struct error err = { 0 };
    struct irq_line lines[PCI_INTX_PINS];
    for (unsigned i = 0; i < PCI_INTX_PINS; i++) {
        lines[i] = (struct irq_line){ record_intx, NULL, PCI_INTX_FIRST_GSI + i };
        intx_level[i] = 0;
    }
    pci_host_set_intx_lines(&m->pci, lines);
    assert_int_equal(machine_add_virtio(m, &err), 0);
    return m;
}

static struct virtio_pci *pci_device(struct machine *m, int n)
{
    for (int i = 0; i < m->nvirtio; i++) {
        if (m->virtio[i].pci && n-- == 0) {
            m->virtio[i].dev->status |= VIRTIO_STATUS_DRIVER_OK;
            return m->virtio[i].pci;
        }
    }
    fail_msg("no virtio-pci device %d", n);
    return NULL;
}

/* The GSI of a device's INTA: the one the DSDT's _PRT names for its slot. */
static int *line_of(struct virtio_pci *p)
{
    assert_int_equal(p->pci.config[PCI_INTERRUPT_PIN], 1);
    unsigned gsi = PCI_INTX_FIRST_GSI + (unsigned)p->pci.slot % PCI_INTX_PINS;
    assert_int_equal(p->pci.intx.gsi, gsi);
    return &intx_level[gsi - PCI_INTX_FIRST_GSI];
}

/* One virtio-rng on PCI, its driver without MSI-X, with a config change
 * raised: its INTx line is up. */
static struct machine *rng_with_config_change(struct virtio_pci **out)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = 16 << 20, .nrng = 1, .rng = { TRANSPORT_PCI } };
    struct machine *m = intx_machine(&cfg);
    struct virtio_pci *p = pci_device(m, 0);
    virtio_device_config_changed(p->dev);
    assert_int_equal(*line_of(p), 1);
    *out = p;
    return m;
}

static void test_intx_rises_and_falls_with_the_isr(void **state)
{
    struct virtio_pci *p;
    struct machine *m = rng_with_config_change(&p);
    int *line = line_of(p);
    assert_true(p->pci.config[PCI_STATUS] & PCI_STATUS_INTERRUPT);
    assert_int_equal(virtio_pci_bar_read(p, VIRTIO_PCI_ISR, 1), 2);    /* config change */
    assert_int_equal(*line, 0);
    assert_false(p->pci.config[PCI_STATUS] & PCI_STATUS_INTERRUPT);
    /* INTx Disable holds the line low; the status still shows the request. */
    pci_config_write(&p->pci, PCI_COMMAND, 2, pci_config_read(&p->pci, PCI_COMMAND, 2) | PCI_COMMAND_INTX_DISABLE);
    virtio_device_config_changed(p->dev);
    assert_int_equal(*line, 0);
    assert_true(p->pci.config[PCI_STATUS] & PCI_STATUS_INTERRUPT);
    pci_config_write(&p->pci, PCI_COMMAND, 2, pci_config_read(&p->pci, PCI_COMMAND, 2) & ~PCI_COMMAND_INTX_DISABLE);
    assert_int_equal(*line, 1);
    /* A device reset drops the request. */
    virtio_pci_reset(p);
    assert_int_equal(*line, 0);
    bare_destroy(m);
}

/* Slots 4 apart share a line: it stays high until both have been served. */
static void test_shared_line_is_the_or_of_its_devices(void **state)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = 16 << 20, .nrng = 4,
                                               .rng = { TRANSPORT_PCI, TRANSPORT_PCI, TRANSPORT_PCI, TRANSPORT_PCI },
                                               .nvconsole = 1, .vconsole = { TRANSPORT_PCI } };
    struct machine *m = intx_machine(&cfg);
    struct virtio_pci *a = pci_device(m, 0), *b = pci_device(m, 4);
    assert_int_equal(b->pci.slot, a->pci.slot + PCI_INTX_PINS);
    int *line = line_of(a);
    assert_ptr_equal(line, line_of(b));
    virtio_device_config_changed(a->dev);
    virtio_device_config_changed(b->dev);
    virtio_pci_bar_read(a, VIRTIO_PCI_ISR, 1);
    assert_int_equal(*line, 1);
    virtio_pci_bar_read(b, VIRTIO_PCI_ISR, 1);
    assert_int_equal(*line, 0);
    /* A device leaving its slot stops driving the line. */
    virtio_device_config_changed(b->dev);
    pci_host_remove(&m->pci, &b->pci);
    assert_int_equal(*line, 0);
    bare_destroy(m);
}

/* The driver switches to MSI-X with an INTx request pending (the
 * ISR not read) lowers the line, as QEMU's msix_write_config does. Before,
 * the shared line stayed high with nobody left to read the ISR. Found by review. */
static void test_msix_enable_lowers_intx(void **state)
{
    struct virtio_pci *p;
    struct machine *m = rng_with_config_change(&p);
    int *line = line_of(p);
    pci_config_write(&p->pci, p->msix_cap + 2u, 2, 0x8000);     /* MSI-X Enable */
    assert_int_equal(*line, 0);
    bare_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mmio_interrupts_are_their_own),
        cmocka_unit_test(test_one_mmio_device_too_many_is_refused),
        cmocka_unit_test(test_intx_rises_and_falls_with_the_isr),
        cmocka_unit_test(test_shared_line_is_the_or_of_its_devices),
        cmocka_unit_test(test_msix_enable_lowers_intx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
