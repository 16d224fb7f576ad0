/* The ACPI PM device and the PCI hotplug registers as a guest's ACPI
 * driver drives them: S5 powers off, the power button and hotplug events
 * raise the SCI only while enabled and until acknowledged, the PM timer
 * counts at 3.579545 MHz; on a bare machine the same through its port bus
 * ends in the machine's power-off request. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "hw/acpi_pcihp.h"
#include "hw/acpi_pm.h"
#include "state/state_buf.h"

struct probe {
    int level;
    int edges;
    int power_offs;
    int ejected[8];
    int nejected;
};

static void set_irq(void *opaque, unsigned gsi, int level)
{
    struct probe *p = opaque;
    assert_int_equal(gsi, 9);
    p->edges += level != p->level;
    p->level = level;
}

static void power_off(void *opaque)
{
    ((struct probe *)opaque)->power_offs++;
}

static uint64_t fake_ns, fake_step_ns;
static uint64_t fake_clock(void)
{
    uint64_t now = fake_ns;
    fake_ns += fake_step_ns;
    return now;
}

static void init(struct acpi_pm *pm, struct probe *p)
{
    memset(p, 0, sizeof(*p));
    acpi_pm_init(pm, (struct irq_line){ set_irq, p, 9 }, power_off, p, fake_clock);
}

static void test_s5_powers_off(void **state)
{
    struct acpi_pm pm;
    struct probe p;
    init(&pm, &p);
    /* SCI_EN reads set: no SMI handshake needed. */
    assert_int_equal(acpi_pm_read(&pm, 4, 2) & ACPI_PM1_CNT_SCI_EN, ACPI_PM1_CNT_SCI_EN);
    /* SLP_TYP without SLP_EN, and other sleep types, do nothing. */
    acpi_pm_write(&pm, 4, 2, 5 << 10);
    acpi_pm_write(&pm, 4, 2, ACPI_PM1_CNT_SLP_EN | 1 << 10);
    acpi_pm_write(&pm, 4, 2, ACPI_PM1_CNT_SLP_EN);
    assert_int_equal(p.power_offs, 0);
    assert_int_equal(acpi_pm_read(&pm, 4, 2) & ACPI_PM1_CNT_SLP_EN, 0);   /* SLP_EN reads 0 */
    acpi_pm_write(&pm, 4, 2, ACPI_PM1_CNT_SLP_EN | ACPI_S5_SLP_TYP << 10);
    assert_int_equal(p.power_offs, 1);
    /* Written a byte at a time, as some guests do: the high byte holds both. */
    acpi_pm_write(&pm, 5, 1, (ACPI_PM1_CNT_SLP_EN | ACPI_S5_SLP_TYP << 10) >> 8);
    assert_int_equal(p.power_offs, 2);
    acpi_pm_destroy(&pm);
}

static void test_power_button_raises_sci(void **state)
{
    struct acpi_pm pm;
    struct probe p;
    init(&pm, &p);
    acpi_pm_power_button(&pm);
    assert_int_equal(acpi_pm_read(&pm, 0, 2) & ACPI_PM1_PWRBTN_STS, ACPI_PM1_PWRBTN_STS);
    assert_int_equal(p.level, 0);           /* not enabled yet */
    acpi_pm_write(&pm, 2, 2, ACPI_PM1_PWRBTN_STS);
    assert_int_equal(acpi_pm_read(&pm, 2, 2), ACPI_PM1_PWRBTN_STS);
    assert_int_equal(p.level, 1);
    /* Writing 0 changes nothing; writing the bit clears it and the SCI. */
    acpi_pm_write(&pm, 0, 2, 0);
    assert_int_equal(p.level, 1);
    acpi_pm_write(&pm, 0, 2, ACPI_PM1_PWRBTN_STS);
    assert_int_equal(acpi_pm_read(&pm, 0, 2) & ACPI_PM1_PWRBTN_STS, 0);
    assert_int_equal(p.level, 0);
    assert_int_equal(p.edges, 2);
    /* The state survives save and load, the line follows it. */
    acpi_pm_power_button(&pm);
    struct state_buf b;
    struct error err = { 0 };
    state_buf_init(&b);
    assert_int_equal(acpi_pm_device_ops.save(&pm, &b, &err), 0);
    struct acpi_pm copy;
    struct probe q;
    init(&copy, &q);
    struct state_buf r;
    state_buf_init_reader(&r, b.data, b.len);
    assert_int_equal(acpi_pm_device_ops.load(&copy, &r, ACPI_PM_STATE_VERSION, &err), 0);
    assert_int_equal(q.level, 1);
    assert_int_equal(acpi_pm_device_ops.reset(&copy, &err), 0);
    assert_int_equal(q.level, 0);
    state_buf_free(&b);
    acpi_pm_destroy(&copy);
    acpi_pm_destroy(&pm);
}

