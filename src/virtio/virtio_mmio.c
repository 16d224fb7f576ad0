#include "virtio/virtio_mmio.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util/log.h"

enum {
    MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c,
    DEVICE_FEATURES = 0x010, DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024,
    QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050,
    INTERRUPT_STATUS = 0x060, INTERRUPT_ACK = 0x064, STATUS = 0x070,
    QUEUE_DESC_LOW = 0x080, QUEUE_DESC_HIGH = 0x084, QUEUE_DRIVER_LOW = 0x090, QUEUE_DRIVER_HIGH = 0x094,
    QUEUE_DEVICE_LOW = 0x0a0, QUEUE_DEVICE_HIGH = 0x0a4, CONFIG_GENERATION = 0x0fc, CONFIG = 0x100,
};
#define MMIO_MAGIC 0x74726976u      /* "virt" */
#define MMIO_VENDOR 0x554d4551u     /* "QEMU", as Linux and firmware expect nothing else */
#define INT_USED_BUFFER 1u
#define INT_CONFIG 2u

static void raise_interrupt(struct virtio_mmio *t, uint32_t why)
{
    __atomic_fetch_or(&t->interrupt_status, why, __ATOMIC_SEQ_CST);
    if (t->irqfd >= 0) {
        uint64_t one = 1;
        if (write(t->irqfd, &one, sizeof(one)) < 0) {
            log_debug("%s: irqfd write: %s", t->dev->name, strerror(errno));
        }
    } else {
        irq_line_set(&t->irq, 1);
        irq_line_set(&t->irq, 0);
    }
}

static void notify_queue(void *opaque, int q)
{
    raise_interrupt(opaque, INT_USED_BUFFER);
}

static void notify_config(void *opaque)
{
    raise_interrupt(opaque, INT_CONFIG);
}

static const struct virtio_transport_ops mmio_transport_ops = { notify_queue, notify_config };

struct notify_ctx;

static void queue_notified(void *opaque, int fd, uint32_t events)
{
    struct virtio_mmio *t = opaque;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        return;
    }
    for (int q = 0; q < t->dev->nqueues; q++) {
        if (t->notify_fd[q] == fd) {
            virtio_device_handle_notify(t->dev, q);
        }
    }
}

int virtio_mmio_create(struct virtio_mmio *t, struct virtio_device *dev, struct vm *vm, struct event_loop *loop,
                       uint64_t base, struct irq_line irq, struct error *err)
{
    memset(t, 0, sizeof(*t));
    t->dev = dev;
    t->vm = vm;
    t->loop = loop;
    t->base = base;
    t->irq = irq;
    t->irqfd = -1;
    for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        t->notify_fd[q] = -1;
    }
    virtio_device_set_transport(dev, &mmio_transport_ops, t);
    virtio_device_set_location(dev, "@mmio:0x%llx", (unsigned long long)base);
    if (!vm) {
        return 0;
    }
    int ret;
    t->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->irqfd < 0) {
        return error_set_errno(err, -errno, "eventfd");
    }
    if ((ret = vm_irqfd(vm, t->irqfd, irq.gsi, true, err)) < 0) {
        return ret;
    }
    for (int q = 0; q < dev->nqueues; q++) {
        t->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->notify_fd[q] < 0) {
            return error_set_errno(err, -errno, "eventfd");
        }
        if ((ret = vm_ioeventfd(vm, t->notify_fd[q], base + QUEUE_NOTIFY, 4, true, q, true, err)) < 0 ||
            (ret = event_loop_add(loop, t->notify_fd[q], EPOLLIN, queue_notified, t, err)) < 0) {
            return ret;
        }
    }
    return bus_register(&vm->mmio, base, VIRTIO_MMIO_SIZE, virtio_mmio_read, virtio_mmio_write, t, dev->name, err);
}

void virtio_mmio_reset(struct virtio_mmio *t)
{
    t->interrupt_status = 0;
    t->queue_sel = 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (t->vm) {
        bus_unregister(&t->vm->mmio, t->base, t);
    }
    for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (t->notify_fd[q] >= 0) {
            if (t->vm) {
                vm_ioeventfd(t->vm, t->notify_fd[q], t->base + QUEUE_NOTIFY, 4, true, q, false, NULL);
            }
            event_loop_remove(t->loop, t->notify_fd[q]);
            close(t->notify_fd[q]);
            t->notify_fd[q] = -1;
        }
    }
    if (t->irqfd >= 0) {
        if (t->vm) {
            vm_irqfd(t->vm, t->irqfd, t->irq.gsi, false, NULL);
        }
        close(t->irqfd);
        t->irqfd = -1;
    }
}

static struct virtqueue *selected(struct virtio_mmio *t)
{
    return t->queue_sel < (uint32_t)t->dev->nqueues ? &t->dev->vqs[t->queue_sel] : NULL;
}

