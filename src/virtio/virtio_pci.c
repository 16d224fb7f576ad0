#include "virtio/virtio_pci.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_CAP_ID_VENDOR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define MSIX_ENABLE 0x8000
#define MSIX_FUNCTION_MASK 0x4000
#define NO_VECTOR 0xffff

enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4, CAP_PCI_CFG = 5 };

/* Common configuration structure offsets. */
enum {
    DFSELECT = 0, DF = 4, GFSELECT = 8, GF = 12, MSIX_CONFIG = 16, NUM_QUEUES = 18, STATUS = 20,
    CFG_GENERATION = 21, Q_SELECT = 22, Q_SIZE = 24, Q_MSIX = 26, Q_ENABLE = 28, Q_NOTIFY_OFF = 30,
    Q_DESC = 32, Q_AVAIL = 40, Q_USED = 48, COMMON_SIZE = 56,
};

static uint16_t msix_control(struct virtio_pci *p)
{
    return (uint16_t)pci_config_read(&p->pci, p->msix_cap + 2u, 2);
}

static bool msix_enabled(struct virtio_pci *p)
{
    return msix_control(p) & MSIX_ENABLE;
}

static bool vector_masked(struct virtio_pci *p, unsigned v)
{
    return (msix_control(p) & MSIX_FUNCTION_MASK) || (p->msix[v].ctrl & 1);
}

/* Keeps KVM's MSI route for vector v in step with its table entry. */
static void route_vector(struct virtio_pci *p, unsigned v)
{
    if (!p->vm || p->vector_fd[v] < 0) {
        return;
    }
    struct error err = { 0 };
    uint64_t addr = ((uint64_t)p->msix[v].addr_hi << 32) | p->msix[v].addr_lo;
    if (vm_set_msi_route(p->vm, p->vector_gsi[v], addr, p->msix[v].data, &err) < 0) {
        log_warn("%s: %s", p->dev->name, err.msg);
        return;
    }
    if (!p->vector_routed[v] && vm_irqfd(p->vm, p->vector_fd[v], p->vector_gsi[v], true, &err) == 0) {
        p->vector_routed[v] = true;
    }
}

static void fire_vector(struct virtio_pci *p, unsigned v)
{
    if (v >= VIRTIO_PCI_VECTORS) {
        return;
    }
    pthread_mutex_lock(&p->msix_lock);
    if (vector_masked(p, v)) {
        p->msix_pending |= 1u << v;
    } else if (p->vector_routed[v]) {
        uint64_t one = 1;
        if (write(p->vector_fd[v], &one, sizeof(one)) < 0) {
            log_debug("%s: irqfd write: %s", p->dev->name, strerror(errno));
        }
    } else if (p->vm) {
        uint64_t addr = ((uint64_t)p->msix[v].addr_hi << 32) | p->msix[v].addr_lo;
        vm_signal_msi(p->vm, addr, p->msix[v].data);
    }
    pthread_mutex_unlock(&p->msix_lock);
}

static void interrupt(struct virtio_pci *p, uint8_t isr_bit, uint16_t vector)
{
    if (msix_enabled(p)) {
        if (vector != NO_VECTOR) {
            fire_vector(p, vector);
        }
        return;
    }
    /* A driver without MSI-X: the ISR bit and the INTx line rise together
     * and fall together when the driver reads the ISR (the lock keeps a
     * read from lowering the line over a bit set after it). */
    pthread_mutex_lock(&p->msix_lock);
    __atomic_fetch_or(&p->isr, isr_bit, __ATOMIC_SEQ_CST);
    pci_set_intx(&p->pci, 1);
    pthread_mutex_unlock(&p->msix_lock);
}

/* The driver's ISR read: the bits, cleared, and the line lowered. */
static uint8_t take_isr(struct virtio_pci *p)
{
    pthread_mutex_lock(&p->msix_lock);
    uint8_t v = __atomic_exchange_n(&p->isr, 0, __ATOMIC_SEQ_CST);
    pci_set_intx(&p->pci, 0);
    pthread_mutex_unlock(&p->msix_lock);
    return v;
}

static void notify_queue(void *opaque, int q)
{
    struct virtio_pci *p = opaque;
    interrupt(p, 1, p->dev->vqs[q].msix_vector);
}

