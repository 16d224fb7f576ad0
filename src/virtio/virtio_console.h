/* virtio-console (virtio 1.2 section 5.3), a single port without the
 * multiport feature: the transmit queue goes to the console output; the
 * receive queue takes input the main loop hands in. */
#ifndef VIRTIO_VIRTIO_CONSOLE_H
#define VIRTIO_VIRTIO_CONSOLE_H

#include <stddef.h>

#include "virtio/virtio_device.h"

struct virtio_console {
    struct virtio_device dev;
    int out_fd;
    struct virtq_chain *chain;
    uint64_t bytes_out;
};

int virtio_console_init(struct virtio_console *c, const struct guest_memory *mem, int out_fd, struct error *err);
void virtio_console_destroy(struct virtio_console *c);
/* Delivers input into receive buffers; returns the bytes taken. */
size_t virtio_console_receive(struct virtio_console *c, const uint8_t *buf, size_t len);

#endif
