/* Pre-copy's convergence rules (src/migration/migration_converge.c) on
 * made-up pass figures: when to stop, the expected downtime, auto-converge's
 * throttle steps as QEMU 7.2 takes them, max-bandwidth's pacing and the
 * parameters' range checks with QEMU's words. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "migration/migration.h"

#define MB 1000000ull
#define SEC 1000000000ull

static struct converge_params defaults(void)
{
    struct migration_params p;
    migration_params_default(&p);
    return p.converge;
}

/* A pass that sent 100 MB in a second: 100 MB/s. */
static struct converge_pass pass_100mbs(uint64_t dirty)
{
    return (struct converge_pass){ .sent_bytes = 100 * MB, .ns = SEC, .dirty_bytes = dirty };
}

static void test_defaults_are_qemus(void **state)
{
    struct converge_params p = defaults();
    assert_int_equal(p.downtime_limit_ms, 300);
    assert_false(p.auto_converge);
    assert_int_equal(p.throttle_initial, 20);
    assert_int_equal(p.throttle_increment, 10);
    assert_int_equal(p.throttle_max, 99);
    assert_int_equal(p.trigger_threshold, 50);
    assert_false(p.tailslow);
    assert_int_equal(converge_params_check(&p, NULL), 0);
}

/* At 100 MB/s, 300 ms send 30 MB: less stops, as much or more goes on. */
static void test_stop_when_rest_fits(void **state)
{
    struct converge_params p = defaults();
    struct converge_state st = { 0 };
    struct converge_pass pass = pass_100mbs(29 * MB);
    struct converge_decision d = converge_after_pass(&st, &p, &pass);
    assert_true(d.stop);
    assert_int_equal(st.bandwidth, 100 * MB);
    assert_int_equal(d.expected_downtime_ms, 290);
    st = (struct converge_state){ 0 };
    pass = pass_100mbs(30 * MB);
    d = converge_after_pass(&st, &p, &pass);
    assert_false(d.stop);
    assert_int_equal(d.expected_downtime_ms, 300);
}

/* downtime-limit 0: only an empty rest stops (a page would take 0 ms once
 * rounded, which stopped the old rule). */
static void test_zero_limit_needs_empty_rest(void **state)
{
    struct converge_params p = defaults();
    p.downtime_limit_ms = 0;
    struct converge_state st = { 0 };
    struct converge_pass pass = pass_100mbs(4096);
    struct converge_decision d = converge_after_pass(&st, &p, &pass);
    assert_false(d.stop);
    assert_int_equal(d.expected_downtime_ms, 0);
    pass = pass_100mbs(0);
    assert_true(converge_after_pass(&st, &p, &pass).stop);
}

/* A pass too short to measure the link keeps the last measure; without
 * one, it is all there is. */
static void test_short_pass_keeps_bandwidth(void **state)
{
    struct converge_params p = defaults();
    struct converge_state st = { 0 };
    struct converge_pass pass = pass_100mbs(50 * MB);
    converge_after_pass(&st, &p, &pass);
    pass = (struct converge_pass){ .sent_bytes = 4 * MB, .ns = 10000, .dirty_bytes = 50 * MB };
    struct converge_decision d = converge_after_pass(&st, &p, &pass);
    assert_int_equal(st.bandwidth, 100 * MB);
    assert_int_equal(d.expected_downtime_ms, 500);
    st = (struct converge_state){ 0 };
    converge_after_pass(&st, &p, &pass);
    assert_int_equal(st.bandwidth, 400000 * MB);
    /* Nothing sent, nothing measured: a dirty rest never fits. */
    st = (struct converge_state){ 0 };
    pass = (struct converge_pass){ .ns = SEC, .dirty_bytes = 4096 };
    assert_false(converge_after_pass(&st, &p, &pass).stop);
    assert_int_equal(st.bandwidth, 0);
}

/* Runs passes of 100 MB sent, each dirtying dirty MB; returns the throttle
 * after each in out. */
static void run_passes(struct converge_state *st, const struct converge_params *p, const uint64_t *dirty_mb,
                       int n, int *out)
{
    for (int i = 0; i < n; i++) {
        struct converge_pass pass = pass_100mbs(dirty_mb[i] * MB);
        struct converge_decision d = converge_after_pass(st, p, &pass);
        assert_false(d.stop);
        out[i] = d.throttle;
    }
}

static void test_auto_converge_off(void **state)
{
    struct converge_params p = defaults();
    struct converge_state st = { 0 };
    const uint64_t dirty[4] = { 90, 90, 90, 90 };
    int th[4];
    run_passes(&st, &p, dirty, 4, th);
    assert_int_equal(th[3], 0);
}

/* QEMU's steps: the second pass over the threshold since the last step
 * throttles, 20% first then +10%; a pass under it does not reset the
 * count (QEMU never does). */
static void test_auto_converge_steps(void **state)
{
    struct converge_params p = defaults();
    p.auto_converge = true;
    struct converge_state st = { 0 };
    const uint64_t dirty[6] = { 60, 40, 60, 60, 51, 60 };
    int th[6];
    run_passes(&st, &p, dirty, 6, th);
    assert_int_equal(th[0], 0);
    assert_int_equal(th[1], 0);     /* 40 MB of 100: under 50% */
    assert_int_equal(th[2], 20);    /* the second over: on */
    assert_int_equal(th[3], 20);
    assert_int_equal(th[4], 30);
    assert_int_equal(th[5], 30);
    /* Exactly at the threshold is not over it. */
    st = (struct converge_state){ 0 };
    const uint64_t at[4] = { 50, 50, 50, 50 };
    run_passes(&st, &p, at, 4, th);
    assert_int_equal(th[3], 0);
}