static void notify_config(void *opaque)
{
    struct virtio_pci *p = opaque;
    interrupt(p, 2, p->msix_config);
}

static const struct virtio_transport_ops pci_transport_ops = { notify_queue, notify_config };

static void queue_notified(void *opaque, int fd, uint32_t events)
{
    struct virtio_pci *p = opaque;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        return;
    }
    for (int q = 0; q < p->dev->nqueues; q++) {
        if (p->notify_fd[q] == fd) {
            virtio_device_handle_notify(p->dev, q);
        }
    }
}

static void move_notifiers(struct virtio_pci *p, uint64_t old, uint64_t now)
{
    for (int q = 0; q < p->dev->nqueues && p->vm; q++) {
        uint64_t off = VIRTIO_PCI_NOTIFY + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULTIPLIER;
        if (old) {
            vm_ioeventfd(p->vm, p->notify_fd[q], old + off, 2, true, -1, false, NULL);
        }
        if (now) {
            struct error err = { 0 };
            if (vm_ioeventfd(p->vm, p->notify_fd[q], now + off, 2, true, -1, true, &err) < 0) {
                log_warn("%s: %s (notifies will exit to the VMM)", p->dev->name, err.msg);
            }
        }
    }
}

static void bar_remap(struct pci_device *d, int bar, uint64_t old, uint64_t now)
{
    struct virtio_pci *p = d->opaque;
    if (bar != 0 || !p->vm) {
        return;
    }
    if (old) {
        bus_unregister(&p->vm->mmio, old, p);
    }
    if (now) {
        struct error err = { 0 };
        if (bus_register(&p->vm->mmio, now, VIRTIO_PCI_BAR_SIZE, virtio_pci_bar_read, virtio_pci_bar_write, p,
                         p->dev->name, &err) < 0) {
            log_warn("%s: BAR 0 at 0x%llx: %s", p->dev->name, (unsigned long long)now, err.msg);
            now = 0;
        }
    }
    move_notifiers(p, old, now);
    p->bar = now;
}

static void config_written(struct pci_device *d, uint32_t offset, unsigned size)
{
    struct virtio_pci *p = d->opaque;
    uint32_t ctrl = p->msix_cap + 2u;
    if (offset <= ctrl + 1 && offset + size > ctrl) {
        pthread_mutex_lock(&p->msix_lock);
        for (unsigned v = 0; v < VIRTIO_PCI_VECTORS; v++) {
            route_vector(p, v);
        }
        /* A driver that switches to MSI-X never reads the ISR again: an
         * INTx left asserted would hold the shared line high (as QEMU's
         * msix_write_config, the line drops; the ISR bits stay). */
        if (msix_enabled(p)) {
            pci_set_intx(&p->pci, 0);
        }
        uint32_t pending = p->msix_pending;
        p->msix_pending = 0;
        pthread_mutex_unlock(&p->msix_lock);
        for (unsigned v = 0; v < VIRTIO_PCI_VECTORS; v++) {
            if (pending & (1u << v)) {
                fire_vector(p, v);
            }
        }
    }
}

/* The PCI configuration access capability: the driver names a BAR 0
 * window (offset, length 1/2/4) and moves data through pci_cfg_data. */
static bool pci_cfg_window(struct virtio_pci *p, uint32_t offset, unsigned size, uint32_t *bar_off,
                           uint32_t *len)
{
    uint32_t data = p->pci_cfg_cap + 16u;
    if (!p->pci_cfg_cap || offset + size <= data || offset >= data + 4) {
        return false;
    }
    const uint8_t *c = p->pci.config + p->pci_cfg_cap;
    memcpy(bar_off, c + 8, 4);
    memcpy(len, c + 12, 4);
    return c[4] == 0 && (*len == 1 || *len == 2 || *len == 4) && *bar_off <= VIRTIO_PCI_BAR_SIZE - *len;
}

static void pci_cfg_reading(struct pci_device *d, uint32_t offset, unsigned size)
{
    struct virtio_pci *p = d->opaque;
    uint32_t bar_off, len;
    if (pci_cfg_window(p, offset, size, &bar_off, &len)) {
        uint32_t v = (uint32_t)virtio_pci_bar_read(p, bar_off, len);
        memcpy(p->pci.config + p->pci_cfg_cap + 16, &v, 4);
    }
}

