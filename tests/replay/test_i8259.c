/* The user-space 8259A pair (record/replay's interrupt controller) against
 * the datasheet: initialization words, IRR/ISR/IMR, priorities, EOI kinds,
 * rotation, the cascade, auto EOI, poll and spurious interrupts; the ELCR
 * (edge or level per pin) and its place in the saved state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hw/i8259.h"

static struct pic pic;

/* As Linux and SeaBIOS program it: edge, cascade, ICW4; vectors 0x20 and 0x28. */
static void initialize(void)
{
    const uint8_t master[] = { 0x11, 0x20, 0x04, 0x01 }, slave[] = { 0x11, 0x28, 0x02, 0x01 };
    pic_port_write(&pic.port[0], 0, 1, master[0]);
    pic_port_write(&pic.port[1], 0, 1, slave[0]);
    for (int i = 1; i < 4; i++) {
        pic_port_write(&pic.port[0], 1, 1, master[i]);
        pic_port_write(&pic.port[1], 1, 1, slave[i]);
    }
}

static int setup(void **state)
{
    (void)state;
    pic_init(&pic);
    initialize();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pic_destroy(&pic);
    return 0;
}

static void pulse(unsigned irq)
{
    pic_set_irq(&pic, irq, 1);
    pic_set_irq(&pic, irq, 0);
}

static uint8_t master_isr(void)
{
    pic_port_write(&pic.port[0], 0, 1, 0x0b);
    return (uint8_t)pic_port_read(&pic.port[0], 0, 1);
}

static uint8_t master_irr(void)
{
    pic_port_write(&pic.port[0], 0, 1, 0x0a);
    return (uint8_t)pic_port_read(&pic.port[0], 0, 1);
}

static void eoi_master(void) { pic_port_write(&pic.port[0], 0, 1, 0x20); }

static void request_service_eoi(void **state)
{
    (void)state;
    assert_false(pic_has_interrupt(&pic));
    pulse(0);
    assert_true(pic_has_interrupt(&pic));
    assert_int_equal(master_irr(), 0x01);
    assert_int_equal(pic_acknowledge(&pic), 0x20);
    assert_int_equal(master_irr(), 0x00);
    assert_int_equal(master_isr(), 0x01);
    pulse(0);                           /* same level in service: waits */
    assert_false(pic_has_interrupt(&pic));
    eoi_master();
    assert_int_equal(master_isr(), 0x00);
    assert_true(pic_has_interrupt(&pic));
    assert_int_equal(pic_acknowledge(&pic), 0x20);
}

static void masked_request_waits_in_irr(void **state)
{
    (void)state;
    pic_port_write(&pic.port[0], 1, 1, 0xfd);  /* only IRQ 1 open */
    assert_int_equal(pic_port_read(&pic.port[0], 1, 1), 0xfd);
    pulse(3);
    assert_false(pic_has_interrupt(&pic));
    assert_int_equal(master_irr(), 0x08);
    pic_port_write(&pic.port[0], 1, 1, 0x00);
    assert_true(pic_has_interrupt(&pic));
    assert_int_equal(pic_acknowledge(&pic), 0x23);
}

static void priority_and_nesting(void **state)
{
    (void)state;
    pulse(3);
    pulse(1);
    assert_int_equal(pic_acknowledge(&pic), 0x21);  /* IR1 before IR3 */
    assert_false(pic_has_interrupt(&pic));          /* IR3 is below IR1 in service */
    pulse(0);
    assert_true(pic_has_interrupt(&pic));           /* IR0 preempts */
    assert_int_equal(pic_acknowledge(&pic), 0x20);
    assert_int_equal(master_isr(), 0x03);
    eoi_master();                                   /* non-specific: the highest, IR0 */
    assert_int_equal(master_isr(), 0x02);
    pic_port_write(&pic.port[0], 0, 1, 0x61);             /* specific EOI for IR1 */
    assert_int_equal(master_isr(), 0x00);
    assert_int_equal(pic_acknowledge(&pic), 0x23);
}

static void cascaded_slave(void **state)
{
    (void)state;
    pulse(12);
    assert_true(pic_has_interrupt(&pic));
    assert_int_equal(pic_acknowledge(&pic), 0x2c);
    assert_int_equal(master_isr(), 0x04);
    pic_port_write(&pic.port[1], 0, 1, 0x0b);
    assert_int_equal(pic_port_read(&pic.port[1], 0, 1), 0x10);
    pulse(8);                                       /* above IR12 on the slave, but the cascade is in service */
    assert_false(pic_has_interrupt(&pic));
    pic_port_write(&pic.port[1], 0, 1, 0x20);
    eoi_master();
    assert_int_equal(pic_acknowledge(&pic), 0x28);
    pic_port_write(&pic.port[1], 1, 1, 0x01);              /* the slave's mask stops IRQ 8 */
    pic_port_write(&pic.port[1], 0, 1, 0x20);
    eoi_master();
    pulse(8);
    assert_false(pic_has_interrupt(&pic));
}

