/* virtio-blk (virtio 1.2 section 5.2) on a blockdev: read, write, flush,
 * discard, write-zeroes, get-id, read-only disks. Requests are served in the
 * main loop straight between guest memory and the block layer. */
#ifndef VIRTIO_VIRTIO_BLK_H
#define VIRTIO_VIRTIO_BLK_H

#include "block/blockdev.h"
#include "virtio/virtio_device.h"

#define VIRTIO_BLK_QUEUE_SIZE 256

struct virtio_blk {
    struct virtio_device dev;
    struct blockdev *bdev;
    bool read_only;
    char serial[20];
    struct virtq_chain *chain;      /* scratch for the chain being served */
    uint64_t requests;
};

int virtio_blk_init(struct virtio_blk *b, const struct guest_memory *mem, struct blockdev *bdev, bool read_only,
                    const char *serial, struct error *err);
void virtio_blk_destroy(struct virtio_blk *b);

#endif
