#include "virtio/virtio_rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/host_input.h"

#define RNG_MAX_PER_REQUEST 4096u   /* bounds the host work one guest request causes */

static void rng_queue_notify(struct virtio_device *d, int q)
{
    struct virtio_rng *r = (struct virtio_rng *)d;
    struct virtqueue *vq = &d->vqs[q];
    struct error err = { 0 };
    int ret;
    while ((ret = virtqueue_pop(vq, r->chain, &err)) == 1) {
        uint32_t filled = 0;
        for (int i = r->chain->nout; i < r->chain->nout + r->chain->nin && filled < RNG_MAX_PER_REQUEST; i++) {
            uint32_t want = r->chain->bufs[i].len;
            if (want > RNG_MAX_PER_REQUEST - filled) {
                want = RNG_MAX_PER_REQUEST - filled;
            }
            ssize_t n = host_input_entropy(r->chain->bufs[i].ptr, want);
            if (n <= 0) {
                break;
            }
            filled += (uint32_t)n;
        }
        virtio_device_complete(d, q, r->chain->head, filled);
    }
    if (ret < 0) {
        virtio_device_fail(d, &err);
        return;
    }
    virtqueue_enable_notify(vq);
}

static void rng_config_read(struct virtio_device *d, uint32_t offset, void *buf, unsigned len)
{
    memset(buf, 0, len);
}

static const struct virtio_device_ops rng_ops = {
    .queue_notify = rng_queue_notify,
    .config_read = rng_config_read,
};

int virtio_rng_init(struct virtio_rng *r, const struct guest_memory *mem, struct error *err)
{
    virtio_device_init(&r->dev, "virtio-rng", VIRTIO_ID_RNG, &rng_ops, mem, 0, 1, 64);
    r->chain = malloc(sizeof(*r->chain));
    return r->chain ? 0 : error_set(err, -ENOMEM, "out of memory");
}

void virtio_rng_destroy(struct virtio_rng *r)
{
    free(r->chain);
    r->chain = NULL;
    virtio_device_destroy(&r->dev);
}
