/* The replay clock's time (issue 13): on one vCPU the count of synchronous
 * exits is the only clock record and replay share, so the guest's time is a
 * function of it. Each counted exit moves time by EXIT_CLOCK_TICKS_PER_EXIT
 * ticks of the PIT's input clock; an idle vCPU (HLT) jumps to the next timer
 * event. The TSC MSRs, which KVM's MSR filter sends to the VMM, read this time
 * too (a virtual TSC at EXIT_CLOCK_TSC_HZ), as do kvmclock's MSRs (they read
 * 0 and ignore writes: the guest must not get a clock the host updates).
 * Pure functions: the vCPU loop calls them and tests drive them without KVM. */
#ifndef REPLAY_EXIT_CLOCK_H
#define REPLAY_EXIT_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define EXIT_CLOCK_HZ 1193182u                  /* the 8254's input clock */
#define EXIT_CLOCK_TICKS_PER_EXIT 12u           /* ~10 us per exit */
#define EXIT_CLOCK_TSC_HZ 1000000000ull

struct exit_clock {
    uint64_t ticks;
    uint64_t tsc_offset;        /* the guest's TSC writes (modulo 2^64) */
    uint64_t tsc_adjust;        /* IA32_TSC_ADJUST */
};

/* Is this KVM exit reason a synchronous one, at the same instruction in
 * every run (port/MMIO access, HLT, MSR access, an interrupt window the VMM
 * asked for, shutdown)? A signal's KVM_EXIT_INTR is not. */
bool exit_clock_counts(uint32_t reason);
/* One counted exit. */
void exit_clock_tick(struct exit_clock *c);
/* Idle until tick (never back). */
void exit_clock_jump(struct exit_clock *c, uint64_t tick);
/* Host nanoseconds from now to tick (for waiting while recording). */
uint64_t exit_clock_ns_until(const struct exit_clock *c, uint64_t tick);

/* The MSRs the filter sends to the VMM. */
extern const uint32_t exit_clock_msrs[];
extern const int exit_clock_nmsrs;
/* 0 with *value, or -ENOENT for an MSR not ours (the guest gets #GP). */
int exit_clock_rdmsr(const struct exit_clock *c, uint32_t index, uint64_t *value);
int exit_clock_wrmsr(struct exit_clock *c, uint32_t index, uint64_t value);

#endif
