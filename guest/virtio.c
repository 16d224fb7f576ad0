#include "virtio.h"

#include "io.h"

#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define F_VERSION_1_HI (1u << 0)        /* bit 32 */
#define F_EVENT_IDX (1u << 29)

/* One page per queue: descriptors, then the avail ring, then the used ring. */
static uint8_t queue_pages[16][4096] __attribute__((aligned(4096)));
static int queue_pages_used;

/* --- virtio-mmio --- */
enum { M_MAGIC = 0, M_VERSION = 4, M_DEVICE_ID = 8, M_DF = 0x10, M_DFSEL = 0x14, M_GF = 0x20, M_GFSEL = 0x24,
       M_QSEL = 0x30, M_QMAX = 0x34, M_QNUM = 0x38, M_QREADY = 0x44, M_QNOTIFY = 0x50, M_ISR = 0x60,
       M_IACK = 0x64, M_STATUS = 0x70, M_QDESC = 0x80, M_QDRIVER = 0x90, M_QDEVICE = 0xa0, M_CONFIG = 0x100 };

static uint32_t parse_hex(const char **pp)
{
    const char *p = *pp;
    uint32_t v = 0;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        p += 2;
    }
    for (;; p++) {
        char c = *p;
        uint32_t digit;
        if (c >= '0' && c <= '9') digit = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') digit = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') digit = (uint32_t)(c - 'A' + 10);
        else break;
        v = v * 16 + digit;
    }
    *pp = p;
    return v;
}

/* QEMU's microvm puts its virtio-mmio slots here (and only names them on
 * the command line of Linux kernels it boots). */
#define MICROVM_MMIO_BASE 0xfeb00000u
#define MICROVM_MMIO_SLOTS 24
#define MICROVM_MMIO_STRIDE 0x200

static int probe_mmio(uintptr_t base, struct gvdev *d)
{
    if (mmio_read32(base + M_MAGIC) != 0x74726976u || mmio_read32(base + M_VERSION) != 2) {
        return 0;
    }
    uint32_t id = mmio_read32(base + M_DEVICE_ID);
    if (id == 0) {
        return 0;   /* an empty slot */
    }
    *d = (struct gvdev){ .transport = GV_MMIO, .device_id = id, .base = base };
    return 1;
}

/* Reads "virtio_mmio.device=<size>@<addr>:<irq>" entries (Linux's syntax,
 * which both cowvisor and QEMU microvm put on the command line). */
int virtio_find_mmio(const char *cmdline, struct gvdev *out, int max)
{
    static const char key[] = "virtio_mmio.device=";
    int n = 0;
    for (const char *p = cmdline; *p && n < max; p++) {
        if (strncmp(p, key, sizeof(key) - 1) != 0) {
            continue;
        }
        p += sizeof(key) - 1;
        while (*p && *p != '@') {
            p++;
        }
        if (*p != '@') {
            break;
        }
        p++;
        n += probe_mmio(parse_hex(&p), &out[n]);
    }
    if (n == 0 && strncmp(cmdline, "microvm", 7) == 0) {
        for (int i = 0; i < MICROVM_MMIO_SLOTS && n < max; i++) {
            n += probe_mmio(MICROVM_MMIO_BASE + (uintptr_t)i * MICROVM_MMIO_STRIDE, &out[n]);
        }
    }
    return n;
}

/* --- virtio-pci --- */
static uint32_t pci_read32(int slot, int off)
{
    outl(0xcf8, 0x80000000u | ((uint32_t)slot << 11) | (uint32_t)(off & 0xfc));
    return inl(0xcfc);
}

static void pci_write32(int slot, int off, uint32_t v)
{
    outl(0xcf8, 0x80000000u | ((uint32_t)slot << 11) | (uint32_t)(off & 0xfc));
    outl(0xcfc, v);
}

static uint8_t pci_read8(int slot, int off)
{
    return (uint8_t)(pci_read32(slot, off) >> (8 * (off & 3)));
}

/* BARs firmware left unassigned get addresses from here. */
static uint32_t next_bar = 0xe8000000u;

