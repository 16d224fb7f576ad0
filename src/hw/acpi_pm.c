#include "hw/acpi_pm.h"

#include <string.h>

#define PM_TIMER_HZ 3579545ull
#define PM1_STS_WRITABLE (ACPI_PM1_TMR_STS | ACPI_PM1_PWRBTN_STS | ACPI_PM1_WAK_STS)
#define PM1_EN_WRITABLE (ACPI_PM1_TMR_STS | ACPI_PM1_PWRBTN_STS)
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_WRITABLE (0x7u << PM1_CNT_SLP_TYP_SHIFT)

void acpi_pm_init(struct acpi_pm *pm, struct irq_line sci, void (*power_off)(void *), void *opaque,
                  uint64_t (*clock_ns)(void))
{
    memset(pm, 0, sizeof(*pm));
    pthread_mutex_init(&pm->lock, NULL);
    pm->sci = sci;
    pm->power_off = power_off;
    pm->opaque = opaque;
    pm->clock_ns = clock_ns;
    /* No SMI port to switch modes: in ACPI mode from power-on. */
    pm->pm1_cnt = ACPI_PM1_CNT_SCI_EN;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
    pthread_mutex_destroy(&pm->lock);
}

/* The SCI is the OR of the enabled status bits; lock held. */
static void update_sci(struct acpi_pm *pm)
{
    bool level = (pm->pm1_sts & pm->pm1_en) || (pm->gpe_sts & pm->gpe_en);
    if (level != pm->sci_level) {
        pm->sci_level = level;
        irq_line_set(&pm->sci, level);
    }
}

static uint32_t timer(struct acpi_pm *pm)
{
    if (!pm->clock_ns) {
        return 0;
    }
    unsigned __int128 ticks = (unsigned __int128)pm->clock_ns() * PM_TIMER_HZ / 1000000000u;
    return (uint32_t)ticks & 0xffffff;  /* 24 bits, as the FADT says (TMR_VAL_EXT clear) */
}

/* The block as 12 bytes: PM1_STS, PM1_EN, PM1_CNT, reserved, PM_TMR.
 * tmr is sampled once per access: a byte-wise sample would tear a 32-bit
 * read across a carry (0xff then 0x100 read as 0x1ff), and Linux's
 * acpi_pm clocksource would see time jump and go back. */
static uint8_t block_byte(const struct acpi_pm *pm, uint64_t offset, uint32_t tmr)
{
    switch (offset) {
    case 0: case 1: return (uint8_t)(pm->pm1_sts >> (8 * offset));
    case 2: case 3: return (uint8_t)(pm->pm1_en >> (8 * (offset - 2)));
    case 4: case 5: return (uint8_t)(pm->pm1_cnt >> (8 * (offset - 4)));
    case 8: case 9: case 10: case 11: return (uint8_t)(tmr >> (8 * (offset - 8)));
    default: return 0;
    }
}

uint64_t acpi_pm_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    uint64_t v = 0;
    pthread_mutex_lock(&pm->lock);
    uint32_t tmr = offset + size > 8 ? timer(pm) : 0;
    for (unsigned i = 0; i < size && offset + i < ACPI_PM_BLOCK_LEN; i++) {
        v |= (uint64_t)block_byte(pm, offset + i, tmr) << (8 * i);
    }
    pthread_mutex_unlock(&pm->lock);
    return v;
}

/* A register of 2 bytes written whole or a byte at a time. */
static uint16_t merge16(uint16_t old, uint64_t offset, unsigned size, uint64_t value)
{
    if (size >= 2 && offset == 0) {
        return (uint16_t)value;
    }
    unsigned shift = 8 * (unsigned)offset;
    return (uint16_t)((old & ~(0xffu << shift)) | (((uint16_t)value & 0xff) << shift));
}

/* Each byte written lands in its own register. */
static bool write_pm1_cnt(struct acpi_pm *pm, uint64_t offset, unsigned size, uint64_t value)
{
    uint16_t v = merge16(pm->pm1_cnt, offset, size, value);
    pm->pm1_cnt = (uint16_t)(ACPI_PM1_CNT_SCI_EN | (v & PM1_CNT_WRITABLE));
    return (v & ACPI_PM1_CNT_SLP_EN) && ((v >> PM1_CNT_SLP_TYP_SHIFT) & 7) == ACPI_S5_SLP_TYP;
}