uint64_t virtio_mmio_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_mmio *t = opaque;
    struct virtio_device *d = t->dev;
    if (offset >= CONFIG) {
        uint8_t buf[8] = { 0 };
        pthread_mutex_lock(&d->lock);
        d->ops->config_read(d, (uint32_t)(offset - CONFIG), buf, size);
        pthread_mutex_unlock(&d->lock);
        uint64_t v = 0;
        for (unsigned i = 0; i < size; i++) {
            v |= (uint64_t)buf[i] << (8 * i);
        }
        return v;
    }
    if (size != 4) {
        return 0;
    }
    uint64_t v = 0;
    pthread_mutex_lock(&d->lock);
    struct virtqueue *vq = selected(t);
    switch (offset) {
    case MAGIC: v = MMIO_MAGIC; break;
    case VERSION: v = 2; break;
    case DEVICE_ID: v = d->device_id; break;
    case VENDOR_ID: v = MMIO_VENDOR; break;
    case DEVICE_FEATURES: v = virtio_device_get_features(d, t->device_features_sel); break;
    case QUEUE_NUM_MAX: v = vq ? vq->max_size : 0; break;
    case QUEUE_READY: v = vq ? vq->ready : 0; break;
    case INTERRUPT_STATUS: v = __atomic_load_n(&t->interrupt_status, __ATOMIC_SEQ_CST); break;
    case STATUS: v = d->status; break;
    case CONFIG_GENERATION: v = d->config_generation; break;
    default: break;
    }
    pthread_mutex_unlock(&d->lock);
    return v;
}

static void set_addr_half(uint64_t *addr, bool high, uint32_t v)
{
    *addr = high ? ((*addr & 0xffffffffull) | ((uint64_t)v << 32)) : ((*addr & ~0xffffffffull) | v);
}

void virtio_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_mmio *t = opaque;
    struct virtio_device *d = t->dev;
    uint32_t v = (uint32_t)value;
    if (offset >= CONFIG) {
        uint8_t buf[8];
        for (unsigned i = 0; i < size; i++) {
            buf[i] = (uint8_t)(value >> (8 * i));
        }
        pthread_mutex_lock(&d->lock);
        if (d->ops->config_write) {
            d->ops->config_write(d, (uint32_t)(offset - CONFIG), buf, size);
        }
        pthread_mutex_unlock(&d->lock);
        return;
    }
    if (size != 4) {
        return;
    }
    if (offset == QUEUE_NOTIFY) {
        /* Only reached without an ioeventfd. */
        virtio_device_handle_notify(d, (int)v);
        return;
    }
    pthread_mutex_lock(&d->lock);
    struct virtqueue *vq = selected(t);
    bool queue_writable = vq && !vq->ready;
    switch (offset) {
    case DEVICE_FEATURES_SEL: t->device_features_sel = v; break;
    case DRIVER_FEATURES: virtio_device_set_driver_features(d, t->driver_features_sel, v); break;
    case DRIVER_FEATURES_SEL: t->driver_features_sel = v; break;
    case QUEUE_SEL: t->queue_sel = v; break;
    case QUEUE_NUM: if (queue_writable) vq->size = (uint16_t)(v > 0xffff ? 0 : v); break;
    case QUEUE_READY:
        if (vq && v == 1 && !vq->ready) {
            virtio_device_queue_enable(d, (int)t->queue_sel);
        } else if (vq && v == 0) {
            virtio_device_queue_disable(d, (int)t->queue_sel);
        }
        break;
    case INTERRUPT_ACK: __atomic_fetch_and(&t->interrupt_status, ~v, __ATOMIC_SEQ_CST); break;
    case STATUS:
        virtio_device_set_status(d, (uint8_t)v);
        if (v == 0) {
            __atomic_store_n(&t->interrupt_status, 0, __ATOMIC_SEQ_CST);
        }
        break;
    case QUEUE_DESC_LOW: case QUEUE_DESC_HIGH:
        if (queue_writable) set_addr_half(&vq->desc_addr, offset == QUEUE_DESC_HIGH, v);
        break;
    case QUEUE_DRIVER_LOW: case QUEUE_DRIVER_HIGH:
        if (queue_writable) set_addr_half(&vq->avail_addr, offset == QUEUE_DRIVER_HIGH, v);
        break;
    case QUEUE_DEVICE_LOW: case QUEUE_DEVICE_HIGH:
        if (queue_writable) set_addr_half(&vq->used_addr, offset == QUEUE_DEVICE_HIGH, v);
        break;
    default: break;
    }
    pthread_mutex_unlock(&d->lock);
}

void virtio_mmio_save(struct virtio_mmio *t, struct state_buf *b)
{
    state_put_u32(b, t->device_features_sel);
    state_put_u32(b, t->driver_features_sel);
    state_put_u32(b, t->queue_sel);
    state_put_u32(b, __atomic_load_n(&t->interrupt_status, __ATOMIC_SEQ_CST));
    virtio_device_save(t->dev, b);
}

int virtio_mmio_load(struct virtio_mmio *t, struct state_buf *b, struct error *err)
{
    uint32_t dsel = state_get_u32(b), drsel = state_get_u32(b), qsel = state_get_u32(b), isr = state_get_u32(b);
    int ret = state_buf_error(b, err);
    if (ret < 0) {
        return ret;
    }
    t->device_features_sel = dsel;
    t->driver_features_sel = drsel;
    t->queue_sel = qsel;
    t->interrupt_status = isr;
    return virtio_device_load(t->dev, b, err);
}
