/* The user-space 8254 (record/replay's timer) against the datasheet's
 * counter modes, access modes, latch and read-back commands, on a clock the
 * test moves: no KVM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hw/i8254.h"

struct edges {
    int level;
    int rising;
};

static void count_edges(void *opaque, unsigned gsi, int level)
{
    struct edges *e = opaque;
    (void)gsi;
    if (level && !e->level) {
        e->rising++;
    }
    e->level = level;
}

static struct edges edges;

static void setup_pit(struct pit *p)
{
    memset(&edges, 0, sizeof(edges));
    pit_init(p, (struct irq_line){ .set = count_edges, .opaque = &edges });
}

static void control(struct pit *p, uint8_t v) { pit_write(p, 3, 1, v); }
static void count_word(struct pit *p, int i, uint16_t v)
{
    pit_write(p, (uint64_t)i, 1, v & 0xff);
    pit_write(p, (uint64_t)i, 1, v >> 8);
}
static uint8_t rd(struct pit *p, int i) { return (uint8_t)pit_read(p, (uint64_t)i, 1); }
/* Counter latch command, then the latched word LSB first. */
static uint16_t latched(struct pit *p, int i)
{
    control(p, (uint8_t)(i << 6));
    uint8_t lo = rd(p, i);
    return (uint16_t)(lo | rd(p, i) << 8);
}

static void mode0_interrupt_on_terminal_count(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    pit_set_time(&p, 1000);
    control(&p, 0x30);                  /* counter 0, LSB then MSB, mode 0, binary */
    assert_false(pit_output(&p, 0));    /* the control word drives OUT low */
    count_word(&p, 0, 100);
    pit_set_time(&p, 1050);
    assert_int_equal(latched(&p, 0), 50);
    assert_false(pit_output(&p, 0));
    assert_int_equal(edges.rising, 0);
    assert_int_equal(pit_next_edge(&p), 1100);
    pit_set_time(&p, 1100);
    assert_true(pit_output(&p, 0));
    assert_int_equal(edges.rising, 1);
    pit_set_time(&p, 1200);             /* OUT stays high, the count wraps: one interrupt only */
    assert_int_equal(edges.rising, 1);
    assert_int_equal(latched(&p, 0), (uint16_t)(100 - 200));
    assert_int_equal(pit_next_edge(&p), UINT64_MAX);
}

static void mode2_rate_generator(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x34);                  /* mode 2 */
    assert_true(pit_output(&p, 0));
    count_word(&p, 0, 1000);
    pit_set_time(&p, 999);              /* count 1: OUT low for one clock */
    assert_int_equal(latched(&p, 0), 1);
    assert_false(pit_output(&p, 0));
    assert_int_equal(edges.rising, 0);
    pit_set_time(&p, 1000);             /* reload: OUT rises */
    assert_true(pit_output(&p, 0));
    assert_int_equal(edges.rising, 1);
    assert_int_equal(latched(&p, 0), 1000);
    pit_set_time(&p, 1500);
    assert_int_equal(latched(&p, 0), 500);
    pit_set_time(&p, 3500);             /* two periods at once: the PIC sees one edge (lost tick) */
    assert_int_equal(edges.rising, 2);
    assert_int_equal(pit_next_edge(&p), 4000);
}

static void mode3_square_wave(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x36);                  /* mode 3 */
    count_word(&p, 0, 100);
    pit_set_time(&p, 10);               /* decrements by two */
    assert_true(pit_output(&p, 0));
    assert_int_equal(latched(&p, 0), 80);
    pit_set_time(&p, 49);
    assert_true(pit_output(&p, 0));
    pit_set_time(&p, 50);               /* second half: OUT low, counting down from the count again */
    assert_false(pit_output(&p, 0));
    assert_int_equal(latched(&p, 0), 100);
    pit_set_time(&p, 60);
    assert_int_equal(latched(&p, 0), 80);
    assert_int_equal(edges.rising, 0);
    pit_set_time(&p, 100);
    assert_true(pit_output(&p, 0));
    assert_int_equal(edges.rising, 1);
    /* An odd count: high (N+1)/2 clocks, low (N-1)/2. */
    control(&p, 0x36);
    count_word(&p, 0, 5);
    pit_set_time(&p, 102);
    assert_true(pit_output(&p, 0));
    pit_set_time(&p, 103);
    assert_false(pit_output(&p, 0));
    pit_set_time(&p, 105);
    assert_true(pit_output(&p, 0));
}

static void count_zero_is_65536(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x34);
    count_word(&p, 0, 0);
    assert_int_equal(pit_next_edge(&p), 65536);
    pit_set_time(&p, 1);
    assert_int_equal(latched(&p, 0), 65535);
}

