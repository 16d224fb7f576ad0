/* The interrupts the machine gives its devices on KVM's IOAPIC, on a bare
 * machine: each virtio-mmio device has its own, none of them is a PC
 * device's (PIT, i8042, COM1, RTC, the ACPI SCI) or one of GSIs 20-23,
 * which the DSDT's _PRT routes PCI INTA-D to (tests/hw/acpi_tables.sh
 * evaluates that _PRT); one more device than there are interrupts is
 * refused by name. Whether a guest gets them needs /dev/kvm. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bare_machine.h"
#include "hw/acpi_tables.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mmio_interrupts_are_their_own),
        cmocka_unit_test(test_one_mmio_device_too_many_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
