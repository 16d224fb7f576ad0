/* The 8254 as a function of time: a counter keeps its initial count and the
 * tick counting started at; its value, its output pin and its output's
 * rising edges at any later tick follow from the mode (datasheet, 8254
 * "Mode Definitions"). Counting starts at the tick the count is written
 * (the chip starts one clock later: a guest cannot tell at this grain), and
 * a new count in modes 2 and 3 takes effect at once, not at the period's end. */
#include "hw/i8254.h"

#include <errno.h>
#include <string.h>

#define RW_LATCH 0
#define RW_LSB 1
#define RW_MSB 2
#define RW_WORD 3
#define CONTROL_PORT 3
#define STATUS_OUT 0x80
#define STATUS_NULL_COUNT 0x40

static unsigned rw_of(const struct pit_counter *c) { return (c->control >> 4) & 3; }
static bool bcd_of(const struct pit_counter *c) { return c->control & 1; }

/* Modes 6 and 7 are 2 and 3. */
static unsigned mode_of(const struct pit_counter *c)
{
    unsigned m = (c->control >> 1) & 7;
    return m >= 6 ? m - 4 : m;
}

static uint32_t modulus(const struct pit_counter *c)
{
    return bcd_of(c) ? 10000 : 65536;
}

/* Modes 2 and 3 need a count of at least 2 (1 is illegal there). */
static uint64_t period(const struct pit_counter *c)
{
    return c->count < 2 ? 2 : c->count;
}

static uint64_t elapsed(const struct pit *p, const struct pit_counter *c)
{
    return p->now - c->load_tick;
}

/* The counting element's value now (binary). */
static uint32_t counter_value(const struct pit *p, const struct pit_counter *c)
{
    if (!c->loaded) {
        return c->count % modulus(c);
    }
    uint64_t d = elapsed(p, c), n = c->count;
    switch (mode_of(c)) {
    case 0:
    case 4:
        return (uint32_t)((n + modulus(c) - d % modulus(c)) % modulus(c));
    case 2:
        return (uint32_t)(period(c) - d % period(c));
    case 3: {
        uint64_t per = period(c), high = (per + 1) / 2, pos = d % per;
        /* Decrements by two; an odd count's low half starts one lower. */
        uint64_t v = pos < high ? per - 2 * pos : per - (per & 1) - 2 * (pos - high);
        return (uint32_t)(v % modulus(c));
    }
    default:
        return (uint32_t)(n % modulus(c));     /* modes 1 and 5 wait for a gate trigger */
    }
}

/* How many times the output rose since counting started, up to now. */
static uint64_t rising_edges(const struct pit *p, const struct pit_counter *c)
{
    if (!c->loaded) {
        return 0;
    }
    uint64_t d = elapsed(p, c);
    switch (mode_of(c)) {
    case 0:
        return d >= c->count ? 1 : 0;
    case 2:
    case 3:
        return d / period(c);
    case 4:
        return d >= (uint64_t)c->count + 1 ? 1 : 0;
    default:
        return 0;
    }
}

bool pit_output(const struct pit *p, int i)
{
    const struct pit_counter *c = &p->c[i];
    unsigned mode = mode_of(c);
    if (!c->loaded) {
        return mode != 0;       /* mode 0 drives OUT low from the control word on */
    }
    uint64_t d = elapsed(p, c);
    switch (mode) {
    case 0:
        return d >= c->count;
    case 2:
        return d % period(c) != period(c) - 1;
    case 3:
        return d % period(c) < (period(c) + 1) / 2;
    case 4:
        return d != c->count;
    default:
        return true;
    }
}

uint64_t pit_next_edge(const struct pit *p)
{
    const struct pit_counter *c = &p->c[0];
    if (!c->loaded) {
        return UINT64_MAX;
    }
    uint64_t d = elapsed(p, c);
    switch (mode_of(c)) {
    case 0:
        return d < c->count ? c->load_tick + c->count : UINT64_MAX;
    case 2:
    case 3:
        return c->load_tick + (d / period(c) + 1) * period(c);
    case 4:
        return d < (uint64_t)c->count + 1 ? c->load_tick + c->count + 1 : UINT64_MAX;
    default:
        return UINT64_MAX;
    }
}

