#include "hw/pci.h"

#include <errno.h>
#include <string.h>

#define PCI_CAP_MAX_END 0xf0

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

void pci_device_init(struct pci_device *d, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, const struct pci_device_ops *ops, void *opaque)
{
    memset(d, 0, sizeof(*d));
    d->ops = ops;
    d->opaque = opaque;
    d->slot = -1;
    put16(d->config + PCI_VENDOR_ID, vendor);
    put16(d->config + PCI_DEVICE_ID, device);
    d->config[PCI_REVISION] = revision;
    d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    put16(d->config + PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
    put16(d->wmask + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | 0x400);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    d->cap_end = 0x40;
}

uint8_t pci_add_capability(struct pci_device *d, uint8_t id, uint8_t len)
{
    len = (uint8_t)((len + 3) & ~3);
    if (d->cap_end + len > PCI_CAP_MAX_END) {
        return 0;
    }
    uint8_t off = d->cap_end;
    d->config[off] = id;
    d->config[off + 1] = d->config[PCI_CAPABILITY_LIST];
    d->config[PCI_CAPABILITY_LIST] = off;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->cap_end = (uint8_t)(off + len);
    return off;
}

void pci_set_bar(struct pci_device *d, int bar, uint32_t size)
{
    d->bar_size[bar] = size;
    put32(d->wmask + PCI_BAR0 + 4 * bar, ~(size - 1));
}

static uint64_t bar_address(const struct pci_device *d, int bar)
{
    if (!d->bar_size[bar] || !(d->config[PCI_COMMAND] & PCI_COMMAND_MEMORY)) {
        return 0;
    }
    uint64_t addr = get32(d->config + PCI_BAR0 + 4 * bar) & ~0xfu;
    /* A BAR being sized (all ones) or at 0 is not a window. */
    if (addr == 0 || addr + d->bar_size[bar] > 0x100000000ull || addr == (~(d->bar_size[bar] - 1) & ~0xfu)) {
        return 0;
    }
    return addr;
}

static void update_bars(struct pci_device *d)
{
    for (int bar = 0; bar < PCI_BARS; bar++) {
        uint64_t now = bar_address(d, bar);
        if (now != d->bar_mapped[bar]) {
            uint64_t old = d->bar_mapped[bar];
            d->bar_mapped[bar] = now;
            if (d->ops && d->ops->bar_remap) {
                d->ops->bar_remap(d, bar, old, now);
            }
        }
    }
}

unsigned pci_intx_gsi(int slot, int pin)
{
    return PCI_INTX_FIRST_GSI + (unsigned)(slot + pin - 1) % PCI_INTX_PINS;
}

static int intx_wanted(struct pci_device *d)
{
    int level = __atomic_load_n(&d->intx_level, __ATOMIC_SEQ_CST);
    uint16_t command = (uint16_t)(__atomic_load_n(&d->config[PCI_COMMAND], __ATOMIC_SEQ_CST) |
                                  __atomic_load_n(&d->config[PCI_COMMAND + 1], __ATOMIC_SEQ_CST) << 8);
    return level && !(command & PCI_COMMAND_INTX_DISABLE);
}

/* Only changes reach the host: it counts the devices driving a line. A
 * completion (any thread) and a config write (a vCPU) may race: whoever
 * changed the output last looks again, so a stale value computed before
 * the other's change cannot stay on the line. */
static void drive_intx(struct pci_device *d)
{
    int out;
    do {
        out = intx_wanted(d);
        if (__atomic_exchange_n(&d->intx_out, out, __ATOMIC_SEQ_CST) != out) {
            irq_line_set(&d->intx, out);
        }
    } while (intx_wanted(d) != out);
}

/* One device's pin changed: the shared line is the OR of its drivers'. */
static void host_intx_set(void *opaque, unsigned gsi, int level)
{
    struct pci_host *h = opaque;
    unsigned i = gsi - PCI_INTX_FIRST_GSI;
    pthread_mutex_lock(&h->intx_lock);
    h->intx_count[i] += level ? 1 : -1;
    irq_line_set(&h->intx_lines[i], h->intx_count[i] > 0);
    pthread_mutex_unlock(&h->intx_lock);
}

void pci_host_set_intx_lines(struct pci_host *h, const struct irq_line lines[PCI_INTX_PINS])
{
    memcpy(h->intx_lines, lines, sizeof(h->intx_lines));
}

void pci_set_intx(struct pci_device *d, int level)
{
    __atomic_store_n(&d->intx_level, level, __ATOMIC_SEQ_CST);
    if (level) {
        __atomic_fetch_or(&d->config[PCI_STATUS], PCI_STATUS_INTERRUPT, __ATOMIC_SEQ_CST);
    } else {
        __atomic_fetch_and(&d->config[PCI_STATUS], (uint8_t)~PCI_STATUS_INTERRUPT, __ATOMIC_SEQ_CST);
    }
    drive_intx(d);
}

uint32_t pci_config_read(struct pci_device *d, uint32_t offset, unsigned size)
{
    uint32_t v = 0;
    if (d->ops && d->ops->config_reading) {
        d->ops->config_reading(d, offset, size);
    }
    for (unsigned i = 0; i < size && offset + i < 256; i++) {
        v |= (uint32_t)d->config[offset + i] << (8 * i);
    }
    return v;
}

void pci_config_write(struct pci_device *d, uint32_t offset, unsigned size, uint32_t value)
{
    for (unsigned i = 0; i < size && offset + i < 256; i++) {
        uint8_t m = d->wmask[offset + i];
        uint8_t b = (uint8_t)(value >> (8 * i));
        /* Read-only bytes are left alone: the status byte's Interrupt
         * Status is set by workers atomically, and a read-modify-write
         * here could lose their update. */
        if (m) {
            d->config[offset + i] = (uint8_t)((d->config[offset + i] & ~m) | (b & m));
        }
    }
    if (d->ops && d->ops->config_written) {
        d->ops->config_written(d, offset, size);
    }
    if ((offset < PCI_BAR0 + 4 * PCI_BARS && offset + size > PCI_BAR0) ||
        (offset <= PCI_COMMAND && offset + size > PCI_COMMAND)) {
        update_bars(d);
    }
    if (offset <= PCI_COMMAND + 1 && offset + size > PCI_COMMAND + 1) {
        drive_intx(d);      /* INTx Disable may have changed */
    }
}

void pci_host_init(struct pci_host *h)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->intx_lock, NULL);
    h->mmio_start = PCI_MMIO_WINDOW_START;
    h->mmio_end = PCI_MMIO_WINDOW_END;
    /* An i440FX-like host bridge in slot 0, which firmware looks for. */
    pci_device_init(&h->bridge, 0x8086, 0x1237, 0x060000, 2, NULL, NULL);
    h->bridge.slot = 0;
    h->slots[0] = &h->bridge;
    /* The PAM registers firmware programs for BIOS shadowing: plain storage
     * here, since RAM below 1 MiB is always writable. */
    memset(h->bridge.wmask + 0x59, 0xff, 7);
}

