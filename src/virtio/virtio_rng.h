/* virtio-rng (virtio 1.2 section 5.4): fills the driver's buffers from the
 * host's getrandom(). */
#ifndef VIRTIO_VIRTIO_RNG_H
#define VIRTIO_VIRTIO_RNG_H

#include "virtio/virtio_device.h"

struct virtio_rng {
    struct virtio_device dev;
    struct virtq_chain *chain;
};

int virtio_rng_init(struct virtio_rng *r, const struct guest_memory *mem, struct error *err);
void virtio_rng_destroy(struct virtio_rng *r);

#endif