static void test_gpe_and_timer(void **state)
{
    struct acpi_pm pm;
    struct probe p;
    init(&pm, &p);
    acpi_pm_gpe(&pm, 1);
    assert_int_equal(acpi_gpe_read(&pm, 0, 1), 2);
    assert_int_equal(p.level, 0);
    acpi_gpe_write(&pm, 2, 1, 2);           /* enable GPE 1 */
    assert_int_equal(acpi_gpe_read(&pm, 0, 4), 2u | 2u << 16);
    assert_int_equal(p.level, 1);
    acpi_gpe_write(&pm, 0, 1, 2);           /* acknowledge */
    assert_int_equal(p.level, 0);
    assert_int_equal(acpi_gpe_read(&pm, 0, 1), 0);
    /* One second is 3579545 ticks, in 24 bits. */
    fake_ns = 0;
    uint32_t t0 = (uint32_t)acpi_pm_read(&pm, 8, 4);
    fake_ns = 1000000000;
    assert_int_equal((acpi_pm_read(&pm, 8, 4) - t0) & 0xffffff, 3579545 & 0xffffff);
    fake_ns = 10ull * 1000000000;
    assert_true(acpi_pm_read(&pm, 8, 4) <= 0xffffff);
    acpi_pm_destroy(&pm);
}

/* A 32-bit read of the timer is one sample: with a clock that moves one
 * tick per look, from tick 255, a byte-wise read gave 0x1ff (the low byte
 * before the carry, the next one after it). */
static void test_timer_read_not_torn(void **state)
{
    struct acpi_pm pm;
    struct probe p;
    init(&pm, &p);
    fake_ns = 71300;                        /* tick 255; 280 ns later, tick 256 */
    fake_step_ns = 280;
    uint64_t v = acpi_pm_read(&pm, 8, 4);
    fake_step_ns = 0;
    assert_true(v == 0xff || v == 0x100);
    acpi_pm_destroy(&pm);
}

static void ejected(void *opaque, int slot)
{
    struct probe *p = opaque;
    p->ejected[p->nejected++] = slot;
}

static void test_hotplug_registers(void **state)
{
    struct acpi_pm pm;
    struct acpi_pcihp h;
    struct probe p;
    init(&pm, &p);
    acpi_pcihp_init(&h, &pm, ejected, &p);
    acpi_gpe_write(&pm, 2, 1, 1u << ACPI_PCIHP_GPE_BIT);
    acpi_pcihp_plug(&h, 5);
    assert_int_equal(p.level, 1);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_REMOVABLE, 4), 1u << 5);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_UP, 4), 1u << 5);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_UP, 4), 0);      /* reported once */
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_EJECT, 4), 0);   /* no optional features */
    /* A slot the host did not plug cannot be ejected. */
    acpi_pcihp_write(&h, ACPI_PCIHP_EJECT, 4, 1u << 6);
    assert_int_equal(p.nejected, 0);
    acpi_pcihp_unplug_request(&h, 5);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_DOWN, 4), 1u << 5);
    /* Another bus than 0 selected: ejects go nowhere. */
    acpi_pcihp_write(&h, ACPI_PCIHP_BUS_SELECT, 4, 1);
    acpi_pcihp_write(&h, ACPI_PCIHP_EJECT, 4, 1u << 5);
    assert_int_equal(p.nejected, 0);
    acpi_pcihp_write(&h, ACPI_PCIHP_BUS_SELECT, 4, 0);
    acpi_pcihp_write(&h, ACPI_PCIHP_EJECT, 4, 1u << 5 | 1u << 6);
    assert_int_equal(p.nejected, 1);
    assert_int_equal(p.ejected[0], 5);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_DOWN, 4), 0);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_REMOVABLE, 4), 0);
    /* Reads past the block and in pieces. */
    acpi_pcihp_plug(&h, 9);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_REMOVABLE + 1, 1), 1u << 1);
    assert_int_equal(acpi_pcihp_read(&h, ACPI_PCIHP_LEN, 4), 0);
    acpi_pcihp_destroy(&h);
    acpi_pm_destroy(&pm);
}