static uint32_t assign_bar(int slot, int bar)
{
    int off = 0x10 + 4 * bar;
    uint32_t v = pci_read32(slot, off);
    if (v & 1) {
        return 0;   /* I/O BAR: not used by modern virtio */
    }
    int is64 = (v & 6) == 4;
    /* Unassigned, or placed above 4 GiB where this 32-bit guest cannot reach. */
    if ((v & ~0xfu) == 0 || (is64 && pci_read32(slot, off + 4) != 0)) {
        pci_write32(slot, 4, pci_read32(slot, 4) & ~2u);   /* decoding off while moving */
        pci_write32(slot, off, 0xffffffffu);
        uint32_t size = ~(pci_read32(slot, off) & ~0xfu) + 1;
        next_bar = (next_bar + size - 1) & ~(size - 1);
        pci_write32(slot, off, next_bar);
        if (is64) {
            pci_write32(slot, off + 4, 0);
        }
        next_bar += size;
    }
    return pci_read32(slot, off) & ~0xfu;
}

static int pci_probe(int slot, struct gvdev *d)
{
    uint32_t id = pci_read32(slot, 0);
    if ((id & 0xffff) != 0x1af4 || (id >> 16) < 0x1040 || (id >> 16) > 0x107f) {
        return 0;
    }
    *d = (struct gvdev){ .transport = GV_PCI, .device_id = (id >> 16) - 0x1040 };
    uint32_t bars[6] = { 0 };
    for (int cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
        if (pci_read8(slot, cap) != 0x09) {
            continue;
        }
        uint8_t type = pci_read8(slot, cap + 3), bar = pci_read8(slot, cap + 4);
        if (bar > 5) {
            continue;
        }
        if (!bars[bar]) {
            bars[bar] = assign_bar(slot, bar);
        }
        uintptr_t at = bars[bar] + pci_read32(slot, cap + 8);
        switch (type) {
        case 1: d->common = at; break;
        case 2: d->notify = at; d->notify_mult = pci_read32(slot, cap + 16); break;
        case 3: d->isr = at; break;
        case 4: d->device = at; break;
        default: break;
        }
    }
    /* Memory decoding and bus mastering on. */
    pci_write32(slot, 4, (pci_read32(slot, 4) & 0xffff0000u) | 0x6);
    return d->common && d->notify && d->isr;
}

int virtio_find_pci(struct gvdev *out, int max)
{
    int n = 0;
    for (int slot = 0; slot < 32 && n < max; slot++) {
        if (pci_probe(slot, &out[n])) {
            n++;
        }
    }
    return n;
}

/* Common configuration offsets. */
enum { C_DFSEL = 0, C_DF = 4, C_GFSEL = 8, C_GF = 12, C_MSIX = 16, C_NUMQ = 18, C_STATUS = 20, C_QSEL = 22,
       C_QSIZE = 24, C_QMSIX = 26, C_QENABLE = 28, C_QNOFF = 30, C_QDESC = 32, C_QDRIVER = 40, C_QDEVICE = 48 };

uint8_t virtio_status(struct gvdev *d)
{
    return d->transport == GV_MMIO ? (uint8_t)mmio_read32(d->base + M_STATUS) : mmio_read8(d->common + C_STATUS);
}

static void set_status(struct gvdev *d, uint8_t s)
{
    if (d->transport == GV_MMIO) {
        mmio_write32(d->base + M_STATUS, s);
    } else {
        mmio_write8(d->common + C_STATUS, s);
    }
}

static uint32_t features(struct gvdev *d, uint32_t word)
{
    if (d->transport == GV_MMIO) {
        mmio_write32(d->base + M_DFSEL, word);
        return mmio_read32(d->base + M_DF);
    }
    mmio_write32(d->common + C_DFSEL, word);
    return mmio_read32(d->common + C_DF);
}

static void set_features(struct gvdev *d, uint32_t word, uint32_t v)
{
    if (d->transport == GV_MMIO) {
        mmio_write32(d->base + M_GFSEL, word);
        mmio_write32(d->base + M_GF, v);
    } else {
        mmio_write32(d->common + C_GFSEL, word);
        mmio_write32(d->common + C_GF, v);
    }
}