static void byte_access_modes(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x50);                  /* counter 1, LSB only, mode 0 */
    pit_write(&p, 1, 1, 0x20);
    pit_set_time(&p, 2);
    assert_int_equal(rd(&p, 1), 0x1e);  /* live read, LSB only: the same byte every time */
    assert_int_equal(rd(&p, 1), 0x1e);
    control(&p, 0xa0);                  /* counter 2, MSB only, mode 0 */
    pit_write(&p, 2, 1, 0x01);          /* count 0x100 */
    pit_set_time(&p, 3);
    assert_int_equal(rd(&p, 2), 0x00);  /* 0x00ff: its MSB */
    /* Word access alternates LSB, MSB on live reads too. */
    control(&p, 0x30);
    count_word(&p, 0, 0x1234);
    assert_int_equal(rd(&p, 0), 0x34);
    assert_int_equal(rd(&p, 0), 0x12);
}

static void latch_holds_until_read(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x34);
    count_word(&p, 0, 1000);
    pit_set_time(&p, 100);
    control(&p, 0x00);                  /* latch at 900 */
    pit_set_time(&p, 200);
    control(&p, 0x00);                  /* ignored: the first latch is unread */
    assert_int_equal(rd(&p, 0), 900 & 0xff);
    pit_set_time(&p, 300);
    assert_int_equal(rd(&p, 0), 900 >> 8);
    assert_int_equal(latched(&p, 0), 700);  /* the latch is free again */
}

static void read_back_status_and_count(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x34);
    control(&p, 0xe2);                  /* read-back: status of counter 0 only */
    assert_int_equal(rd(&p, 0), 0x80 | 0x40 | 0x34);   /* OUT high, null count, the control bits */
    count_word(&p, 0, 1000);
    pit_set_time(&p, 999);
    control(&p, 0xc2);                  /* status and count of counter 0: status first */
    pit_set_time(&p, 1100);
    assert_int_equal(rd(&p, 0), 0x34);  /* OUT low at count 1, count loaded */
    assert_int_equal(rd(&p, 0), 1);
    assert_int_equal(rd(&p, 0), 0);
    control(&p, 0xdc);                  /* counters 1 and 2, count only: counter 0 is live again */
    assert_int_equal(latched(&p, 0), 900);
    assert_int_equal(pit_read(&p, 3, 1), 0xff);     /* the control port reads nothing */
}

static void bcd_counting(void **state)
{
    (void)state;
    struct pit p;
    setup_pit(&p);
    control(&p, 0x31);                  /* mode 0, BCD */
    count_word(&p, 0, 0x0100);          /* 100 decimal */
    pit_set_time(&p, 1);
    assert_int_equal(latched(&p, 0), 0x0099);
    assert_int_equal(pit_next_edge(&p), 100);
}

static void state_round_trip_and_refusal(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct pit a, b;
    setup_pit(&a);
    control(&a, 0x34);
    count_word(&a, 0, 500);
    pit_set_time(&a, 1234);
    control(&a, 0x00);                  /* a latch in progress travels too */
    (void)rd(&a, 0);
    struct state_buf s;
    state_buf_init(&s);
    assert_int_equal(pit_device_ops.save(&a, &s, &err), 0);
    setup_pit(&b);
    struct state_buf r;
    state_buf_init_reader(&r, s.data, s.len);
    assert_int_equal(pit_device_ops.load(&b, &r, PIT_STATE_VERSION, &err), 0);
    assert_int_equal(rd(&b, 0), rd(&a, 0));
    assert_int_equal(pit_next_edge(&b), pit_next_edge(&a));
    assert_int_equal(latched(&b, 0), latched(&a, 0));
    /* A count of 0 cannot be in the state: refused, the PIT unchanged. */
    memset(s.data + 8, 0, 4);
    state_buf_init_reader(&r, s.data, s.len);
    assert_true(pit_device_ops.load(&b, &r, PIT_STATE_VERSION, &err) < 0);
    assert_non_null(strstr(err.msg, "PIT counter 0"));
    state_buf_init_reader(&r, s.data, s.len - 1);
    assert_true(pit_device_ops.load(&b, &r, PIT_STATE_VERSION, &err) < 0);
    assert_int_equal(pit_next_edge(&b), pit_next_edge(&a));
    state_buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mode0_interrupt_on_terminal_count),
        cmocka_unit_test(mode2_rate_generator),
        cmocka_unit_test(mode3_square_wave),
        cmocka_unit_test(count_zero_is_65536),
        cmocka_unit_test(byte_access_modes),
        cmocka_unit_test(latch_holds_until_read),
        cmocka_unit_test(read_back_status_and_count),
        cmocka_unit_test(bcd_counting),
        cmocka_unit_test(state_round_trip_and_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
