/* Pre-copy's convergence, as QEMU 7.2 decides it, without a machine or a
 * clock: given what a dirty-log pass sent, how long it took and what the
 * guest dirtied meanwhile, whether to stop iterating (the rest fits the
 * downtime limit at the measured bandwidth), the downtime to expect, and
 * auto-converge's vCPU throttle. Also max-bandwidth's pacing. Pure
 * functions of their inputs, so each rule is tested on its own
 * (tests/migration/test_migration_converge.c). */
#ifndef MIGRATION_MIGRATION_CONVERGE_H
#define MIGRATION_MIGRATION_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

/* QEMU's limits and defaults for the parameters below. */
#define CONVERGE_MAX_DOWNTIME_MS 2000000ull     /* MAX_MIGRATE_DOWNTIME */

struct converge_params {
    uint64_t downtime_limit_ms;
    bool auto_converge;
    int throttle_initial;       /* cpu-throttle-initial: the first step, percent */
    int throttle_increment;     /* cpu-throttle-increment: each later step */
    int throttle_max;           /* max-cpu-throttle */
    int trigger_threshold;      /* throttle-trigger-threshold: dirtied/sent, percent */
    bool tailslow;              /* cpu-throttle-tailslow: smaller steps near the goal */
};

/* One pass, as measured by the sender. */
struct converge_pass {
    uint64_t sent_bytes;        /* stream bytes the pass sent */
    uint64_t ns;                /* how long it took */
    uint64_t dirty_bytes;       /* dirtied meanwhile: what is left to send */
};

/* Carried from pass to pass. */
struct converge_state {
    uint64_t bandwidth;         /* bytes per second, 0: not measured yet */
    int high_passes;            /* passes that dirtied over the threshold since the last step */
    int throttle;               /* percent, 0: off */
};

struct converge_decision {
    bool stop;                  /* the rest fits: pause the guest and finish */
    uint64_t expected_downtime_ms;
    int throttle;               /* percent the vCPUs should sleep from now on */
};

/* After a pass: updates st (bandwidth, throttle) and says what to do. */
struct converge_decision converge_after_pass(struct converge_state *st, const struct converge_params *p,
                                             const struct converge_pass *pass);

/* max-bandwidth (bytes per second, 0: unlimited): how long to wait before
 * sending more, after sent bytes in elapsed_ns. */
uint64_t converge_pace_ns(uint64_t sent_bytes, uint64_t elapsed_ns, uint64_t max_bandwidth);

/* QEMU's migrate_params_check for these parameters, its words included:
 * 0, or -EINVAL with the message. */
int converge_params_check(const struct converge_params *p, struct error *err);

#endif