void pit_set_time(struct pit *p, uint64_t now)
{
    if (now <= p->now) {
        return;
    }
    uint64_t before = rising_edges(p, &p->c[0]);
    p->now = now;
    if (rising_edges(p, &p->c[0]) != before) {
        /* An edge: the PIC latches it; edges it missed are lost ticks, as on hardware. */
        irq_line_set(&p->irq0, 1);
        irq_line_set(&p->irq0, 0);
    }
}

static uint16_t to_bcd(uint32_t v)
{
    return (uint16_t)((v % 10) | (v / 10 % 10) << 4 | (v / 100 % 10) << 8 | (v / 1000 % 10) << 12);
}

static uint32_t from_bcd(uint32_t v)
{
    return (v & 15) + ((v >> 4) & 15) * 10 + ((v >> 8) & 15) * 100 + ((v >> 12) & 15) * 1000;
}

static uint16_t visible_value(const struct pit *p, const struct pit_counter *c)
{
    uint32_t v = counter_value(p, c);
    return bcd_of(c) ? to_bcd(v) : (uint16_t)v;
}

static void latch_count(struct pit *p, struct pit_counter *c)
{
    if (!c->latched) {          /* a second latch before the read is ignored */
        c->latch = visible_value(p, c);
        c->latched = true;
        c->latch_msb_next = false;
    }
}

static void latch_status(struct pit *p, struct pit_counter *c, int i)
{
    if (!c->status_latched) {
        c->status = (uint8_t)((pit_output(p, i) ? STATUS_OUT : 0) | (c->loaded ? 0 : STATUS_NULL_COUNT) |
                              (c->control & 0x3f));
        c->status_latched = true;
    }
}

static void read_back(struct pit *p, uint8_t v)
{
    for (int i = 0; i < 3; i++) {
        if (!(v & (2 << i))) {
            continue;
        }
        if (!(v & 0x20)) {
            latch_count(p, &p->c[i]);
        }
        if (!(v & 0x10)) {
            latch_status(p, &p->c[i], i);
        }
    }
}

static void write_control(struct pit *p, uint8_t v)
{
    unsigned sc = v >> 6;
    if (sc == 3) {
        read_back(p, v);
        return;
    }
    struct pit_counter *c = &p->c[sc];
    if (((v >> 4) & 3) == RW_LATCH) {
        latch_count(p, c);
        return;
    }
    /* A control word resets the counter's logic; its count is kept. */
    c->control = v & 0x3f;
    c->loaded = false;
    c->write_msb_next = c->read_msb_next = false;
    c->latched = c->status_latched = false;
}

static void load_count(struct pit *p, struct pit_counter *c, uint32_t raw)
{
    uint32_t n = bcd_of(c) ? from_bcd(raw) : raw;
    c->count = n == 0 ? modulus(c) : n;
    c->load_tick = p->now;
    c->loaded = true;
}

static void write_counter(struct pit *p, struct pit_counter *c, uint8_t v)
{
    switch (rw_of(c)) {
    case RW_LSB:
        load_count(p, c, v);
        break;
    case RW_MSB:
        load_count(p, c, (uint32_t)v << 8);
        break;
    default:
        if (!c->write_msb_next) {
            c->write_lsb = v;
            c->write_msb_next = true;
        } else {
            c->write_msb_next = false;
            load_count(p, c, c->write_lsb | (uint32_t)v << 8);
        }
        break;
    }
}

/* One byte of a 16-bit value as the access mode says; *msb_next toggles for
 * word access. */
static uint8_t byte_of(unsigned rw, uint16_t v, bool *msb_next)
{
    if (rw == RW_MSB || (rw == RW_WORD && *msb_next)) {
        if (rw == RW_WORD) {
            *msb_next = false;
        }
        return (uint8_t)(v >> 8);
    }
    if (rw == RW_WORD) {
        *msb_next = true;
    }
    return (uint8_t)v;
}