void acpi_pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct acpi_pm *pm = opaque;
    bool power_off = false;
    pthread_mutex_lock(&pm->lock);
    if (offset < 2) {
        /* Write 1 to clear. */
        uint16_t clear = merge16(0, offset, size, value);
        pm->pm1_sts &= (uint16_t)~(clear & PM1_STS_WRITABLE);
    } else if (offset < 4) {
        pm->pm1_en = merge16(pm->pm1_en, offset - 2, size, value) & PM1_EN_WRITABLE;
    } else if (offset < 6) {
        power_off = write_pm1_cnt(pm, offset - 4, size, value);
    }
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
    if (power_off && pm->power_off) {
        pm->power_off(pm->opaque);
    }
}

uint64_t acpi_gpe_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    uint64_t v = 0;
    pthread_mutex_lock(&pm->lock);
    uint32_t regs = (uint32_t)pm->gpe_sts | (uint32_t)pm->gpe_en << 16;
    for (unsigned i = 0; i < size && offset + i < ACPI_GPE0_LEN; i++) {
        v |= (uint64_t)((regs >> (8 * (offset + i))) & 0xff) << (8 * i);
    }
    pthread_mutex_unlock(&pm->lock);
    return v;
}

void acpi_gpe_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct acpi_pm *pm = opaque;
    pthread_mutex_lock(&pm->lock);
    for (unsigned i = 0; i < size && offset + i < ACPI_GPE0_LEN; i++) {
        uint64_t at = offset + i;
        uint16_t b = (uint16_t)((value >> (8 * i)) & 0xff) << (8 * (at & 1));
        if (at < 2) {
            pm->gpe_sts &= (uint16_t)~b;
        } else {
            pm->gpe_en = (uint16_t)((pm->gpe_en & ~(0xffu << (8 * (at & 1)))) | b);
        }
    }
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
    pthread_mutex_lock(&pm->lock);
    pm->pm1_sts |= ACPI_PM1_PWRBTN_STS;
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_gpe(struct acpi_pm *pm, unsigned bit)
{
    pthread_mutex_lock(&pm->lock);
    pm->gpe_sts |= (uint16_t)(1u << (bit & 15));
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

/* ---- for the machine's device registry ---- */

static int acpi_pm_reset_op(void *dev, struct error *err)
{
    struct acpi_pm *pm = dev;
    pthread_mutex_lock(&pm->lock);
    pm->pm1_sts = pm->pm1_en = pm->gpe_sts = pm->gpe_en = 0;
    pm->pm1_cnt = ACPI_PM1_CNT_SCI_EN;
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
    return 0;
}

static int acpi_pm_save_op(void *dev, struct state_buf *b, struct error *err)
{
    struct acpi_pm *pm = dev;
    pthread_mutex_lock(&pm->lock);
    state_put_u16(b, pm->pm1_sts);
    state_put_u16(b, pm->pm1_en);
    state_put_u16(b, pm->pm1_cnt);
    state_put_u16(b, pm->gpe_sts);
    state_put_u16(b, pm->gpe_en);
    pthread_mutex_unlock(&pm->lock);
    return state_buf_error(b, err);
}

static int acpi_pm_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    struct acpi_pm *pm = dev;
    uint16_t sts = state_get_u16(b), en = state_get_u16(b), cnt = state_get_u16(b);
    uint16_t gsts = state_get_u16(b), gen = state_get_u16(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        /* Only what the guest or the host could have set. */
        pthread_mutex_lock(&pm->lock);
        pm->pm1_sts = sts & PM1_STS_WRITABLE;
        pm->pm1_en = en & PM1_EN_WRITABLE;
        pm->pm1_cnt = (uint16_t)(ACPI_PM1_CNT_SCI_EN | (cnt & PM1_CNT_WRITABLE));
        pm->gpe_sts = gsts;
        pm->gpe_en = gen;
        pm->sci_level = !((pm->pm1_sts & pm->pm1_en) || (pm->gpe_sts & pm->gpe_en));
        update_sci(pm);         /* the line as the state says */
        pthread_mutex_unlock(&pm->lock);
    }
    return ret;
}

static void acpi_pm_destroy_op(void *dev)
{
    acpi_pm_destroy(dev);
}

const struct device_ops acpi_pm_device_ops = {
    .version = ACPI_PM_STATE_VERSION,
    .reset = acpi_pm_reset_op,
    .save = acpi_pm_save_op,
    .load = acpi_pm_load_op,
    .destroy = acpi_pm_destroy_op,
};
