/* Pre-copy's convergence rules (see migration_converge.h), after QEMU
 * 7.2's migration_iteration_run (stop when what is pending is below
 * bandwidth x downtime-limit), migration_trigger_throttle and
 * mig_throttle_guest_down (auto-converge). */
#include "migration/migration_converge.h"

#include <errno.h>

#define NS_PER_S 1000000000.0
/* A pass shorter than this measures the socket buffer, not the link: it
 * keeps the bandwidth measured before, if there is one. */
#define MIN_MEASURE_NS 1000000ull

static void measure(struct converge_state *st, const struct converge_pass *pass)
{
    if (!pass->ns || !pass->sent_bytes || (pass->ns < MIN_MEASURE_NS && st->bandwidth)) {
        return;
    }
    double bw = (double)pass->sent_bytes * NS_PER_S / (double)pass->ns;
    st->bandwidth = bw < 1 ? 1 : (uint64_t)bw;
}

/* How far the throttle goes up after a second pass over the threshold.
 * Tailslow steps by what would bring the dirty rate down to the
 * threshold, if that is less than the increment. */
static int next_throttle(const struct converge_state *st, const struct converge_params *p, uint64_t dirty,
                         uint64_t threshold)
{
    if (st->throttle == 0) {
        return p->throttle_initial;
    }
    int inc = p->throttle_increment;
    if (p->tailslow) {
        int cpu_now = 100 - st->throttle;
        int cpu_ideal = (int)(cpu_now * ((double)threshold / (double)dirty));
        inc = cpu_now - cpu_ideal < inc ? cpu_now - cpu_ideal : inc;
    }
    return st->throttle + inc < p->throttle_max ? st->throttle + inc : p->throttle_max;
}

/* QEMU's rule: each pass the guest dirtied more than threshold% of what
 * it sent counts (it outruns the link); the second one since the last
 * step throttles the vCPUs (harder). Passes below do not reset the count,
 * as in QEMU. */
static void auto_converge(struct converge_state *st, const struct converge_params *p,
                          const struct converge_pass *pass)
{
    uint64_t threshold = (uint64_t)((double)pass->sent_bytes * p->trigger_threshold / 100);
    if (!p->auto_converge || pass->dirty_bytes <= threshold || ++st->high_passes < 2) {
        return;
    }
    st->high_passes = 0;
    st->throttle = next_throttle(st, p, pass->dirty_bytes, threshold);
}

struct converge_decision converge_after_pass(struct converge_state *st, const struct converge_params *p,
                                             const struct converge_pass *pass)
{
    measure(st, pass);
    struct converge_decision d = { 0 };
    if (st->bandwidth) {
        double ms = (double)pass->dirty_bytes * 1000 / (double)st->bandwidth;
        d.expected_downtime_ms = ms > (double)UINT64_MAX ? UINT64_MAX : (uint64_t)ms;
        double fits_bytes = (double)st->bandwidth * (double)p->downtime_limit_ms / 1000;
        d.stop = pass->dirty_bytes == 0 || (double)pass->dirty_bytes < fits_bytes;
    } else {
        d.stop = pass->dirty_bytes == 0;    /* nothing measured: only an empty rest fits */
    }
    if (!d.stop) {
        auto_converge(st, p, pass);
    }
    d.throttle = st->throttle;
    return d;
}

uint64_t converge_pace_ns(uint64_t sent_bytes, uint64_t elapsed_ns, uint64_t max_bandwidth)
{
    if (!max_bandwidth) {
        return 0;
    }
    double due = (double)sent_bytes * NS_PER_S / (double)max_bandwidth;
    return due > (double)elapsed_ns ? (uint64_t)(due - (double)elapsed_ns) : 0;
}

static int out_of_range(struct error *err, const char *name, const char *range)
{
    return error_set(err, -EINVAL, "Parameter '%s' expects %s", name, range);
}

int converge_params_check(const struct converge_params *p, struct error *err)
{
    /* QEMU's order, so the same first fault is named. */
    if (p->trigger_threshold < 1 || p->trigger_threshold > 100) {
        return out_of_range(err, "throttle_trigger_threshold", "an integer in the range of 1 to 100");
    }
    if (p->throttle_initial < 1 || p->throttle_initial > 99) {
        return out_of_range(err, "cpu_throttle_initial", "an integer in the range of 1 to 99");
    }
    if (p->throttle_increment < 1 || p->throttle_increment > 99) {
        return out_of_range(err, "cpu_throttle_increment", "an integer in the range of 1 to 99");
    }
    if (p->downtime_limit_ms > CONVERGE_MAX_DOWNTIME_MS) {
        /* QEMU prints its macro as written */
        return out_of_range(err, "downtime_limit", "an integer in the range of 0 to (2000 * 1000) ms");
    }
    if (p->throttle_max < p->throttle_initial || p->throttle_max > 99) {
        return out_of_range(err, "max_cpu_throttle", "an integer in the range of cpu_throttle_initial to 99");
    }
    return 0;
}