static void config_written_all(struct pci_device *d, uint32_t offset, unsigned size)
{
    struct virtio_pci *p = d->opaque;
    uint32_t bar_off, len, v;
    if (pci_cfg_window(p, offset, size, &bar_off, &len)) {
        memcpy(&v, p->pci.config + p->pci_cfg_cap + 16, 4);
        virtio_pci_bar_write(p, bar_off, len, v);
    }
    config_written(d, offset, size);
}

static const struct pci_device_ops virtio_pci_ops = { bar_remap, config_written_all, pci_cfg_reading };

static uint8_t add_virtio_cap(struct virtio_pci *p, uint8_t type, uint32_t offset, uint32_t length, uint8_t extra)
{
    uint8_t at = pci_add_capability(&p->pci, PCI_CAP_ID_VENDOR, (uint8_t)(16 + extra));
    uint8_t *c = p->pci.config + at;
    c[2] = (uint8_t)(16 + extra);
    c[3] = type;
    c[4] = 0;   /* BAR 0 */
    memcpy(c + 8, &offset, 4);
    memcpy(c + 12, &length, 4);
    if (type == CAP_NOTIFY) {
        uint32_t mult = VIRTIO_PCI_NOTIFY_MULTIPLIER;
        memcpy(c + 16, &mult, 4);
    }
    return at;
}

static void init_config_space(struct virtio_pci *p)
{
    static const uint32_t class_of[] = { [VIRTIO_ID_NET] = 0x020000, [VIRTIO_ID_BLOCK] = 0x010000,
                                         [VIRTIO_ID_CONSOLE] = 0x078000, [VIRTIO_ID_RNG] = 0x00ff00 };
    uint32_t id = p->dev->device_id;
    uint32_t class_code = id < sizeof(class_of) / sizeof(class_of[0]) ? class_of[id] : 0xff0000;
    pci_device_init(&p->pci, PCI_VENDOR_VIRTIO, (uint16_t)(0x1040 + id), class_code, 1, &virtio_pci_ops, p);
    p->pci.config[PCI_SUBSYSTEM_VENDOR_ID] = (uint8_t)PCI_VENDOR_VIRTIO;
    p->pci.config[PCI_SUBSYSTEM_VENDOR_ID + 1] = (uint8_t)(PCI_VENDOR_VIRTIO >> 8);
    p->pci.config[PCI_SUBSYSTEM_ID] = 0x40;
    p->pci.config[PCI_INTERRUPT_PIN] = 1;
    pci_set_bar(&p->pci, 0, VIRTIO_PCI_BAR_SIZE);
    add_virtio_cap(p, CAP_COMMON, VIRTIO_PCI_COMMON, COMMON_SIZE, 0);
    add_virtio_cap(p, CAP_ISR, VIRTIO_PCI_ISR, 1, 0);
    add_virtio_cap(p, CAP_DEVICE, VIRTIO_PCI_DEVICE, 0x1000, 0);
    add_virtio_cap(p, CAP_NOTIFY, VIRTIO_PCI_NOTIFY, VIRTIO_PCI_NOTIFY_MULTIPLIER * VIRTIO_MAX_QUEUES, 4);
    p->pci_cfg_cap = add_virtio_cap(p, CAP_PCI_CFG, 0, 0, 4);
    /* bar, offset, length and data are the driver's to write. */
    p->pci.wmask[p->pci_cfg_cap + 4] = 0xff;
    memset(p->pci.wmask + p->pci_cfg_cap + 8, 0xff, 12);
    p->msix_cap = pci_add_capability(&p->pci, PCI_CAP_ID_MSIX, 12);
    uint8_t *c = p->pci.config + p->msix_cap;
    uint16_t table_size = VIRTIO_PCI_VECTORS - 1;
    uint32_t table = VIRTIO_PCI_MSIX_TABLE, pba = VIRTIO_PCI_MSIX_PBA;   /* both in BAR 0 */
    memcpy(c + 2, &table_size, 2);
    memcpy(c + 4, &table, 4);
    memcpy(c + 8, &pba, 4);
    p->pci.wmask[p->msix_cap + 3] = (MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8;
}

int virtio_pci_create(struct virtio_pci *p, struct virtio_device *dev, struct vm *vm, struct event_loop *loop,
                      struct error *err)
{
    memset(p, 0, sizeof(*p));
    p->dev = dev;
    p->vm = vm;
    p->loop = loop;
    p->msix_config = NO_VECTOR;
    pthread_mutex_init(&p->msix_lock, NULL);
    for (int i = 0; i < VIRTIO_PCI_VECTORS; i++) {
        p->vector_fd[i] = -1;
        p->msix[i].ctrl = 1;
    }
    for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        p->notify_fd[q] = -1;
    }
    init_config_space(p);
    virtio_device_set_transport(dev, &pci_transport_ops, p);
    if (!vm) {
        return 0;
    }
    for (int v = 0; v < VIRTIO_PCI_VECTORS; v++) {
        p->vector_fd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->vector_fd[v] < 0) {
            return error_set_errno(err, -errno, "eventfd");
        }
        int ret = vm_alloc_gsi(vm, &p->vector_gsi[v], err);
        if (ret < 0) {
            return ret;
        }
    }
    for (int q = 0; q < dev->nqueues; q++) {
        int own = dev->ops->notify_fd ? dev->ops->notify_fd(dev, q) : -1;
        if (own >= 0) {     /* KVM wakes the device's queue thread directly */
            p->notify_fd[q] = fcntl(own, F_DUPFD_CLOEXEC, 0);
            if (p->notify_fd[q] < 0) {
                return error_set_errno(err, -errno, "dup");
            }
            continue;
        }
        p->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->notify_fd[q] < 0) {
            return error_set_errno(err, -errno, "eventfd");
        }
        int ret = event_loop_add(loop, p->notify_fd[q], EPOLLIN, queue_notified, p, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

void virtio_pci_destroy(struct virtio_pci *p)
{
    if (p->bar) {
        bar_remap(&p->pci, 0, p->bar, 0);
    }
    for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (p->notify_fd[q] >= 0) {
            event_loop_remove(p->loop, p->notify_fd[q]);
            close(p->notify_fd[q]);
            p->notify_fd[q] = -1;
        }
    }
    for (int v = 0; v < VIRTIO_PCI_VECTORS; v++) {
        if (p->vector_fd[v] >= 0) {
            if (p->vector_routed[v]) {
                vm_irqfd(p->vm, p->vector_fd[v], p->vector_gsi[v], false, NULL);
            }
            close(p->vector_fd[v]);
            p->vector_fd[v] = -1;
            vm_free_gsi(p->vm, p->vector_gsi[v]);
        }
    }
    pthread_mutex_destroy(&p->msix_lock);
}

