#include "virtio/virtio_device.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

void virtio_device_init(struct virtio_device *d, const char *name, uint32_t device_id,
                        const struct virtio_device_ops *ops, const struct guest_memory *mem,
                        uint64_t features, int nqueues, uint16_t queue_size)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->label, sizeof(d->label), "%s", name);
    d->name = d->label;
    d->device_id = device_id;
    d->ops = ops;
    d->mem = mem;
    d->host_features = features | (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_RING_EVENT_IDX);
    d->nqueues = nqueues;
    pthread_mutex_init(&d->lock, NULL);
    for (int i = 0; i < nqueues; i++) {
        virtqueue_init(&d->vqs[i], queue_size);
    }
}

void virtio_device_set_location(struct virtio_device *d, const char *fmt, ...)
{
    size_t n = strlen(d->label);
    char *at = strchr(d->label, '@');
    if (at) {
        n = (size_t)(at - d->label);    /* replace an earlier location */
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->label + n, sizeof(d->label) - n, fmt, ap);
    va_end(ap);
}

void virtio_device_destroy(struct virtio_device *d)
{
    pthread_mutex_destroy(&d->lock);
}

void virtio_device_set_transport(struct virtio_device *d, const struct virtio_transport_ops *ops, void *opaque)
{
    d->transport = ops;
    d->transport_opaque = opaque;
}

uint32_t virtio_device_get_features(struct virtio_device *d, unsigned word)
{
    return word < 2 ? (uint32_t)(d->host_features >> (32 * word)) : 0;
}

void virtio_device_set_driver_features(struct virtio_device *d, unsigned word, uint32_t value)
{
    if (word >= 2 || (d->status & VIRTIO_STATUS_FEATURES_OK)) {
        return;     /* features are frozen once accepted */
    }
    uint64_t mask = 0xffffffffull << (32 * word);
    d->guest_features = (d->guest_features & ~mask) | (((uint64_t)value << (32 * word)) & d->host_features);
}

void virtio_device_queue_disable(struct virtio_device *d, int q)
{
    if (!d->vqs[q].ready) {
        return;
    }
    if (d->ops->drain) {
        d->ops->drain(d);
    }
    d->vqs[q].ready = false;
}

void virtio_device_reset(struct virtio_device *d)
{
    /* The device first finishes what it has in flight (it may wait on
     * d->lock's condition), then its queues go. */
    if (d->ops->reset) {
        d->ops->reset(d);
    }
    d->status = 0;
    d->guest_features = 0;
    for (int i = 0; i < d->nqueues; i++) {
        virtqueue_reset(&d->vqs[i]);
    }
}

