/* The vCPU throttle's duty cycle (vcpu_throttle_cycle), without a guest:
 * at every percentage the vCPUs sleep that share of each period and run
 * the rest, and the sleep ends before the next kick (with a fixed 10 ms
 * period it did not from 50% on, and a throttled guest stopped running).
 * The throttle itself sleeps vCPU threads: it needs KVM and runs in the
 * VM tests only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/vcpu_throttle.h"

static void test_share_of_each_period(void **state)
{
    for (int pct = 1; pct <= 99; pct++) {
        struct vcpu_throttle_cycle c = vcpu_throttle_cycle(pct);
        assert_true(c.sleep_ns > 0);
        assert_true(c.sleep_ns < c.period_ns);
        /* It runs one slice per period, whatever the percentage. */
        assert_int_equal(c.period_ns - c.sleep_ns, VCPU_THROTTLE_SLICE_NS);
        double asleep = (double)c.sleep_ns / (double)c.period_ns * 100;
        if (asleep < pct - 0.01 || asleep > pct + 0.01) {
            fail_msg("%d%%: asleep %.3f%% of the period", pct, asleep);
        }
    }
}

/* A vCPU kicked at every period start, sleeping then running until the
 * next kick, over a second: its running time is (100 - pct)% of it. */
static void test_simulated_second(void **state)
{
    const int pcts[] = { 20, 50, 70, 90, 99 };
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        struct vcpu_throttle_cycle c = vcpu_throttle_cycle(pcts[i]);
        int64_t ran = 0, t = 0, second = 1000000000ll * 10;  /* ten seconds: whole periods even at 99% */
        while (t < second) {
            int64_t end = t + c.period_ns < second ? t + c.period_ns : second;
            int64_t awake_from = t + c.sleep_ns;
            ran += end > awake_from ? end - awake_from : 0;
            t = end;
        }
        double share = (double)ran / (double)second * 100;
        if (share < 100 - pcts[i] - 0.5 || share > 100 - pcts[i] + 0.5) {
            fail_msg("%d%%: the vCPU ran %.2f%% of the time", pcts[i], share);
        }
    }
}

static void test_off_and_clamped(void **state)
{
    struct vcpu_throttle_cycle c = vcpu_throttle_cycle(0);
    assert_int_equal(c.sleep_ns, 0);
    assert_int_equal(c.period_ns, 0);
    c = vcpu_throttle_cycle(-5);
    assert_int_equal(c.sleep_ns, 0);
    struct vcpu_throttle_cycle max = vcpu_throttle_cycle(99);
    c = vcpu_throttle_cycle(150);
    assert_int_equal(c.period_ns, max.period_ns);
    assert_int_equal(c.sleep_ns, max.sleep_ns);
    assert_int_equal(max.period_ns, 100 * VCPU_THROTTLE_SLICE_NS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_share_of_each_period),
        cmocka_unit_test(test_simulated_second),
        cmocka_unit_test(test_off_and_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