static void auto_eoi_and_rotation(void **state)
{
    (void)state;
    pic_port_write(&pic.port[0], 0, 1, 0x11);
    pic_port_write(&pic.port[0], 1, 1, 0x20);
    pic_port_write(&pic.port[0], 1, 1, 0x04);
    pic_port_write(&pic.port[0], 1, 1, 0x03);             /* auto EOI */
    pulse(5);
    assert_int_equal(pic_acknowledge(&pic), 0x25);
    assert_int_equal(master_isr(), 0x00);
    /* Set priority: IR3 lowest, so IR4 comes before IR1. */
    pic_port_write(&pic.port[0], 0, 1, 0xc3);
    pulse(1);
    pulse(4);
    assert_int_equal(pic_acknowledge(&pic), 0x24);
    assert_int_equal(pic_acknowledge(&pic), 0x21);
    /* Rotate in auto EOI: the pin just served becomes the lowest. */
    pic_port_write(&pic.port[0], 0, 1, 0x80);
    pulse(6);
    assert_int_equal(pic_acknowledge(&pic), 0x26);
    pulse(5);
    pulse(7);
    assert_int_equal(pic_acknowledge(&pic), 0x27);  /* 7 follows the lowest (6) */
}

static void rotate_on_eoi(void **state)
{
    (void)state;
    pulse(0);
    assert_int_equal(pic_acknowledge(&pic), 0x20);
    pic_port_write(&pic.port[0], 0, 1, 0xa0);             /* rotate on non-specific EOI: IR0 now lowest */
    pulse(0);
    pulse(5);
    assert_int_equal(pic_acknowledge(&pic), 0x25);
}

static void level_triggered_and_spurious(void **state)
{
    (void)state;
    pic_port_write(&pic.port[0], 0, 1, 0x19);             /* level triggered */
    pic_port_write(&pic.port[0], 1, 1, 0x20);
    pic_port_write(&pic.port[0], 1, 1, 0x04);
    pic_port_write(&pic.port[0], 1, 1, 0x01);
    pic_set_irq(&pic, 4, 1);
    assert_true(pic_has_interrupt(&pic));
    pic_set_irq(&pic, 4, 0);                        /* gone before the INTA cycle */
    assert_false(pic_has_interrupt(&pic));
    assert_int_equal(pic_acknowledge(&pic), 0x27);  /* the spurious IR7 vector */
    assert_int_equal(master_isr(), 0x00);
}

static void poll_command(void **state)
{
    (void)state;
    pic_port_write(&pic.port[0], 0, 1, 0x0c);
    assert_int_equal(pic_port_read(&pic.port[0], 0, 1), 0x00);
    pulse(6);
    pic_port_write(&pic.port[0], 0, 1, 0x0c);
    assert_int_equal(pic_port_read(&pic.port[0], 0, 1), 0x86);
    assert_int_equal(master_isr(), 0x40);           /* polled = acknowledged */
    assert_false(pic_has_interrupt(&pic));
}

/* Takes the next request and ends it: its vector. */
static uint8_t serve(void)
{
    uint8_t v = pic_acknowledge(&pic);
    eoi_master();
    return v;
}

static void elcr_level_pins(void **state)
{
    (void)state;
    /* Written as a guest does; the always-edge pins (0-2, 8, 13) stay clear. */
    pic_elcr_write(&pic, 0, 1, 0xff);
    pic_elcr_write(&pic, 1, 1, 0xff);
    assert_int_equal(pic_elcr_read(&pic, 0, 1), 0xf8);
    assert_int_equal(pic_elcr_read(&pic, 1, 1), 0xde);
    pic_elcr_write(&pic, 1, 1, 0);
    pic_elcr_write(&pic, 0, 1, 0x10);                   /* IRQ 4 level, 3 edge */
    assert_int_equal(pic_elcr_read(&pic, 0, 1), 0x10);
    /* A level pin held high asks again after its EOI; an edge pin does not. */
    pic_set_irq(&pic, 3, 1);
    pic_set_irq(&pic, 4, 1);
    assert_int_equal(serve(), 0x23);
    assert_int_equal(serve(), 0x24);
    assert_int_equal(serve(), 0x24);
    pic_set_irq(&pic, 4, 0);
    assert_false(pic_has_interrupt(&pic));
    pic_set_irq(&pic, 3, 0);
    /* Lowered before its acknowledge, a level request is gone (an edge one latches). */
    pulse(4);
    pulse(3);
    assert_int_equal(serve(), 0x23);
    assert_false(pic_has_interrupt(&pic));
    /* Made level while its line is high, a pin asks at once. */
    pic_set_irq(&pic, 5, 1);
    assert_int_equal(serve(), 0x25);
    assert_false(pic_has_interrupt(&pic));
    pic_elcr_write(&pic, 0, 1, 0x30);
    assert_int_equal(serve(), 0x25);
    pic_set_irq(&pic, 5, 0);
    assert_false(pic_has_interrupt(&pic));
}