void virtio_device_set_status(struct virtio_device *d, uint8_t status)
{
    if (status == 0) {
        virtio_device_reset(d);
        return;
    }
    uint8_t old = d->status;
    if ((status & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
        !(d->guest_features & (1ull << VIRTIO_F_VERSION_1))) {
        status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;  /* legacy drivers are refused */
    }
    d->status = (uint8_t)(status | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((status & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
        if (d->ops->activate) {
            d->ops->activate(d);
        }
        for (int q = 0; q < d->nqueues; q++) {
            if (virtqueue_has_work(&d->vqs[q])) {
                d->ops->queue_notify(d, q);
            }
        }
    }
}

void virtio_device_fail(struct virtio_device *d, const struct error *why)
{
    if (d->status & VIRTIO_STATUS_NEEDS_RESET) {
        return;
    }
    log_error("%s: guest error, device needs reset: %s", d->name, why->msg);
    d->status |= VIRTIO_STATUS_NEEDS_RESET;
    d->config_generation++;
    if (d->transport && (d->status & VIRTIO_STATUS_DRIVER_OK)) {
        d->transport->notify_config(d->transport_opaque);
    }
}

void virtio_device_config_changed(struct virtio_device *d)
{
    d->config_generation++;
    if (d->transport && (d->status & VIRTIO_STATUS_DRIVER_OK)) {
        d->transport->notify_config(d->transport_opaque);
    }
}

bool virtio_device_running(const struct virtio_device *d)
{
    return (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

void virtio_device_queue_enable(struct virtio_device *d, int q)
{
    struct error err = { 0 };
    bool event_idx = d->guest_features & (1ull << VIRTIO_F_RING_EVENT_IDX);
    if (virtqueue_enable(&d->vqs[q], d->mem, event_idx, &err) < 0) {
        error_prefix(&err, "queue %d", q);
        virtio_device_fail(d, &err);
    }
}

void virtio_device_push(struct virtio_device *d, int q, uint16_t head, uint32_t len)
{
    virtqueue_push(&d->vqs[q], head, len);
}

void virtio_device_notify_used(struct virtio_device *d, int q)
{
    if (virtqueue_should_notify(&d->vqs[q]) && d->transport) {
        d->transport->notify_queue(d->transport_opaque, q);
    }
}

void virtio_device_complete(struct virtio_device *d, int q, uint16_t head, uint32_t len)
{
    virtio_device_push(d, q, head, len);
    virtio_device_notify_used(d, q);
}

void virtio_device_handle_notify(struct virtio_device *d, int q)
{
    pthread_mutex_lock(&d->lock);
    if (q >= 0 && q < d->nqueues && d->quiesced) {
        d->notified_while_quiesced |= 1ull << q;
    } else if (q >= 0 && q < d->nqueues && virtio_device_running(d) && d->vqs[q].ready) {
        d->ops->queue_notify(d, q);
    }
    pthread_mutex_unlock(&d->lock);
}

void virtio_device_save(struct virtio_device *d, struct state_buf *b)
{
    pthread_mutex_lock(&d->lock);
    state_put_u32(b, d->device_id);
    state_put_u64(b, d->guest_features);
    state_put_u8(b, d->status);
    state_put_u32(b, d->config_generation);
    state_put_u32(b, (uint32_t)d->nqueues);
    for (int i = 0; i < d->nqueues; i++) {
        struct virtqueue *vq = &d->vqs[i];
        state_put_u16(b, vq->size);
        state_put_bool(b, vq->ready);
        state_put_u64(b, vq->desc_addr);
        state_put_u64(b, vq->avail_addr);
        state_put_u64(b, vq->used_addr);
        state_put_u16(b, vq->msix_vector);
        state_put_u16(b, vq->last_avail_idx);
        state_put_u16(b, vq->used_idx);
        state_put_u16(b, vq->signalled_used);
        state_put_bool(b, vq->signalled_used_valid);
    }
    if (d->ops->save) {
        d->ops->save(d, b);
    }
    pthread_mutex_unlock(&d->lock);
}

/* The saved queue count is ours, or fewer where the saved driver could not
 * have used more (a snapshot taken before virtio-blk offered MQ). */
static bool saved_queues_fit(const struct virtio_device *d, uint32_t nqueues, uint64_t features)
{
    if (nqueues == (uint32_t)d->nqueues) {
        return true;
    }
    return d->ops->queues_usable && nqueues >= 1 && nqueues < (uint32_t)d->nqueues &&
           nqueues >= (uint32_t)d->ops->queues_usable(d, features);
}

int virtio_device_load(struct virtio_device *d, struct state_buf *b, struct error *err)
{
    uint32_t id = state_get_u32(b);
    uint64_t features = state_get_u64(b);
    uint8_t status = state_get_u8(b);
    uint32_t generation = state_get_u32(b);
    uint32_t nqueues = state_get_u32(b);
    int ret = state_buf_error(b, err);
    if (ret < 0) {
        return ret;
    }
    if (id != d->device_id || !saved_queues_fit(d, nqueues, features)) {
        return error_set(err, -EINVAL, "%s: state is for device id %u with %u queues", d->name, id, nqueues);
    }
    if (features & ~d->host_features) {
        return error_set(err, -EINVAL, "%s: state has features 0x%llx this device does not offer", d->name,
                         (unsigned long long)(features & ~d->host_features));
    }
    pthread_mutex_lock(&d->lock);
    d->guest_features = features;
    d->status = status;
    d->config_generation = generation;
    for (int i = (int)nqueues; i < d->nqueues; i++) {
        virtqueue_reset(&d->vqs[i]);        /* queues the saved device did not have */
    }
    for (int i = 0; i < (int)nqueues && ret == 0; i++) {
        struct virtqueue *vq = &d->vqs[i];
        vq->size = state_get_u16(b);
        bool ready = state_get_bool(b);
        vq->desc_addr = state_get_u64(b);
        vq->avail_addr = state_get_u64(b);
        vq->used_addr = state_get_u64(b);
        vq->msix_vector = state_get_u16(b);
        uint16_t last_avail = state_get_u16(b), used = state_get_u16(b), signalled = state_get_u16(b);
        bool signalled_valid = state_get_bool(b);
        vq->ready = false;
        if ((ret = state_buf_error(b, err)) == 0 && ready) {
            ret = virtqueue_enable(vq, d->mem, features & (1ull << VIRTIO_F_RING_EVENT_IDX), err);
        }
        vq->last_avail_idx = last_avail;
        vq->used_idx = used;
        vq->signalled_used = signalled;
        vq->signalled_used_valid = signalled_valid;
    }
    if (ret == 0 && d->ops->load) {
        ret = d->ops->load(d, b, err);
    }
    pthread_mutex_unlock(&d->lock);
    return ret < 0 ? ret : state_buf_error(b, err);
}

void virtio_device_quiesce(struct virtio_device *d)
{
    pthread_mutex_lock(&d->lock);
    d->quiesced = true;
    if (d->ops->quiesce) {
        d->ops->quiesce(d);
    }
    pthread_mutex_unlock(&d->lock);
}

void virtio_device_resume(struct virtio_device *d)
{
    pthread_mutex_lock(&d->lock);
    d->quiesced = false;
    uint64_t notified = d->notified_while_quiesced;
    d->notified_while_quiesced = 0;
    if (d->ops->resume) {
        d->ops->resume(d);
    }
    pthread_mutex_unlock(&d->lock);
    for (int q = 0; q < d->nqueues; q++) {
        if (notified & (1ull << q)) {
            virtio_device_handle_notify(d, q);
        }
    }
}

void virtio_device_kick_queues(struct virtio_device *d)
{
    for (int q = 0; q < d->nqueues; q++) {
        virtio_device_handle_notify(d, q);
    }
}
