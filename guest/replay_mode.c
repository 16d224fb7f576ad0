/* The record/replay test mode of the test guest (kernel command line word
 * "replay"; ticks=N, default 20): what a replay must reproduce, reaching the
 * outside world through exits only. It programs the 8259 pair (vectors 0x20
 * and 0x28; only IRQ 0 and IRQ 4 open) and the 8254 at 100 Hz, enables COM1's
 * receive interrupt and halts between interrupts. At each timer tick it
 * prints the tick, the PIT's latched count and the RTC's seconds; serial
 * input (taken in its interrupt) is echoed as "input 'c'". Then it exits
 * through debug-exit with 0. A replay prints exactly the same lines.
 * Kernel mode, as interrupts need; the loop halts, so little is emulated. */
#include "guest.h"
#include "io.h"

#define PIT_HZ 1193182u
#define COM1 0x3f8

struct interrupt_frame;

static volatile unsigned ticks, inputs;
static volatile uint8_t input_buf[64];

__attribute__((interrupt)) static void timer_interrupt(struct interrupt_frame *f)
{
    (void)f;
    ticks++;
    outb(0x20, 0x20);
}

__attribute__((interrupt)) static void serial_interrupt(struct interrupt_frame *f)
{
    (void)f;
    while (inb(COM1 + 5) & 1) {
        uint8_t c = inb(COM1);
        input_buf[inputs % sizeof(input_buf)] = c;
        inputs++;
    }
    outb(0x20, 0x20);
}

/* IR7 with nothing in service: no EOI. */
__attribute__((interrupt)) static void spurious_interrupt(struct interrupt_frame *f)
{
    (void)f;
}

static unsigned number_after(const char *cmdline, const char *key, unsigned dflt)
{
    size_t n = strlen(key);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, key, n) == 0) {
            unsigned v = 0;
            for (p += n; *p >= '0' && *p <= '9'; p++) {
                v = v * 10 + (unsigned)(*p - '0');
            }
            return v;
        }
    }
    return dflt;
}

int replay_mode_wanted(const char *cmdline)
{
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, "replay", 6) == 0 && (p[6] == ' ' || p[6] == 0)) {
            return 1;
        }
    }
    return 0;
}

static void setup_pics(void)
{
    static const uint8_t master[] = { 0x11, 0x20, 0x04, 0x01 }, slave[] = { 0x11, 0x28, 0x02, 0x01 };
    outb(0x20, master[0]);
    outb(0xa0, slave[0]);
    for (int i = 1; i < 4; i++) {
        outb(0x21, master[i]);
        outb(0xa1, slave[i]);
    }
    outb(0x21, (uint8_t)~(1u << 0 | 1u << 4));
    outb(0xa1, 0xff);
}

static void setup_pit(unsigned hz)
{
    unsigned count = PIT_HZ / hz;
    outb(0x43, 0x34);       /* counter 0, LSB then MSB, rate generator */
    outb(0x40, (uint8_t)count);
    outb(0x40, (uint8_t)(count >> 8));
}

static unsigned pit_count(void)
{
    outb(0x43, 0x00);       /* latch counter 0 */
    unsigned lo = inb(0x40);
    return lo | (unsigned)inb(0x40) << 8;
}

static unsigned rtc_seconds(void)
{
    outb(0x70, 0x00);
    return inb(0x71);
}

void run_replay_mode(const char *cmdline)
{
    unsigned want = number_after(cmdline, "ticks=", 20);
    idt_set_gate(0x20, (uint64_t)(uintptr_t)timer_interrupt, 0);
    idt_set_gate(0x24, (uint64_t)(uintptr_t)serial_interrupt, 0);
    idt_set_gate(0x27, (uint64_t)(uintptr_t)spurious_interrupt, 0);
    setup_pics();
    outb(COM1 + 1, 0x01);   /* receive interrupt */
    setup_pit(100);
    printf("replay mode: %u ticks\n", want);
    unsigned seen = 0, echoed = 0;
    while (seen < want) {
        __asm__ volatile("cli");
        if (ticks == seen && inputs == echoed) {
            __asm__ volatile("sti; hlt");   /* sti's shadow: no wake-up lost before hlt */
            continue;
        }
        __asm__ volatile("sti");
        for (; echoed < inputs; echoed++) {
            printf("input '%c'\n", input_buf[echoed % sizeof(input_buf)]);
        }
        if (ticks != seen) {
            seen = ticks;
            printf("tick %u count %u rtc %x\n", seen, pit_count(), rtc_seconds());
        }
    }
    printf("replay mode done: %u ticks, %u input bytes\n", seen, inputs);
    debug_exit(0);
}
