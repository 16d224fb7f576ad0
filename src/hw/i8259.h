/* The two cascaded Intel 8259A interrupt controllers of a PC (master at
 * 0x20, slave at 0xa0 on the master's IR2) in user space, for record/replay
 * (issue 13): the VMM asks at each exit whether the pair raises INT and, when
 * the guest can take it, acknowledges it (the INTA cycle) and injects the
 * vector itself. ICW1-4 (edge or level triggered, single or cascade, auto
 * EOI), OCW1 (mask), OCW2 (non-specific, specific and rotating EOI, set
 * priority), OCW3 (IRR/ISR read, poll, special mask mode), and the PIIX's
 * ELCR (ports 0x4d0/0x4d1: edge or level per pin, as QEMU's i8259 has it;
 * pins 0-2, 8 and 13 are always edge). Not modelled: special fully nested
 * mode, buffered mode. */
#ifndef HW_I8259_H
#define HW_I8259_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "vmm/device.h"
#include "vmm/irq.h"

#define PIC_MASTER_PORT 0x20
#define PIC_SLAVE_PORT 0xa0
#define PIC_CASCADE_PIN 2
#define PIC_ELCR_PORT 0x4d0     /* the master's ELCR; the slave's at 0x4d1 */

struct pic_chip {
    uint8_t irr, isr, imr;
    uint8_t line;               /* the input pins' levels (edge detection) */
    uint8_t vector_base;        /* ICW2 */
    uint8_t init_step;          /* 0: running; 2, 3, 4: the ICW expected next */
    uint8_t lowest;             /* the pin with the lowest priority (rotation) */
    uint8_t elcr;               /* level-triggered pins (ICW1's LTIM makes them all so) */
    bool icw4_wanted, single, level_triggered, auto_eoi, rotate_on_auto_eoi;
    bool read_isr, poll, special_mask;
};

struct pic;

/* One chip's two ports as a bus range sees them. */
struct pic_port {
    struct pic *pic;
    int chip;
};

struct pic {
    pthread_mutex_t lock;       /* lines may be raised from any thread */
    struct pic_chip chip[2];    /* master, slave */
    struct pic_port port[2];    /* the bus ranges' opaque (not state) */
};

void pic_init(struct pic *p);
void pic_destroy(struct pic *p);
/* Input line irq (0-15) at level: an irq_line's set function. */
void pic_set_irq(void *opaque, unsigned irq, int level);
struct irq_line pic_irq_line(struct pic *p, unsigned irq);
/* Does the pair drive INT now? */
bool pic_has_interrupt(struct pic *p);
/* The INTA cycle: the vector of the highest-priority request, now in
 * service (the spurious IR7 vector when the request went away). */
uint8_t pic_acknowledge(struct pic *p);
/* Port handlers: opaque is &pic->port[0] (master) or [1] (slave); offset
 * 0 is the command port, 1 the data port. */
uint64_t pic_port_read(void *opaque, uint64_t offset, unsigned size);
void pic_port_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* The ELCR ports: opaque is the pic; offset 0 the master's, 1 the slave's.
 * Power-on and reset clear them; ICW1 does not. */
uint64_t pic_elcr_read(void *opaque, uint64_t offset, unsigned size);
void pic_elcr_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

/* Version 2 adds the ELCRs (a version 1 state loads with every pin edge). */
#define PIC_STATE_VERSION 2
extern const struct device_ops pic_device_ops;

#endif
