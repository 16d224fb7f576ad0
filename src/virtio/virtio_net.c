#include "virtio/virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/log.h"
#include "vmm/host_input.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1
#define NET_HDR_SIZE 12
#define MAX_FRAME (65536 + NET_HDR_SIZE)
#define NET_MAX_IOV 64

enum { RXQ = 0, TXQ = 1 };

static struct virtio_net *to_net(struct virtio_device *d)
{
    return (struct virtio_net *)d;
}

static void set_polling(struct virtio_net *n, bool on)
{
    if (n->polling == on || !n->loop) {
        return;
    }
    /* epoll_ctl is thread-safe: vCPU threads may get here through a reset.
     * While quiesced the tap stays unwatched; resume applies the wish. */
    if (n->quiesced || event_loop_modify(n->loop, n->tap_fd, on ? EPOLLIN : 0) == 0) {
        n->polling = on;
    }
}

/* A paused machine takes no frames: they wait in the tap's queue. */
static void net_quiesce(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    n->quiesced = true;
    if (n->loop && n->polling) {
        event_loop_modify(n->loop, n->tap_fd, 0);
    }
}

static void net_resume(struct virtio_device *d)
{
    struct virtio_net *n = to_net(d);
    n->quiesced = false;
    if (n->loop && n->polling) {
        event_loop_modify(n->loop, n->tap_fd, EPOLLIN);
    }
}

static int fill_iov(const struct virtq_chain *c, int first, int count, struct iovec *iov)
{
    int k = 0;
    for (int i = first; i < first + count && k < NET_MAX_IOV; i++) {
        iov[k].iov_base = c->bufs[i].ptr;
        iov[k].iov_len = c->bufs[i].len;
        k++;
    }
    return k;
}

static void transmit(struct virtio_net *n)
{
    struct virtqueue *vq = &n->dev.vqs[TXQ];
    struct iovec iov[NET_MAX_IOV];
    struct error err = { 0 };
    int ret;
    while ((ret = virtqueue_pop(vq, n->chain, &err)) == 1) {
        if (n->chain->out_len < NET_HDR_SIZE || n->chain->out_len > MAX_FRAME || n->chain->nout > NET_MAX_IOV) {
            error_set(&err, -EINVAL, "transmit chain %u of %llu bytes in %d buffers", n->chain->head,
                      (unsigned long long)n->chain->out_len, n->chain->nout);
            ret = -EINVAL;
            break;
        }
        int k = fill_iov(n->chain, 0, n->chain->nout, iov);
        if (writev(n->tap_fd, iov, k) < 0 && errno != EAGAIN) {
            log_debug("%s: tap write: %s", n->dev.name, strerror(errno));
        }
        n->tx_frames++;
        virtio_device_complete(&n->dev, TXQ, n->chain->head, 0);
    }
    if (ret < 0) {
        virtio_device_fail(&n->dev, &err);
        return;
    }
    virtqueue_enable_notify(vq);
}

/* Moves frames from the tap into receive buffers while both have some. */
static void receive(struct virtio_net *n)
{
    struct virtqueue *vq = &n->dev.vqs[RXQ];
    struct iovec iov[NET_MAX_IOV];
    struct error err = { 0 };
    while (!n->quiesced && virtio_device_running(&n->dev) && vq->ready) {
        int ret = virtqueue_pop(vq, n->chain, &err);
        if (ret < 0) {
            virtio_device_fail(&n->dev, &err);
            return;
        }
        if (ret == 0) {
            virtqueue_enable_notify(vq);
            if (!virtqueue_has_work(vq)) {
                set_polling(n, false);  /* until the guest adds buffers */
                return;
            }
            continue;
        }
        int k = fill_iov(n->chain, n->chain->nout, n->chain->nin, iov);
        ssize_t got = host_input_net(n->tap_fd, iov, k);
        if (got < 0) {
            /* Nothing to read: give the chain back for later. */
            vq->last_avail_idx--;
            return;
        }
        n->rx_frames++;
        /* num_buffers (header bytes 10-11) is 1: one chain per frame. */
        uint16_t one = 1;
        virtq_chain_write(n->chain, 10, &one, 2);
        virtio_device_complete(&n->dev, RXQ, n->chain->head, (uint32_t)got);
    }
}