void pci_host_destroy(struct pci_host *h)
{
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->intx_lock);
}

/* The end of a BAR of d (its first nbars) overlapping [addr, addr+size),
 * or 0. Where the BAR points counts even with memory decode off: the
 * guest may turn it on at any time. */
static uint64_t bar_overlap_end(const struct pci_device *d, int nbars, uint64_t addr, uint64_t size)
{
    for (int bar = 0; bar < nbars; bar++) {
        uint64_t start = get32(d->config + PCI_BAR0 + 4 * bar) & ~0xfu, len = d->bar_size[bar];
        if (len && start < addr + size && addr < start + len) {
            return start + len;
        }
    }
    return 0;
}

/* The lowest free address for BAR bar of d in the window, past the BARs of
 * the devices on the bus (wherever they or firmware put them) and those
 * already given to d: what an unplugged device held is free again. */
static int find_bar_space(struct pci_host *h, struct pci_device *d, int bar, uint64_t *out)
{
    uint64_t size = d->bar_size[bar];
    uint64_t addr = (h->mmio_start + size - 1) & ~(size - 1);
    while (addr + size <= h->mmio_end) {
        uint64_t end = bar_overlap_end(d, bar, addr, size);
        for (int slot = 1; slot < PCI_MAX_SLOTS && !end; slot++) {
            end = h->slots[slot] ? bar_overlap_end(h->slots[slot], PCI_BARS, addr, size) : 0;
        }
        if (!end) {
            *out = addr;
            return 0;
        }
        addr = (end + size - 1) & ~(size - 1);
    }
    return -ENOSPC;
}