static void test_auto_converge_max(void **state)
{
    struct converge_params p = defaults();
    p.auto_converge = true;
    struct converge_state st = { 0 };
    uint64_t dirty[40];
    int th[40];
    for (int i = 0; i < 40; i++) {
        dirty[i] = 99;
    }
    run_passes(&st, &p, dirty, 40, th);
    assert_int_equal(th[16], 90);   /* 20 at the 2nd, +10 every 2nd after */
    assert_int_equal(th[17], 99);   /* 100 capped at max-cpu-throttle */
    assert_int_equal(th[39], 99);
    st = (struct converge_state){ 0 };
    p.throttle_max = 45;
    p.trigger_threshold = 90;       /* 99 of 100 is still over 90% */
    run_passes(&st, &p, dirty, 10, th);
    assert_int_equal(th[9], 45);
    st = (struct converge_state){ 0 };
    p.trigger_threshold = 100;
    run_passes(&st, &p, dirty, 10, th);
    assert_int_equal(th[9], 0);
}

/* cpu-throttle-tailslow: the step is what would bring the dirty rate to
 * the threshold, when less than the increment. At 20%, dirtying 55 MB of
 * 100 (threshold 50): the vCPUs' 80% should become 80 * 50/55 = 72.7,
 * truncated to 72 as QEMU does: +8, not +10. */
static void test_tailslow(void **state)
{
    struct converge_params p = defaults();
    p.auto_converge = true;
    p.tailslow = true;
    struct converge_state st = { .throttle = 20, .high_passes = 1 };
    struct converge_pass pass = pass_100mbs(55 * MB);
    assert_int_equal(converge_after_pass(&st, &p, &pass).throttle, 28);
    /* Far over the threshold: the increment bounds it. */
    st = (struct converge_state){ .throttle = 20, .high_passes = 1 };
    pass = pass_100mbs(200 * MB);
    assert_int_equal(converge_after_pass(&st, &p, &pass).throttle, 30);
}

/* A pass that ends the migration does not step the throttle. */
static void test_no_step_when_stopping(void **state)
{
    struct converge_params p = defaults();
    p.auto_converge = true;
    struct converge_state st = { .high_passes = 1 };
    struct converge_pass pass = { .sent_bytes = 1 * MB, .ns = SEC / 100, .dirty_bytes = MB - 1 };
    struct converge_decision d = converge_after_pass(&st, &p, &pass);
    assert_true(d.stop);
    assert_int_equal(d.throttle, 0);
}

static void test_pace(void **state)
{
    assert_int_equal(converge_pace_ns(1 << 30, 0, 0), 0);     /* unlimited */
    assert_int_equal(converge_pace_ns(MB, SEC / 2, MB), SEC / 2);
    assert_int_equal(converge_pace_ns(MB, 2 * SEC, MB), 0);
    /* No overflow on large counts. */
    assert_int_equal(converge_pace_ns(1ull << 40, 0, 1ull << 30), 1024 * SEC);
}

static void assert_refused(struct converge_params p, const char *msg)
{
    struct error err = { 0 };
    assert_int_equal(converge_params_check(&p, &err), -22);
    assert_string_equal(err.msg, msg);
}

/* QEMU's words (migrate_params_check), checked in its order. */
static void test_params_check(void **state)
{
    struct converge_params p = defaults();
    p.trigger_threshold = 0;
    assert_refused(p, "Parameter 'throttle_trigger_threshold' expects an integer in the range of 1 to 100");
    p.throttle_initial = 100;       /* the threshold is named first */
    assert_refused(p, "Parameter 'throttle_trigger_threshold' expects an integer in the range of 1 to 100");
    p.trigger_threshold = 100;
    assert_refused(p, "Parameter 'cpu_throttle_initial' expects an integer in the range of 1 to 99");
    p = defaults();
    p.throttle_increment = 0;
    assert_refused(p, "Parameter 'cpu_throttle_increment' expects an integer in the range of 1 to 99");
    p = defaults();
    p.downtime_limit_ms = 2000001;
    assert_refused(p, "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms");
    p.downtime_limit_ms = 2000000;
    assert_int_equal(converge_params_check(&p, NULL), 0);
    p.throttle_max = 19;            /* under cpu-throttle-initial */
    assert_refused(p, "Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99");
    p.throttle_max = 100;
    assert_refused(p, "Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99");
    p.throttle_max = 20;
    assert_int_equal(converge_params_check(&p, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_qemus),
        cmocka_unit_test(test_stop_when_rest_fits),
        cmocka_unit_test(test_zero_limit_needs_empty_rest),
        cmocka_unit_test(test_short_pass_keeps_bandwidth),
        cmocka_unit_test(test_auto_converge_off),
        cmocka_unit_test(test_auto_converge_steps),
        cmocka_unit_test(test_auto_converge_max),
        cmocka_unit_test(test_tailslow),
        cmocka_unit_test(test_no_step_when_stopping),
        cmocka_unit_test(test_pace),
        cmocka_unit_test(test_params_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
