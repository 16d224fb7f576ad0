/* The 8259A pair. Priorities are relative to the lowest-priority pin
 * (`lowest`, 7 at power-on): rotation moves it, so "level 0" is always the
 * highest priority whatever the pin. The slave's INT drives the master's
 * cascade pin as a level. */
#include "hw/i8259.h"

#include <errno.h>
#include <string.h>

#define NO_REQUEST 8

/* The pins the ELCR may make level-triggered: not the timer, keyboard,
 * cascade, RTC or FPU pins (the PIIX's, as QEMU has them). */
static const uint8_t elcr_mask[2] = { 0xf8, 0xde };

static bool pin_is_level(const struct pic_chip *c, uint8_t bit)
{
    return c->level_triggered || (c->elcr & bit);
}

/* The priority level (0 highest) of the highest-priority pin set in mask,
 * or NO_REQUEST. */
static int highest_level(const struct pic_chip *c, uint8_t mask)
{
    for (int level = 0; level < 8; level++) {
        if (mask & (1u << ((c->lowest + 1 + level) & 7))) {
            return level;
        }
    }
    return NO_REQUEST;
}

static int pin_of(const struct pic_chip *c, int level)
{
    return (c->lowest + 1 + level) & 7;
}

/* The pin this chip asks the CPU (or the master) for, or -1: the highest
 * unmasked request above everything in service (in special mask mode
 * masked in-service levels do not block). */
static int chip_request(const struct pic_chip *c)
{
    int want = highest_level(c, c->irr & ~c->imr);
    if (want == NO_REQUEST) {
        return -1;
    }
    uint8_t blocking = c->special_mask ? c->isr & ~c->imr : c->isr;
    return want < highest_level(c, blocking) ? pin_of(c, want) : -1;
}

static void chip_set_line(struct pic_chip *c, int pin, int level)
{
    uint8_t bit = (uint8_t)(1u << pin);
    if (pin_is_level(c, bit)) {
        c->irr = level ? c->irr | bit : c->irr & ~bit;
    } else if (level && !(c->line & bit)) {
        c->irr |= bit;          /* a rising edge latches until acknowledged */
    }
    c->line = level ? c->line | bit : c->line & ~bit;
}

/* Lock held: the slave's INT onto the master's cascade pin. */
static void cascade(struct pic *p)
{
    chip_set_line(&p->chip[0], PIC_CASCADE_PIN, chip_request(&p->chip[1]) >= 0);
}

void pic_set_irq(void *opaque, unsigned irq, int level)
{
    struct pic *p = opaque;
    if (irq >= 16) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    chip_set_line(&p->chip[irq >> 3], (int)(irq & 7), level);
    cascade(p);
    pthread_mutex_unlock(&p->lock);
}

struct irq_line pic_irq_line(struct pic *p, unsigned irq)
{
    return (struct irq_line){ .set = pic_set_irq, .opaque = p, .gsi = irq };
}

bool pic_has_interrupt(struct pic *p)
{
    pthread_mutex_lock(&p->lock);
    bool yes = chip_request(&p->chip[0]) >= 0;
    pthread_mutex_unlock(&p->lock);
    return yes;
}

/* Lock held: one chip's part of the INTA cycle for pin. */
static void chip_ack(struct pic_chip *c, int pin)
{
    uint8_t bit = (uint8_t)(1u << pin);
    if (!pin_is_level(c, bit)) {
        c->irr &= ~bit;     /* a level request stays while its line is high */
    }
    if (c->auto_eoi) {
        if (c->rotate_on_auto_eoi) {
            c->lowest = (uint8_t)pin;
        }
    } else {
        c->isr |= bit;
    }
}

/* Lock held: the vector for a request on chip c (IR7's when there is none:
 * the spurious interrupt). */
static uint8_t chip_vector(struct pic_chip *c)
{
    int pin = chip_request(c);
    if (pin < 0) {
        return (uint8_t)(c->vector_base | 7);
    }
    chip_ack(c, pin);
    return (uint8_t)(c->vector_base | pin);
}

uint8_t pic_acknowledge(struct pic *p)
{
    pthread_mutex_lock(&p->lock);
    struct pic_chip *m = &p->chip[0];
    uint8_t vector;
    int pin = chip_request(m);
    if (pin == PIC_CASCADE_PIN && !m->single) {
        chip_ack(m, pin);
        vector = chip_vector(&p->chip[1]);
    } else {
        vector = chip_vector(m);
    }
    cascade(p);
    pthread_mutex_unlock(&p->lock);
    return vector;
}

static void end_of_interrupt(struct pic_chip *c, int pin, bool rotate)
{
    c->isr &= (uint8_t)~(1u << pin);
    if (rotate) {
        c->lowest = (uint8_t)pin;
    }
}

