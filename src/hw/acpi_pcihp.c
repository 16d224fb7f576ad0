#include "hw/acpi_pcihp.h"

#include <errno.h>
#include <string.h>

void acpi_pcihp_init(struct acpi_pcihp *h, struct acpi_pm *pm, void (*eject)(void *, int), void *opaque)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    h->pm = pm;
    h->eject = eject;
    h->opaque = opaque;
}

void acpi_pcihp_destroy(struct acpi_pcihp *h)
{
    pthread_mutex_destroy(&h->lock);
}

/* The registers are dwords; a guest may read them in pieces. */
static uint32_t reg(struct acpi_pcihp *h, uint64_t at)
{
    switch (at) {
    case ACPI_PCIHP_UP: {
        /* Reported once: the guest's scan that reads it is the notice. */
        uint32_t up = h->up;
        h->up = 0;
        return up;
    }
    case ACPI_PCIHP_DOWN: return h->down;
    case ACPI_PCIHP_EJECT: return 0;    /* no optional features */
    case ACPI_PCIHP_REMOVABLE: return h->removable;
    case ACPI_PCIHP_BUS_SELECT: return h->bus_select;
    default: return 0;
    }
}

uint64_t acpi_pcihp_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pcihp *h = opaque;
    if (offset + size > ACPI_PCIHP_LEN) {
        return 0;
    }
    pthread_mutex_lock(&h->lock);
    uint32_t v = reg(h, offset & ~3ull) >> (8 * (offset & 3));
    pthread_mutex_unlock(&h->lock);
    return size >= 4 ? v : v & ((1u << (8 * size)) - 1);
}

void acpi_pcihp_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct acpi_pcihp *h = opaque;
    uint32_t eject = 0;
    pthread_mutex_lock(&h->lock);
    if (offset == ACPI_PCIHP_BUS_SELECT && size == 4) {
        h->bus_select = (uint32_t)value;
    } else if (offset == ACPI_PCIHP_EJECT && size == 4 && h->bus_select == 0) {
        /* Only what may go: a hot-plugged device or an ejectable cold one. */
        eject = (uint32_t)value & h->removable;
        h->down &= ~eject;
        h->up &= ~eject;
        h->removable &= ~eject;
        h->ejected |= eject;
    }
    pthread_mutex_unlock(&h->lock);
    for (int slot = 0; slot < 32; slot++) {
        if ((eject & (1u << slot)) && h->eject) {
            h->eject(h->opaque, slot);
        }
    }
}

/* A device put in a slot is not the one an earlier eject there was for:
 * the slot's eject is no longer pending (nor carried into saved state). */
void acpi_pcihp_set_removable(struct acpi_pcihp *h, int slot)
{
    pthread_mutex_lock(&h->lock);
    h->removable |= 1u << slot;
    h->ejected &= ~(1u << slot);
    pthread_mutex_unlock(&h->lock);
}

void acpi_pcihp_plug(struct acpi_pcihp *h, int slot)
{
    pthread_mutex_lock(&h->lock);
    h->up |= 1u << slot;
    h->down &= ~(1u << slot);
    h->removable |= 1u << slot;
    h->ejected &= ~(1u << slot);
    pthread_mutex_unlock(&h->lock);
    acpi_pm_gpe(h->pm, ACPI_PCIHP_GPE_BIT);
}

void acpi_pcihp_unplug_request(struct acpi_pcihp *h, int slot)
{
    pthread_mutex_lock(&h->lock);
    h->down |= 1u << slot;
    pthread_mutex_unlock(&h->lock);
    acpi_pm_gpe(h->pm, ACPI_PCIHP_GPE_BIT);
}

void acpi_pcihp_removed(struct acpi_pcihp *h, int slot)
{
    pthread_mutex_lock(&h->lock);
    h->up &= ~(1u << slot);
    h->down &= ~(1u << slot);
    h->removable &= ~(1u << slot);
    h->ejected &= ~(1u << slot);
    pthread_mutex_unlock(&h->lock);
}

/* ---- for the machine's device registry ---- */

static int acpi_pcihp_save_op(void *dev, struct state_buf *b, struct error *err)
{
    struct acpi_pcihp *h = dev;
    pthread_mutex_lock(&h->lock);
    state_put_u32(b, h->up);
    state_put_u32(b, h->down);
    state_put_u32(b, h->removable);
    state_put_u32(b, h->bus_select);
    state_put_u32(b, h->ejected);
    pthread_mutex_unlock(&h->lock);
    return state_buf_error(b, err);
}

static int acpi_pcihp_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    struct acpi_pcihp *h = dev;
    uint32_t up = state_get_u32(b), down = state_get_u32(b), removable = state_get_u32(b);
    uint32_t bus = state_get_u32(b);
    uint32_t ejected = version >= 2 ? state_get_u32(b) : 0;
    int ret = state_buf_error(b, err);
    /* An eject clears the slot's removable bit: both at once is no state
     * this device saves, and post_load would eject what may not go. */
    if (ret == 0 && (ejected & removable)) {
        ret = error_set(err, -EINVAL, "slots 0x%x both ejected and removable", ejected & removable);
    }
    if (ret == 0) {
        pthread_mutex_lock(&h->lock);
        h->up = up;
        h->down = down;
        h->removable = removable;
        h->bus_select = bus;
        h->ejected = ejected;
        pthread_mutex_unlock(&h->lock);
    }
    return ret;
}

/* The saved guest's ejects the owner had not carried out: again, now. */
static void acpi_pcihp_post_load_op(void *dev)
{
    struct acpi_pcihp *h = dev;
    pthread_mutex_lock(&h->lock);
    uint32_t ejected = h->ejected;
    pthread_mutex_unlock(&h->lock);
    for (int slot = 0; slot < 32; slot++) {
        if ((ejected & (1u << slot)) && h->eject) {
            h->eject(h->opaque, slot);
        }
    }
}

/* As QEMU's acpi_pcihp_reset: no insertion or removal is pending after a
 * reset (the guest enumerates the slots again); removable stays. */
static int acpi_pcihp_reset_op(void *dev, struct error *err)
{
    struct acpi_pcihp *h = dev;
    pthread_mutex_lock(&h->lock);
    h->up = h->down = 0;
    h->bus_select = 0;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static void acpi_pcihp_destroy_op(void *dev)
{
    acpi_pcihp_destroy(dev);
}

const struct device_ops acpi_pcihp_device_ops = {
    .version = ACPI_PCIHP_STATE_VERSION,
    .reset = acpi_pcihp_reset_op,
    .save = acpi_pcihp_save_op,
    .load = acpi_pcihp_load_op,
    .post_load = acpi_pcihp_post_load_op,
    .destroy = acpi_pcihp_destroy_op,
};
