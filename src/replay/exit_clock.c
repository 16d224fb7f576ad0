#include "replay/exit_clock.h"

#include <errno.h>
#include <linux/kvm.h>

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_ADJUST 0x3b
/* kvmclock, old and new numbers, steal time, async page faults. */
#define MSR_KVM_WALL_CLOCK 0x11
#define MSR_KVM_SYSTEM_TIME 0x12
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_ASYNC_PF_EN 0x4b564d02
#define MSR_KVM_STEAL_TIME 0x4b564d03

const uint32_t exit_clock_msrs[] = {
    MSR_IA32_TSC, MSR_IA32_TSC_ADJUST, MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME,
    MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_ASYNC_PF_EN, MSR_KVM_STEAL_TIME,
};
const int exit_clock_nmsrs = sizeof(exit_clock_msrs) / sizeof(exit_clock_msrs[0]);

bool exit_clock_counts(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_IO:
    case KVM_EXIT_MMIO:
    case KVM_EXIT_HLT:
    case KVM_EXIT_X86_RDMSR:
    case KVM_EXIT_X86_WRMSR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_SHUTDOWN:
    case KVM_EXIT_SYSTEM_EVENT:
        return true;
    default:
        return false;
    }
}

void exit_clock_tick(struct exit_clock *c)
{
    c->ticks += EXIT_CLOCK_TICKS_PER_EXIT;
}

void exit_clock_jump(struct exit_clock *c, uint64_t tick)
{
    if (tick > c->ticks) {
        c->ticks = tick;
    }
}

uint64_t exit_clock_ns_until(const struct exit_clock *c, uint64_t tick)
{
    if (tick <= c->ticks) {
        return 0;
    }
    return (uint64_t)((unsigned __int128)(tick - c->ticks) * 1000000000u / EXIT_CLOCK_HZ);
}

static uint64_t tsc_of(const struct exit_clock *c)
{
    return (uint64_t)((unsigned __int128)c->ticks * EXIT_CLOCK_TSC_HZ / EXIT_CLOCK_HZ);
}

int exit_clock_rdmsr(const struct exit_clock *c, uint32_t index, uint64_t *value)
{
    switch (index) {
    case MSR_IA32_TSC:
        *value = tsc_of(c) + c->tsc_offset;
        return 0;
    case MSR_IA32_TSC_ADJUST:
        *value = c->tsc_adjust;
        return 0;
    case MSR_KVM_WALL_CLOCK:
    case MSR_KVM_SYSTEM_TIME:
    case MSR_KVM_WALL_CLOCK_NEW:
    case MSR_KVM_SYSTEM_TIME_NEW:
    case MSR_KVM_ASYNC_PF_EN:
    case MSR_KVM_STEAL_TIME:
        *value = 0;
        return 0;
    default:
        return -ENOENT;
    }
}

int exit_clock_wrmsr(struct exit_clock *c, uint32_t index, uint64_t value)
{
    switch (index) {
    case MSR_IA32_TSC:
        c->tsc_offset = value - tsc_of(c);
        return 0;
    case MSR_IA32_TSC_ADJUST:
        /* The SDM: writing the adjustment moves the TSC by the difference. */
        c->tsc_offset += value - c->tsc_adjust;
        c->tsc_adjust = value;
        return 0;
    default: {
        uint64_t ignored;
        return exit_clock_rdmsr(c, index, &ignored);    /* kvmclock: accepted, not enabled */
    }
    }
}
