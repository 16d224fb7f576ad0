/* The duty cycle of the vCPU throttle (vcpu_throttle.c), apart so that it
 * is tested without a guest: at percent p, a kicker marks every vCPU once
 * a period and each then sleeps sleep_ns, running the rest of the period,
 * a 10 ms slice whatever p is (QEMU's cpu-throttle.c: the period grows to
 * slice / (1 - p), rather than the sleep outgrowing a fixed period). */
#ifndef VMM_VCPU_THROTTLE_H
#define VMM_VCPU_THROTTLE_H

#include <stdint.h>

#define VCPU_THROTTLE_SLICE_NS 10000000ll

struct vcpu_throttle_cycle {
    int64_t period_ns;      /* between two kicks */
    int64_t sleep_ns;       /* of it asleep: percent of the period */
};

/* percent is clamped to 0..99; 0: no throttle (both 0). */
struct vcpu_throttle_cycle vcpu_throttle_cycle(int percent);

#endif
