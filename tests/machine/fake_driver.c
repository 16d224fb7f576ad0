#include "fake_driver.h"

int fake_driver_start(struct virtio_device *d, const struct virtio_transport_ops *t, void *opaque, int q,
                      uint16_t size, uint64_t desc, uint64_t avail, uint64_t used, struct error *err)
{
    virtio_device_set_transport(d, t, opaque);
    d->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                VIRTIO_STATUS_DRIVER_OK;
    struct virtqueue *vq = &d->vqs[q];
    vq->size = size;
    vq->desc_addr = desc;
    vq->avail_addr = avail;
    vq->used_addr = used;
    vq->ready = true;
    return virtqueue_enable(vq, d->mem, false, err);
}
