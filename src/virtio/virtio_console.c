#include "virtio/virtio_console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { RECEIVEQ = 0, TRANSMITQ = 1 };

static void transmit(struct virtio_console *c)
{
    struct virtqueue *vq = &c->dev.vqs[TRANSMITQ];
    struct error err = { 0 };
    int ret;
    while ((ret = virtqueue_pop(vq, c->chain, &err)) == 1) {
        for (int i = 0; i < c->chain->nout; i++) {
            if (c->out_fd >= 0) {
                /* Best effort like the UART: a full console must not stop the guest. */
                ssize_t n = write(c->out_fd, c->chain->bufs[i].ptr, c->chain->bufs[i].len);
                (void)n;
            }
            c->bytes_out += c->chain->bufs[i].len;
        }
        virtio_device_complete(&c->dev, TRANSMITQ, c->chain->head, 0);
    }
    if (ret < 0) {
        virtio_device_fail(&c->dev, &err);
        return;
    }
    virtqueue_enable_notify(vq);
}

static void console_queue_notify(struct virtio_device *d, int q)
{
    if (q == TRANSMITQ) {
        transmit((struct virtio_console *)d);
    }
}

size_t virtio_console_receive(struct virtio_console *c, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    struct error err = { 0 };
    pthread_mutex_lock(&c->dev.lock);
    struct virtqueue *vq = &c->dev.vqs[RECEIVEQ];
    while (done < len && virtio_device_running(&c->dev)) {
        int ret = virtqueue_pop(vq, c->chain, &err);
        if (ret < 0) {
            virtio_device_fail(&c->dev, &err);
        }
        if (ret <= 0) {
            break;
        }
        uint64_t n = virtq_chain_write(c->chain, 0, buf + done, len - done);
        done += n;
        virtio_device_complete(&c->dev, RECEIVEQ, c->chain->head, (uint32_t)n);
    }
    pthread_mutex_unlock(&c->dev.lock);
    return done;
}

static void console_config_read(struct virtio_device *d, uint32_t offset, void *buf, unsigned len)
{
    uint8_t cfg[12] = { 80, 0, 25, 0, 1, 0, 0, 0 };     /* cols, rows, max_nr_ports, emerg_wr */
    memset(buf, 0, len);
    if (offset < sizeof(cfg)) {
        memcpy(buf, cfg + offset, len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
    }
}

static const struct virtio_device_ops console_ops = {
    .queue_notify = console_queue_notify,
    .config_read = console_config_read,
};

int virtio_console_init(struct virtio_console *c, const struct guest_memory *mem, int out_fd, struct error *err)
{
    virtio_device_init(&c->dev, "virtio-console", VIRTIO_ID_CONSOLE, &console_ops, mem, 0, 2, 64);
    c->out_fd = out_fd;
    c->bytes_out = 0;
    c->chain = malloc(sizeof(*c->chain));
    return c->chain ? 0 : error_set(err, -ENOMEM, "out of memory");
}

void virtio_console_destroy(struct virtio_console *c)
{
    free(c->chain);
    c->chain = NULL;
    virtio_device_destroy(&c->dev);
}