/* OCW2: bits 7-5 are R, SL, EOI; bits 2-0 the level for SL. */
static void write_ocw2(struct pic_chip *c, uint8_t v)
{
    int cmd = v >> 5, pin = v & 7;
    switch (cmd) {
    case 1:             /* non-specific EOI */
    case 5: {           /* rotate on non-specific EOI */
        int level = highest_level(c, c->isr);
        if (level != NO_REQUEST) {
            end_of_interrupt(c, pin_of(c, level), cmd == 5);
        }
        break;
    }
    case 3:             /* specific EOI */
    case 7:             /* rotate on specific EOI */
        end_of_interrupt(c, pin, cmd == 7);
        break;
    case 4:             /* set rotate in automatic EOI mode */
    case 0:             /* clear it */
        c->rotate_on_auto_eoi = cmd == 4;
        break;
    case 6:             /* set priority: pin becomes the lowest */
        c->lowest = (uint8_t)pin;
        break;
    default:            /* 2: no operation */
        break;
    }
}

/* OCW3: bit 2 poll, bits 1-0 read register, bits 6-5 special mask. */
static void write_ocw3(struct pic_chip *c, uint8_t v)
{
    if (v & 0x04) {
        c->poll = true;
    }
    if ((v & 0x03) >= 2) {
        c->read_isr = v & 1;
    }
    if ((v & 0x60) >= 0x40) {
        c->special_mask = v & 0x20;
    }
}

/* ICW1: starts initialization; the edge-sense latches and the mask clear.
 * The ELCR is not the 8259's: it stays, and so do its level requests. */
static void write_icw1(struct pic_chip *c, uint8_t v)
{
    uint8_t base = c->vector_base, elcr = c->elcr, irr = c->irr & c->elcr;
    memset(c, 0, sizeof(*c));
    c->vector_base = base;
    c->elcr = elcr;
    c->irr = irr;
    c->lowest = 7;
    c->init_step = 2;
    c->icw4_wanted = v & 0x01;
    c->single = v & 0x02;
    c->level_triggered = v & 0x08;
}

static void write_data(struct pic_chip *c, uint8_t v)
{
    switch (c->init_step) {
    case 2:
        c->vector_base = v & 0xf8;
        c->init_step = c->single ? (c->icw4_wanted ? 4 : 0) : 3;
        break;
    case 3:             /* ICW3: the cascade wiring is fixed here */
        c->init_step = c->icw4_wanted ? 4 : 0;
        break;
    case 4:
        c->auto_eoi = v & 0x02;
        c->init_step = 0;
        break;
    default:
        c->imr = v;     /* OCW1 */
        break;
    }
}

static void chip_write(struct pic *p, int i, uint64_t offset, uint64_t value)
{
    struct pic_chip *c = &p->chip[i];
    uint8_t v = (uint8_t)value;
    pthread_mutex_lock(&p->lock);
    if (offset == 1) {
        write_data(c, v);
    } else if (v & 0x10) {
        write_icw1(c, v);
    } else if (v & 0x08) {
        write_ocw3(c, v);
    } else {
        write_ocw2(c, v);
    }
    cascade(p);
    pthread_mutex_unlock(&p->lock);
}

static uint64_t chip_read(struct pic *p, int i, uint64_t offset)
{
    struct pic_chip *c = &p->chip[i];
    uint8_t v;
    pthread_mutex_lock(&p->lock);
    if (offset == 1) {
        v = c->imr;
    } else if (c->poll) {
        /* The poll command: an INTA of this chip alone, read as bit 7 + level. */
        c->poll = false;
        int pin = chip_request(c);
        v = pin < 0 ? 0 : (uint8_t)(0x80 | pin);
        if (pin >= 0) {
            chip_ack(c, pin);
        }
        cascade(p);
    } else {
        v = c->read_isr ? c->isr : c->irr;
    }
    pthread_mutex_unlock(&p->lock);
    return v;
}

uint64_t pic_port_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)size;
    struct pic_port *port = opaque;
    return chip_read(port->pic, port->chip, offset);
}

void pic_port_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)size;
    struct pic_port *port = opaque;
    chip_write(port->pic, port->chip, offset, value);
}

/* Ports 0x4d0 (master) and 0x4d1 (slave): a 16-bit access covers both, as
 * in QEMU, where they are two 1-byte regions. */
uint64_t pic_elcr_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pic *p = opaque;
    uint64_t v = 0;
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < size && offset + i < 2; i++) {
        v |= (uint64_t)p->chip[offset + i].elcr << (8 * i);
    }
    pthread_mutex_unlock(&p->lock);
    return v;
}

/* A pin made level-triggered requests while its line is high (the input's
 * level, not an edge, counts from now on); one made edge keeps its request. */
