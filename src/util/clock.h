/* The host's monotonic clock, for durations (not for anything a guest
 * sees: that goes through vmm/host_input.h). */
#ifndef UTIL_CLOCK_H
#define UTIL_CLOCK_H

#include <stdint.h>

uint64_t monotonic_ns(void);

#endif