void virtio_pci_reset(struct virtio_pci *p)
{
    p->device_features_sel = p->driver_features_sel = 0;
    p->queue_sel = 0;
    p->msix_config = NO_VECTOR;
    take_isr(p);
}

static uint64_t common_read(struct virtio_pci *p, uint64_t off, unsigned size)
{
    struct virtio_device *d = p->dev;
    struct virtqueue *vq = p->queue_sel < d->nqueues ? &d->vqs[p->queue_sel] : NULL;
    switch (off) {
    case DFSELECT: return p->device_features_sel;
    case DF: return virtio_device_get_features(d, p->device_features_sel);
    case GFSELECT: return p->driver_features_sel;
    case GF: return p->driver_features_sel < 2 ? (uint32_t)(d->guest_features >> (32 * p->driver_features_sel)) : 0;
    case MSIX_CONFIG: return p->msix_config;
    case NUM_QUEUES: return (uint64_t)d->nqueues;
    case STATUS: return d->status;
    case CFG_GENERATION: return (uint8_t)d->config_generation;
    case Q_SELECT: return p->queue_sel;
    case Q_SIZE: return vq ? vq->size : 0;
    case Q_MSIX: return vq ? vq->msix_vector : NO_VECTOR;
    case Q_ENABLE: return vq ? vq->ready : 0;
    case Q_NOTIFY_OFF: return p->queue_sel;
    case Q_DESC: return vq ? (uint32_t)vq->desc_addr : 0;
    case Q_DESC + 4: return vq ? (uint32_t)(vq->desc_addr >> 32) : 0;
    case Q_AVAIL: return vq ? (uint32_t)vq->avail_addr : 0;
    case Q_AVAIL + 4: return vq ? (uint32_t)(vq->avail_addr >> 32) : 0;
    case Q_USED: return vq ? (uint32_t)vq->used_addr : 0;
    case Q_USED + 4: return vq ? (uint32_t)(vq->used_addr >> 32) : 0;
    default: return 0;
    }
}