static void tap_readable(void *opaque, int fd, uint32_t events)
{
    struct virtio_net *n = opaque;
    pthread_mutex_lock(&n->dev.lock);
    if (n->polling && virtio_device_running(&n->dev)) {
        receive(n);
    } else {
        /* Drop frames nobody can take so the loop does not spin. */
        uint8_t scratch[2048];
        if (read(fd, scratch, sizeof(scratch)) < 0) {
            log_debug("%s: tap read: %s", n->dev.name, strerror(errno));
        }
    }
    pthread_mutex_unlock(&n->dev.lock);
}

static void net_queue_notify(struct virtio_device *d, int q)
{
    struct virtio_net *n = to_net(d);
    if (q == TXQ) {
        transmit(n);
    } else {
        set_polling(n, true);
        receive(n);
    }
}

static void net_config_read(struct virtio_device *d, uint32_t offset, void *buf, unsigned len)
{
    struct virtio_net *n = to_net(d);
    uint8_t cfg[12] = { 0 };
    memcpy(cfg, n->mac, 6);
    cfg[6] = VIRTIO_NET_S_LINK_UP;
    cfg[8] = 1;     /* max_virtqueue_pairs */
    memset(buf, 0, len);
    if (offset < sizeof(cfg)) {
        memcpy(buf, cfg + offset, len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
    }
}

static void net_reset(struct virtio_device *d)
{
    /* Back to polling so stale frames are drained (dropped) while reset. */
    set_polling(to_net(d), true);
}

static const struct virtio_device_ops net_ops = {
    .queue_notify = net_queue_notify,
    .config_read = net_config_read,
    .reset = net_reset,
    .quiesce = net_quiesce,
    .resume = net_resume,
};

int virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char extra;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6) {
        return -EINVAL;
    }
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff) {
            return -EINVAL;
        }
        mac[i] = (uint8_t)v[i];
    }
    return (mac[0] & 1) ? -EINVAL : 0;  /* no multicast address */
}

static int open_tap(const char *name, struct error *err)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "cannot open /dev/net/tun");
    }
    struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
    if (strlen(name) >= sizeof(ifr.ifr_name)) {
        close(fd);
        return error_set(err, -EINVAL, "tap name '%s' is too long", name);
    }
    strcpy(ifr.ifr_name, name);
    int hdr = NET_HDR_SIZE;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
        int e = -errno;
        close(fd);
        return error_set_errno(err, e, "cannot attach to tap device '%s'", name);
    }
    return fd;
}

int virtio_net_init(struct virtio_net *n, const struct guest_memory *mem, struct event_loop *loop,
                    const char *tap, const char *mac, struct error *err)
{
    virtio_device_init(&n->dev, "virtio-net", VIRTIO_ID_NET, &net_ops, mem,
                       (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS), 2, 256);
    n->loop = loop;
    n->tap_fd = -1;
    static const uint8_t default_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
    memcpy(n->mac, default_mac, 6);
    if (mac && virtio_net_parse_mac(mac, n->mac) < 0) {
        return error_set(err, -EINVAL, "--net: invalid MAC address '%s'", mac);
    }
    n->chain = malloc(sizeof(*n->chain));
    if (!n->chain) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int fd = open_tap(tap, err);
    if (fd < 0) {
        return fd;
    }
    n->tap_fd = fd;
    n->polling = true;
    return loop ? event_loop_add(loop, fd, EPOLLIN, tap_readable, n, err) : 0;
}

void virtio_net_destroy(struct virtio_net *n)
{
    if (n->tap_fd >= 0) {
        if (n->loop) {
            event_loop_remove(n->loop, n->tap_fd);
        }
        close(n->tap_fd);
        n->tap_fd = -1;
    }
    free(n->chain);
    n->chain = NULL;
    virtio_device_destroy(&n->dev);
}