static int setup_queue(struct gvdev *d, int i)
{
    struct gvq *q = &d->q[i];
    if (queue_pages_used == 16) {
        return -1;
    }
    uint8_t *page = queue_pages[queue_pages_used++];
    memset(page, 0, 4096);
    q->index = (uint16_t)i;
    q->size = GVQ_SIZE;
    q->desc = (struct gvq_desc *)page;
    q->avail = (volatile uint16_t *)(page + 1024);
    q->used = page + 2048;
    q->avail_idx = q->last_used = 0;
    uint32_t desc = (uint32_t)(uintptr_t)q->desc, avail = (uint32_t)(uintptr_t)q->avail;
    uint32_t used = (uint32_t)(uintptr_t)q->used;
    if (d->transport == GV_MMIO) {
        uintptr_t b = d->base;
        mmio_write32(b + M_QSEL, (uint32_t)i);
        uint32_t max = mmio_read32(b + M_QMAX);
        if (max == 0) {
            return -1;
        }
        if (max < q->size) {
            q->size = (uint16_t)max;
        }
        mmio_write32(b + M_QNUM, q->size);
        mmio_write32(b + M_QDESC, desc);
        mmio_write32(b + M_QDESC + 4, 0);
        mmio_write32(b + M_QDRIVER, avail);
        mmio_write32(b + M_QDRIVER + 4, 0);
        mmio_write32(b + M_QDEVICE, used);
        mmio_write32(b + M_QDEVICE + 4, 0);
        mmio_write32(b + M_QREADY, 1);
        q->notify_addr = b + M_QNOTIFY;
    } else {
        uintptr_t c = d->common;
        mmio_write16(c + C_QSEL, (uint16_t)i);
        uint16_t max = mmio_read16(c + C_QSIZE);
        if (max == 0) {
            return -1;
        }
        if (max < q->size) {
            q->size = max;
        }
        mmio_write16(c + C_QSIZE, q->size);
        mmio_write32(c + C_QDESC, desc);
        mmio_write32(c + C_QDESC + 4, 0);
        mmio_write32(c + C_QDRIVER, avail);
        mmio_write32(c + C_QDRIVER + 4, 0);
        mmio_write32(c + C_QDEVICE, used);
        mmio_write32(c + C_QDEVICE + 4, 0);
        q->notify_addr = d->notify + mmio_read16(c + C_QNOFF) * d->notify_mult;
        mmio_write16(c + C_QENABLE, 1);
    }
    return 0;
}

int virtio_init(struct gvdev *d, int nqueues)
{
    return virtio_init_features(d, nqueues, 0);
}

uint32_t virtio_features_lo(struct gvdev *d)
{
    return features(d, 0);
}