static uint8_t read_counter(struct pit *p, struct pit_counter *c)
{
    if (c->status_latched) {
        c->status_latched = false;
        return c->status;
    }
    if (c->latched) {
        uint8_t b = byte_of(rw_of(c), c->latch, &c->latch_msb_next);
        if (rw_of(c) != RW_WORD || !c->latch_msb_next) {
            c->latched = false;     /* the whole latched value was read */
        }
        return b;
    }
    return byte_of(rw_of(c), visible_value(p, c), &c->read_msb_next);
}

uint64_t pit_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pit *p = opaque;
    if (offset >= CONTROL_PORT || size != 1) {
        return 0xff;            /* the control word cannot be read */
    }
    return read_counter(p, &p->c[offset]);
}

void pit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pit *p = opaque;
    if (size != 1 || offset > CONTROL_PORT) {
        return;
    }
    if (offset == CONTROL_PORT) {
        write_control(p, (uint8_t)value);
    } else {
        write_counter(p, &p->c[offset], (uint8_t)value);
    }
}

/* Power-on: every counter in mode 0, binary, word access, no count. */
static void pit_power_on(struct pit *p)
{
    uint64_t now = p->now;
    struct irq_line irq0 = p->irq0;
    memset(p, 0, sizeof(*p));
    p->now = now;
    p->irq0 = irq0;
    for (int i = 0; i < 3; i++) {
        p->c[i].control = RW_WORD << 4;
        p->c[i].count = 65536;
    }
}

void pit_init(struct pit *p, struct irq_line irq0)
{
    memset(p, 0, sizeof(*p));
    p->irq0 = irq0;
    pit_power_on(p);
}

/* ---- device operations ---- */

static int pit_reset_op(void *dev, struct error *err)
{
    (void)err;
    pit_power_on(dev);
    return 0;
}

static int pit_save_op(void *dev, struct state_buf *b, struct error *err)
{
    struct pit *p = dev;
    state_put_u64(b, p->now);
    for (int i = 0; i < 3; i++) {
        const struct pit_counter *c = &p->c[i];
        state_put_u32(b, c->count);
        state_put_u64(b, c->load_tick);
        state_put_u8(b, c->control);
        state_put_u8(b, c->write_lsb);
        state_put_u16(b, c->latch);
        state_put_u8(b, c->status);
        state_put_u8(b, (uint8_t)(c->loaded | c->write_msb_next << 1 | c->read_msb_next << 2 | c->latched << 3 |
                                  c->latch_msb_next << 4 | c->status_latched << 5));
    }
    return state_buf_error(b, err);
}

static int pit_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    (void)version;
    struct pit *p = dev;
    struct pit n = { .irq0 = p->irq0 };
    n.now = state_get_u64(b);
    for (int i = 0; i < 3; i++) {
        struct pit_counter *c = &n.c[i];
        c->count = state_get_u32(b);
        c->load_tick = state_get_u64(b);
        c->control = state_get_u8(b);
        c->write_lsb = state_get_u8(b);
        c->latch = state_get_u16(b);
        c->status = state_get_u8(b);
        uint8_t flags = state_get_u8(b);
        c->loaded = flags & 1;
        c->write_msb_next = flags & 2;
        c->read_msb_next = flags & 4;
        c->latched = flags & 8;
        c->latch_msb_next = flags & 16;
        c->status_latched = flags & 32;
        if (!state_buf_error(b, NULL) && (c->count < 1 || c->count > 65536 || c->control > 0x3f ||
                                          c->load_tick > n.now || (flags & ~0x3f))) {
            return error_set(err, -EINVAL, "PIT counter %d: count %u, control 0x%x or start tick out of range", i,
                             c->count, c->control);
        }
    }
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        *p = n;
    }
    return ret;
}

const struct device_ops pit_device_ops = {
    .version = PIT_STATE_VERSION,
    .reset = pit_reset_op,
    .save = pit_save_op,
    .load = pit_load_op,
};
