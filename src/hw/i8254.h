/* The Intel 8254 programmable interval timer (ports 0x40-0x43) in user
 * space, for record/replay (issue 13): its time is not the host's but a
 * tick count the VMM sets (the exit clock), so every counter read and every
 * IRQ 0 edge is a function of the guest's exits. Counters 0-2 with modes
 * 0-5, binary or BCD, LSB/MSB/word access, the counter latch and the
 * read-back command (count and status). The gates are wired high (counter
 * 2's gate at port 0x61 is not modelled): modes 1 and 5 never trigger. */
#ifndef HW_I8254_H
#define HW_I8254_H

#include <stdbool.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "vmm/device.h"
#include "vmm/irq.h"

#define PIT_PORT 0x40
#define PIT_HZ 1193182u         /* the input clock: ticks per second */
#define PIT_IRQ 0

struct pit_counter {
    uint32_t count;             /* the initial count (1-65536; 10000 in BCD) */
    uint64_t load_tick;         /* when counting started */
    bool loaded;                /* an initial count was written since the mode */
    uint8_t control;            /* the control word's RW, mode and BCD bits */
    uint8_t write_lsb;          /* word access: the LSB written, MSB next */
    bool write_msb_next;
    bool read_msb_next;         /* word access of the live count */
    bool latched;               /* a latched count waits to be read */
    uint16_t latch;
    bool latch_msb_next;
    bool status_latched;
    uint8_t status;
};

struct pit {
    struct pit_counter c[3];
    uint64_t now;               /* ticks */
    struct irq_line irq0;
};

void pit_init(struct pit *p, struct irq_line irq0);
uint64_t pit_read(void *opaque, uint64_t offset, unsigned size);
void pit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* Moves time forward to tick now (never back): IRQ 0 pulses when counter
 * 0's output rose since the last call. */
void pit_set_time(struct pit *p, uint64_t now);
/* The tick at which counter 0's output rises next, or UINT64_MAX. */
uint64_t pit_next_edge(const struct pit *p);
/* The counter's output pin at the current time (tests, status). */
bool pit_output(const struct pit *p, int counter);

#define PIT_STATE_VERSION 1
extern const struct device_ops pit_device_ops;

#endif