int virtio_init_features(struct gvdev *d, int nqueues, uint32_t wanted_lo)
{
    set_status(d, 0);
    set_status(d, STATUS_ACK);
    set_status(d, STATUS_ACK | STATUS_DRIVER);
    uint32_t lo = features(d, 0), hi = features(d, 1);
    if (!(hi & F_VERSION_1_HI)) {
        return -1;
    }
    set_features(d, 0, lo & (F_EVENT_IDX | wanted_lo));
    set_features(d, 1, F_VERSION_1_HI);
    set_status(d, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(virtio_status(d) & STATUS_FEATURES_OK)) {
        return -1;
    }
    if (nqueues > GVQ_MAX_QUEUES) {
        return -1;
    }
    d->nq = nqueues;
    for (int i = 0; i < nqueues; i++) {
        if (setup_queue(d, i) < 0) {
            return -1;
        }
    }
    set_status(d, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return 0;
}

uint32_t virtio_config32(struct gvdev *d, uint32_t off)
{
    return d->transport == GV_MMIO ? mmio_read32(d->base + M_CONFIG + off) : mmio_read32(d->device + off);
}

static uint16_t used_idx(struct gvq *q)
{
    return *(volatile uint16_t *)(q->used + 2);
}

void virtio_post(struct gvdev *d, int qi, const struct gvbuf *bufs, int n)
{
    struct gvq *q = &d->q[qi];
    for (int i = 0; i < n; i++) {
        q->desc[i].addr = (uint32_t)(uintptr_t)bufs[i].addr;
        q->desc[i].len = bufs[i].len;
        q->desc[i].flags = (uint16_t)((i + 1 < n ? 1 : 0) | (bufs[i].writable ? 2 : 0));
        q->desc[i].next = (uint16_t)(i + 1);
    }
    q->avail[2 + q->avail_idx % q->size] = 0;     /* head: descriptor 0 */
    mb();
    q->avail_idx++;
    q->avail[1] = q->avail_idx;
    mb();
    if (d->transport == GV_MMIO) {
        mmio_write32(q->notify_addr, q->index);
    } else {
        mmio_write16(q->notify_addr, q->index);
    }
}

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

int virtio_poll(struct gvdev *d, int qi, uint64_t max_cycles)
{
    struct gvq *q = &d->q[qi];
    uint64_t start = rdtsc();
    while (rdtsc() - start < max_cycles) {
        if (used_idx(q) != q->last_used) {
            mb();
            volatile uint32_t *elem = (volatile uint32_t *)(q->used + 4 + 8 * (q->last_used % q->size));
            q->last_used++;
            return (int)elem[1];
        }
    }
    return -1;
}

int virtio_submit_many(struct gvdev *d, int qi, const struct gvbuf *bufs, const int *counts, int nchains,
                       int *lens)
{
    struct gvq *q = &d->q[qi];
    uint16_t heads[GVQ_SIZE];
    int k = 0;
    for (int c = 0; c < nchains; c++) {
        if (k + counts[c] > q->size) {
            return -1;
        }
        heads[c] = (uint16_t)k;
        for (int i = 0; i < counts[c]; i++, k++) {
            q->desc[k].addr = (uint64_t)(uintptr_t)bufs[k].addr;
            q->desc[k].len = bufs[k].len;
            q->desc[k].flags = (uint16_t)((i + 1 < counts[c] ? 1 : 0) | (bufs[k].writable ? 2 : 0));
            q->desc[k].next = (uint16_t)(k + 1);
        }
        q->avail[2 + (q->avail_idx + c) % q->size] = heads[c];
    }
    mb();
    q->avail_idx = (uint16_t)(q->avail_idx + nchains);
    q->avail[1] = q->avail_idx;
    mb();
    if (d->transport == GV_MMIO) {
        mmio_write32(q->notify_addr, q->index);
    } else {
        mmio_write16(q->notify_addr, q->index);
    }
    for (int done = 0; done < nchains;) {
        int len = virtio_poll(d, qi, 3000000000ull);
        if (len < 0) {
            return -1;
        }
        volatile uint32_t *elem = (volatile uint32_t *)(q->used + 4 + 8 * ((q->last_used - 1) % q->size));
        for (int c = 0; c < nchains; c++) {
            if (heads[c] == elem[0]) {
                lens[c] = len;
            }
        }
        done++;
    }
    return 0;
}

int virtio_submit(struct gvdev *d, int qi, const struct gvbuf *bufs, int n)
{
    struct gvq *q = &d->q[qi];
    if (n > q->size) {
        return -1;
    }
    virtio_post(d, qi, bufs, n);
    for (uint32_t spin = 0; spin < 50000000u; spin++) {
        if (used_idx(q) != q->last_used) {
            mb();
            volatile uint32_t *elem = (volatile uint32_t *)(q->used + 4 + 8 * (q->last_used % q->size));
            int len = (int)elem[1];
            q->last_used++;
            return len;
        }
        if ((spin & 1023) == 1023 && (virtio_status(d) & 0x40)) {
            return -2;  /* the device said it needs a reset */
        }
    }
    return -1;
}

const char *virtio_transport_name(const struct gvdev *d)
{
    return d->transport == GV_MMIO ? "mmio" : "pci";
}