static void put_state(struct state_buf *b, uint32_t removable, uint32_t ejected)
{
    state_buf_init(b);
    uint32_t fields[] = { 0, 0, removable, 0, ejected };     /* up, down, removable, bus, ejected */
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        state_put_u32(b, fields[i]);
    }
}

/* A pending eject is carried in saved state for its slot only while the
 * ejected device is there: a device plugged into the slot afterwards is not
 * ejected by a later load. A state that has a slot both ejected and
 * removable (none this device saves) is refused, not acted on. */
static void test_hotplug_eject_state(void **state)
{
    (void)state;
    struct acpi_pm pm;
    struct acpi_pcihp h;
    struct probe p;
    struct error err = { 0 };
    struct state_buf b, in;
    init(&pm, &p);
    acpi_pcihp_init(&h, &pm, ejected, &p);
    acpi_pcihp_plug(&h, 5);
    acpi_pcihp_write(&h, ACPI_PCIHP_EJECT, 4, 1u << 5);
    assert_int_equal(p.nejected, 1);
    acpi_pcihp_plug(&h, 5);         /* the owner left the slot empty; a new device */
    state_buf_init(&b);
    assert_int_equal(acpi_pcihp_device_ops.save(&h, &b, &err), 0);
    state_buf_init_reader(&in, b.data, b.len);
    assert_int_equal(acpi_pcihp_device_ops.load(&h, &in, ACPI_PCIHP_STATE_VERSION, &err), 0);
    acpi_pcihp_device_ops.post_load(&h);
    assert_int_equal(p.nejected, 1);
    state_buf_free(&b);

    put_state(&b, 1u << 7, 1u << 7 | 1u << 3);
    state_buf_init_reader(&in, b.data, b.len);
    assert_int_equal(acpi_pcihp_device_ops.load(&h, &in, ACPI_PCIHP_STATE_VERSION, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "0x80"));
    acpi_pcihp_device_ops.post_load(&h);
    assert_int_equal(p.nejected, 1);
    state_buf_free(&b);
    acpi_pcihp_destroy(&h);
    acpi_pm_destroy(&pm);
}

/* Through the bare machine's port bus, as a guest's outw: the machine's
 * power-off request, and the power button on its port. */
static void test_bare_machine_s5(void **state)
{
    struct machine_config cfg = { .cpus = 1, .memory = 16 << 20 };
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    int code;
    uint16_t v = ACPI_PM1_CNT_SLP_EN | ACPI_S5_SLP_TYP << 10;
    assert_int_equal(vm_take_request(&m->vm, &code, &err), VM_REQ_NONE);
    assert_true(bus_write(&m->vm.pio, ACPI_PM1_CNT_PORT, &v, 2));
    assert_int_equal(vm_take_request(&m->vm, &code, &err), VM_REQ_POWER_OFF);
    machine_power_button(m);
    uint16_t sts = 0;
    assert_true(bus_read(&m->vm.pio, ACPI_PM1_EVT_PORT, &sts, 2));
    assert_int_equal(sts & ACPI_PM1_PWRBTN_STS, ACPI_PM1_PWRBTN_STS);
    /* The kernel-boot image starts with the RSDP. */
    assert_non_null(m->acpi_image);
    assert_memory_equal(m->acpi_image, "RSD PTR ", 8);
    bare_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_s5_powers_off),
        cmocka_unit_test(test_power_button_raises_sci),
        cmocka_unit_test(test_gpe_and_timer),
        cmocka_unit_test(test_timer_read_not_torn),
        cmocka_unit_test(test_hotplug_registers),
        cmocka_unit_test(test_hotplug_eject_state),
        cmocka_unit_test(test_bare_machine_s5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