static void set_addr(uint64_t *addr, uint64_t off, unsigned size, uint64_t v)
{
    if (size == 8) {
        *addr = v;
    } else if (off & 4) {
        *addr = (*addr & 0xffffffffull) | (v << 32);
    } else {
        *addr = (*addr & ~0xffffffffull) | (uint32_t)v;
    }
}

static uint16_t valid_vector(uint64_t v)
{
    return v < VIRTIO_PCI_VECTORS ? (uint16_t)v : NO_VECTOR;
}

static void common_write(struct virtio_pci *p, uint64_t off, unsigned size, uint64_t v)
{
    struct virtio_device *d = p->dev;
    struct virtqueue *vq = p->queue_sel < d->nqueues ? &d->vqs[p->queue_sel] : NULL;
    bool q_writable = vq && !vq->ready;
    switch (off) {
    case DFSELECT: p->device_features_sel = (uint32_t)v; break;
    case GFSELECT: p->driver_features_sel = (uint32_t)v; break;
    case GF: virtio_device_set_driver_features(d, p->driver_features_sel, (uint32_t)v); break;
    case MSIX_CONFIG: p->msix_config = valid_vector(v); break;
    case STATUS:
        virtio_device_set_status(d, (uint8_t)v);
        if (v == 0) {
            virtio_pci_reset(p);
        }
        break;
    case Q_SELECT: p->queue_sel = (uint16_t)v; break;
    case Q_SIZE: if (q_writable) vq->size = (uint16_t)v; break;
    case Q_MSIX: if (vq) vq->msix_vector = valid_vector(v); break;
    case Q_ENABLE:
        if (vq && v == 1 && !vq->ready) {
            virtio_device_queue_enable(d, p->queue_sel);
        }
        break;
    case Q_DESC: case Q_DESC + 4: if (q_writable) set_addr(&vq->desc_addr, off, size, v); break;
    case Q_AVAIL: case Q_AVAIL + 4: if (q_writable) set_addr(&vq->avail_addr, off, size, v); break;
    case Q_USED: case Q_USED + 4: if (q_writable) set_addr(&vq->used_addr, off, size, v); break;
    default: break;
    }
}

static uint64_t msix_read(struct virtio_pci *p, uint64_t off, unsigned size)
{
    if (off >= VIRTIO_PCI_MSIX_PBA) {
        return off == VIRTIO_PCI_MSIX_PBA ? p->msix_pending : 0;
    }
    uint64_t i = (off - VIRTIO_PCI_MSIX_TABLE) / 16, field = (off % 16) / 4;
    if (i >= VIRTIO_PCI_VECTORS || size != 4) {
        return 0;
    }
    const uint32_t *e = &p->msix[i].addr_lo;
    return e[field];
}

static void msix_write(struct virtio_pci *p, uint64_t off, unsigned size, uint64_t v)
{
    uint64_t i = (off - VIRTIO_PCI_MSIX_TABLE) / 16, field = (off % 16) / 4;
    if (off >= VIRTIO_PCI_MSIX_PBA || i >= VIRTIO_PCI_VECTORS || size != 4) {
        return;
    }
    pthread_mutex_lock(&p->msix_lock);
    uint32_t *e = &p->msix[i].addr_lo;
    e[field] = field == 3 ? (uint32_t)v & 1 : (uint32_t)v;
    route_vector(p, (unsigned)i);
    bool fire = !vector_masked(p, (unsigned)i) && (p->msix_pending & (1u << i));
    if (fire) {
        p->msix_pending &= ~(1u << i);
    }
    pthread_mutex_unlock(&p->msix_lock);
    if (fire) {
        fire_vector(p, (unsigned)i);
    }
}

