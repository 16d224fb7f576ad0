/* Starting the other vCPUs the way a PC kernel does: INIT, then two
 * start-up IPIs, broadcast to all but ourselves through the local APIC. */
#include "guest.h"
#include "io.h"

#define LAPIC 0xfee00000u
#define ICR_LOW 0x300
#define ICR_HIGH 0x310
#define ALL_BUT_SELF (3u << 18)
#define LEVEL_ASSERT (1u << 14)
#define DELIVERY_INIT (5u << 8)
#define DELIVERY_STARTUP (6u << 8)
#define TRAMPOLINE 0x8000u
#define AP_COUNTER 0x8ff0u

extern const char ap_trampoline[], ap_trampoline_end[];

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static void wait_cycles(uint64_t n)
{
    uint64_t start = rdtsc();
    while (rdtsc() - start < n) {
    }
}

static void send_ipi(uint32_t low)
{
    mmio_write32(LAPIC + ICR_HIGH, 0);
    mmio_write32(LAPIC + ICR_LOW, low);
}

int start_other_cpus(void)
{
    memcpy((void *)(uintptr_t)TRAMPOLINE, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
    volatile uint16_t *count = (volatile uint16_t *)(uintptr_t)AP_COUNTER;
    *count = 0;
    send_ipi(ALL_BUT_SELF | LEVEL_ASSERT | DELIVERY_INIT);
    wait_cycles(20000000);
    for (int i = 0; i < 2; i++) {
        send_ipi(ALL_BUT_SELF | LEVEL_ASSERT | DELIVERY_STARTUP | (TRAMPOLINE >> 12));
        wait_cycles(2000000);
    }
    /* Give them time to count themselves in (real mode may be emulated). */
    uint16_t seen = 0;
    for (int i = 0; i < 40; i++) {
        wait_cycles(50000000);
        uint16_t now = *count;
        if (now == seen && i > 4) {
            break;
        }
        seen = now;
    }
    return 1 + *count;
}