/* ICW1 resets the 8259, not the ELCR beside it (as in QEMU); a reset clears it. */
/* A 16-bit access to port 0x4d0 reaches both chips, low byte the master's. */
static void elcr_word_access(void **state)
{
    (void)state;
    pic_elcr_write(&pic, 0, 2, 0x0ca0);
    assert_int_equal(pic_elcr_read(&pic, 0, 1), 0xa0);
    assert_int_equal(pic_elcr_read(&pic, 1, 1), 0x0c);
    assert_int_equal(pic_elcr_read(&pic, 0, 2), 0x0ca0);
    pic_elcr_write(&pic, 1, 1, 0xff);
    assert_int_equal(pic_elcr_read(&pic, 0, 2), 0xdea0);
}

static void elcr_survives_icw1(void **state)
{
    (void)state;
    struct error err = { 0 };
    pic_elcr_write(&pic, 0, 1, 0x10);
    pic_elcr_write(&pic, 1, 1, 0x04);
    pic_set_irq(&pic, 4, 1);
    initialize();                                       /* ICW1-4 again */
    assert_int_equal(pic_elcr_read(&pic, 0, 1), 0x10);
    assert_int_equal(pic_elcr_read(&pic, 1, 1), 0x04);
    assert_int_equal(serve(), 0x24);                    /* the level request stayed */
    assert_int_equal(serve(), 0x24);
    pic_set_irq(&pic, 4, 0);
    assert_int_equal(pic_device_ops.reset(&pic, &err), 0);
    assert_int_equal(pic_elcr_read(&pic, 0, 1) | pic_elcr_read(&pic, 1, 1), 0);
}

static void elcr_in_state(void **state)
{
    (void)state;
    struct error err = { 0 };
    pic_elcr_write(&pic, 0, 1, 0x20);
    pic_elcr_write(&pic, 1, 1, 0x0c);
    struct state_buf s, r;
    state_buf_init(&s);
    assert_int_equal(pic_device_ops.save(&pic, &s, &err), 0);
    assert_int_equal(s.len, 18);
    struct pic other;
    pic_init(&other);
    state_buf_init_reader(&r, s.data, s.len);
    assert_int_equal(pic_device_ops.load(&other, &r, PIC_STATE_VERSION, &err), 0);
    assert_int_equal(pic_elcr_read(&other, 0, 1), 0x20);
    assert_int_equal(pic_elcr_read(&other, 1, 1), 0x0c);
    /* A version 1 state (no ELCR bytes) loads with every pin edge. */
    state_buf_init_reader(&r, s.data, 16);
    assert_int_equal(pic_device_ops.load(&other, &r, 1, &err), 0);
    assert_int_equal(pic_elcr_read(&other, 0, 1) | pic_elcr_read(&other, 1, 1), 0);
    /* An ELCR making an edge-only pin level is refused, naming it. */
    s.data[17] = 0x21;
    state_buf_init_reader(&r, s.data, s.len);
    assert_true(pic_device_ops.load(&other, &r, PIC_STATE_VERSION, &err) < 0);
    assert_non_null(strstr(err.msg, "ELCR"));
    pic_destroy(&other);
    state_buf_free(&s);
}

static void state_round_trip_and_refusal(void **state)
{
    (void)state;
    struct error err = { 0 };
    pulse(3);
    pulse(1);
    assert_int_equal(pic_acknowledge(&pic), 0x21);
    struct state_buf s, r;
    state_buf_init(&s);
    assert_int_equal(pic_device_ops.save(&pic, &s, &err), 0);
    struct pic other;
    pic_init(&other);
    state_buf_init_reader(&r, s.data, s.len);
    assert_int_equal(pic_device_ops.load(&other, &r, PIC_STATE_VERSION, &err), 0);
    pic_port_write(&other.port[0], 0, 1, 0x20);
    assert_int_equal(pic_acknowledge(&other), 0x23);
    s.data[6] = 9;                                  /* the master's lowest pin */
    state_buf_init_reader(&r, s.data, s.len);
    assert_true(pic_device_ops.load(&other, &r, PIC_STATE_VERSION, &err) < 0);
    assert_non_null(strstr(err.msg, "PIC 0"));
    assert_int_equal(pic_device_ops.reset(&other, &err), 0);
    assert_false(pic_has_interrupt(&other));
    pic_destroy(&other);
    state_buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(request_service_eoi, setup, teardown),
        cmocka_unit_test_setup_teardown(masked_request_waits_in_irr, setup, teardown),
        cmocka_unit_test_setup_teardown(priority_and_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(cascaded_slave, setup, teardown),
        cmocka_unit_test_setup_teardown(auto_eoi_and_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(rotate_on_eoi, setup, teardown),
        cmocka_unit_test_setup_teardown(level_triggered_and_spurious, setup, teardown),
        cmocka_unit_test_setup_teardown(poll_command, setup, teardown),
        cmocka_unit_test_setup_teardown(state_round_trip_and_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(elcr_level_pins, setup, teardown),
        cmocka_unit_test_setup_teardown(elcr_word_access, setup, teardown),
        cmocka_unit_test_setup_teardown(elcr_survives_icw1, setup, teardown),
        cmocka_unit_test_setup_teardown(elcr_in_state, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