uint64_t virtio_pci_bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *p = opaque;
    struct virtio_device *d = p->dev;
    uint64_t v = 0;
    if (offset >= VIRTIO_PCI_MSIX_TABLE) {
        return msix_read(p, offset, size);
    }
    pthread_mutex_lock(&d->lock);
    if (offset < VIRTIO_PCI_COMMON + COMMON_SIZE) {
        v = common_read(p, offset - VIRTIO_PCI_COMMON, size);
    } else if (offset == VIRTIO_PCI_ISR) {
        v = take_isr(p);
    } else if (offset >= VIRTIO_PCI_DEVICE && offset < VIRTIO_PCI_NOTIFY) {
        uint8_t buf[8] = { 0 };
        d->ops->config_read(d, (uint32_t)(offset - VIRTIO_PCI_DEVICE), buf, size);
        for (unsigned i = 0; i < size; i++) {
            v |= (uint64_t)buf[i] << (8 * i);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return v;
}

void virtio_pci_bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *p = opaque;
    struct virtio_device *d = p->dev;
    if (offset >= VIRTIO_PCI_MSIX_TABLE) {
        msix_write(p, offset, size, value);
        return;
    }
    if (offset >= VIRTIO_PCI_NOTIFY) {
        /* Only reached when no ioeventfd caught the write. */
        virtio_device_handle_notify(d, (int)((offset - VIRTIO_PCI_NOTIFY) / VIRTIO_PCI_NOTIFY_MULTIPLIER));
        return;
    }
    pthread_mutex_lock(&d->lock);
    if (offset < VIRTIO_PCI_COMMON + COMMON_SIZE) {
        common_write(p, offset - VIRTIO_PCI_COMMON, size, value);
    } else if (offset >= VIRTIO_PCI_DEVICE && d->ops->config_write) {
        uint8_t buf[8];
        for (unsigned i = 0; i < size; i++) {
            buf[i] = (uint8_t)(value >> (8 * i));
        }
        d->ops->config_write(d, (uint32_t)(offset - VIRTIO_PCI_DEVICE), buf, size);
    }
    pthread_mutex_unlock(&d->lock);
}

void virtio_pci_save(struct virtio_pci *p, struct state_buf *b)
{
    pci_device_save(&p->pci, b);
    state_put_u32(b, p->device_features_sel);
    state_put_u32(b, p->driver_features_sel);
    state_put_u16(b, p->queue_sel);
    state_put_u16(b, p->msix_config);
    state_put_u8(b, p->isr);
    state_put_u32(b, p->msix_pending);
    for (int v = 0; v < VIRTIO_PCI_VECTORS; v++) {
        state_put_u32(b, p->msix[v].addr_lo);
        state_put_u32(b, p->msix[v].addr_hi);
        state_put_u32(b, p->msix[v].data);
        state_put_u32(b, p->msix[v].ctrl);
    }
    virtio_device_save(p->dev, b);
}

int virtio_pci_load(struct virtio_pci *p, struct state_buf *b, struct error *err)
{
    int ret = pci_device_load(&p->pci, b, err);
    if (ret < 0) {
        return ret;
    }
    p->device_features_sel = state_get_u32(b);
    p->driver_features_sel = state_get_u32(b);
    p->queue_sel = state_get_u16(b);
    p->msix_config = valid_vector(state_get_u16(b));
    p->isr = state_get_u8(b);
    /* a pending INTx stays asserted, unless the driver uses MSI-X */
    pci_set_intx(&p->pci, p->isr != 0 && !msix_enabled(p));
    p->msix_pending = state_get_u32(b) & ((1u << VIRTIO_PCI_VECTORS) - 1);
    for (int v = 0; v < VIRTIO_PCI_VECTORS; v++) {
        p->msix[v].addr_lo = state_get_u32(b);
        p->msix[v].addr_hi = state_get_u32(b);
        p->msix[v].data = state_get_u32(b);
        p->msix[v].ctrl = state_get_u32(b) & 1;
    }
    if ((ret = state_buf_error(b, err)) < 0) {
        return ret;
    }
    for (unsigned v = 0; v < VIRTIO_PCI_VECTORS; v++) {
        route_vector(p, v);
    }
    return virtio_device_load(p->dev, b, err);
}