int pci_host_add(struct pci_host *h, struct pci_device *d, struct error *err)
{
    pthread_mutex_lock(&h->lock);
    int slot = 1;
    while (slot < PCI_MAX_SLOTS && h->slots[slot]) {
        slot++;
    }
    if (slot == PCI_MAX_SLOTS) {
        pthread_mutex_unlock(&h->lock);
        return error_set(err, -ENOSPC, "PCI bus 0 is full (%d slots)", PCI_MAX_SLOTS);
    }
    for (int bar = 0; bar < PCI_BARS; bar++) {
        uint64_t addr;
        if (!d->bar_size[bar]) {
            continue;
        }
        if (find_bar_space(h, d, bar, &addr) < 0) {
            pthread_mutex_unlock(&h->lock);
            return error_set(err, -ENOSPC, "PCI memory window 0x%llx-0x%llx is full: no room for a %u-byte BAR",
                             (unsigned long long)h->mmio_start, (unsigned long long)h->mmio_end - 1,
                             d->bar_size[bar]);
        }
        put32(d->config + PCI_BAR0 + 4 * bar, (uint32_t)addr);
    }
    d->slot = slot;
    h->slots[slot] = d;
    int pin = d->config[PCI_INTERRUPT_PIN];
    if (pin >= 1 && pin <= PCI_INTX_PINS) {
        d->intx = (struct irq_line){ host_intx_set, h, pci_intx_gsi(slot, pin) };
    }
    d->config[PCI_COMMAND] |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    update_bars(d);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

int pci_host_free_slot(struct pci_host *h)
{
    pthread_mutex_lock(&h->lock);
    int slot = 1;
    while (slot < PCI_MAX_SLOTS && h->slots[slot]) {
        slot++;
    }
    pthread_mutex_unlock(&h->lock);
    return slot < PCI_MAX_SLOTS ? slot : -ENOSPC;
}

void pci_host_remove(struct pci_host *h, struct pci_device *d)
{
    pthread_mutex_lock(&h->lock);
    if (d->slot > 0 && d->slot < PCI_MAX_SLOTS && h->slots[d->slot] == d) {
        d->config[PCI_COMMAND] &= (uint8_t)~PCI_COMMAND_MEMORY;
        update_bars(d);
        pci_set_intx(d, 0);     /* a device that leaves stops driving the shared line */
        d->intx = (struct irq_line){ 0 };
        h->slots[d->slot] = NULL;
        d->slot = -1;
    }
    pthread_mutex_unlock(&h->lock);
}

/* Config address: enable bit 31, bus 23:16, device 15:11, function 10:8, register 7:2. */
static struct pci_device *addressed_device(struct pci_host *h)
{
    uint32_t a = h->address;
    if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0 || ((a >> 8) & 7) != 0) {
        return NULL;
    }
    return h->slots[(a >> 11) & 0x1f];
}

uint64_t pci_host_io_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_host *h = opaque;
    uint64_t v = ~0ull;
    pthread_mutex_lock(&h->lock);
    if (offset == 0 && size == 4) {
        v = h->address;
    } else if (offset >= 4) {
        struct pci_device *d = addressed_device(h);
        if (d) {
            v = pci_config_read(d, (h->address & 0xfc) + (uint32_t)(offset - 4), size);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return v;
}

void pci_host_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_host *h = opaque;
    pthread_mutex_lock(&h->lock);
    if (offset == 0 && size == 4) {
        h->address = (uint32_t)value & 0x80fffffcu;
    } else if (offset >= 4) {
        struct pci_device *d = addressed_device(h);
        if (d) {
            pci_config_write(d, (h->address & 0xfc) + (uint32_t)(offset - 4), size, (uint32_t)value);
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void pci_device_save(struct pci_device *d, struct state_buf *b)
{
    state_put_bytes(b, d->config, sizeof(d->config));
}

int pci_device_load(struct pci_device *d, struct state_buf *b, struct error *err)
{
    uint8_t config[256];
    state_get_bytes(b, config, sizeof(config));
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        /* Only what the guest could have written; identity stays ours. */
        for (int i = 0; i < 256; i++) {
            d->config[i] = (uint8_t)((d->config[i] & ~d->wmask[i]) | (config[i] & d->wmask[i]));
        }
        update_bars(d);
    }
    return ret;
}

void pci_host_save(struct pci_host *h, struct state_buf *b)
{
    pthread_mutex_lock(&h->lock);
    state_put_u32(b, h->address);
    pthread_mutex_unlock(&h->lock);
}

int pci_host_load(struct pci_host *h, struct state_buf *b, struct error *err)
{
    uint32_t address = state_get_u32(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        pthread_mutex_lock(&h->lock);
        h->address = address & 0x80fffffcu;     /* only what a guest can write */
        pthread_mutex_unlock(&h->lock);
    }
    return ret;
}

static int pci_host_save_op(void *dev, struct state_buf *b, struct error *err)
{
    pci_host_save(dev, b);
    return state_buf_error(b, err);
}

static int pci_host_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    return pci_host_load(dev, b, err);
}

static void pci_host_destroy_op(void *dev)
{
    pci_host_destroy(dev);
}

const struct device_ops pci_host_device_ops = {
    .version = PCI_HOST_STATE_VERSION,
    .save = pci_host_save_op,
    .load = pci_host_load_op,
    .destroy = pci_host_destroy_op,
};