static void elcr_set(struct pic_chip *c, unsigned index, uint8_t value)
{
    c->elcr = value & elcr_mask[index];
    if (!c->level_triggered) {
        c->irr = (uint8_t)((c->irr & ~c->elcr) | (c->line & c->elcr));
    }
}

void pic_elcr_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pic *p = opaque;
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < size && offset + i < 2; i++) {
        elcr_set(&p->chip[offset + i], (unsigned)(offset + i), (uint8_t)(value >> (8 * i)));
    }
    cascade(p);
    pthread_mutex_unlock(&p->lock);
}

/* Power-on: nothing initialized, everything unmasked, no requests. */
static void power_on(struct pic *p)
{
    for (int i = 0; i < 2; i++) {
        memset(&p->chip[i], 0, sizeof(p->chip[i]));
        p->chip[i].lowest = 7;
    }
}

void pic_init(struct pic *p)
{
    pthread_mutex_init(&p->lock, NULL);
    p->port[0] = (struct pic_port){ p, 0 };
    p->port[1] = (struct pic_port){ p, 1 };
    power_on(p);
}

void pic_destroy(struct pic *p)
{
    pthread_mutex_destroy(&p->lock);
}

/* ---- device operations ---- */

static int pic_reset_op(void *dev, struct error *err)
{
    (void)err;
    struct pic *p = dev;
    pthread_mutex_lock(&p->lock);
    power_on(p);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static uint8_t flags_of(const struct pic_chip *c)
{
    return (uint8_t)(c->icw4_wanted | c->single << 1 | c->level_triggered << 2 | c->auto_eoi << 3 |
                     c->rotate_on_auto_eoi << 4 | c->read_isr << 5 | c->poll << 6 | c->special_mask << 7);
}

static int pic_save_op(void *dev, struct state_buf *b, struct error *err)
{
    struct pic *p = dev;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < 2; i++) {
        const struct pic_chip *c = &p->chip[i];
        uint8_t bytes[8] = { c->irr, c->isr, c->imr, c->line, c->vector_base, c->init_step, c->lowest, flags_of(c) };
        state_put_bytes(b, bytes, sizeof(bytes));
    }
    uint8_t elcr[2] = { p->chip[0].elcr, p->chip[1].elcr };     /* version 2 */
    state_put_bytes(b, elcr, sizeof(elcr));
    pthread_mutex_unlock(&p->lock);
    return state_buf_error(b, err);
}

/* Version 2's ELCRs (version 1: none, every pin edge). */
static int load_elcr(struct pic_chip chips[2], struct state_buf *b, uint32_t version, struct error *err)
{
    uint8_t elcr[2] = { 0, 0 };
    if (version >= 2) {
        state_get_bytes(b, elcr, sizeof(elcr));
    }
    for (int i = 0; i < 2 && state_buf_error(b, NULL) == 0; i++) {
        if (elcr[i] & ~elcr_mask[i]) {
            return error_set(err, -EINVAL, "PIC %d: ELCR 0x%02x makes edge-only pins level-triggered", i, elcr[i]);
        }
        chips[i].elcr = elcr[i];
    }
    return state_buf_error(b, err);
}

static int pic_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    struct pic *p = dev;
    struct pic_chip chips[2];
    memset(chips, 0, sizeof(chips));
    for (int i = 0; i < 2; i++) {
        uint8_t v[8];
        state_get_bytes(b, v, sizeof(v));
        if (state_buf_error(b, NULL) == 0 && (v[5] == 1 || v[5] > 4 || v[6] > 7 || (v[4] & 7))) {
            return error_set(err, -EINVAL, "PIC %d: initialization step %u, lowest pin %u or vector base 0x%x out "
                             "of range", i, v[5], v[6], v[4]);
        }
        struct pic_chip *c = &chips[i];
        c->irr = v[0], c->isr = v[1], c->imr = v[2], c->line = v[3];
        c->vector_base = v[4], c->init_step = v[5], c->lowest = v[6];
        c->icw4_wanted = v[7] & 1, c->single = v[7] & 2, c->level_triggered = v[7] & 4, c->auto_eoi = v[7] & 8;
        c->rotate_on_auto_eoi = v[7] & 16, c->read_isr = v[7] & 32, c->poll = v[7] & 64, c->special_mask = v[7] & 128;
    }
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        ret = load_elcr(chips, b, version, err);
    }
    if (ret == 0) {
        pthread_mutex_lock(&p->lock);
        memcpy(p->chip, chips, sizeof(chips));
        pthread_mutex_unlock(&p->lock);
    }
    return ret;
}

const struct device_ops pic_device_ops = {
    .version = PIC_STATE_VERSION,
    .reset = pic_reset_op,
    .save = pic_save_op,
    .load = pic_load_op,
};
