/* virtio-net (virtio 1.2 section 5.1) on a host tap device: one queue pair,
 * a fixed MAC, no offloads. The tap speaks the same 12-byte virtio-net
 * header (IFF_VNET_HDR), so frames move between guest buffers and the tap
 * with readv/writev and no copy. Receive runs in the main loop when the tap
 * is readable; it stops polling while the guest has no receive buffers. */
#ifndef VIRTIO_VIRTIO_NET_H
#define VIRTIO_VIRTIO_NET_H

#include <stdint.h>

#include "virtio/virtio_device.h"
#include "vmm/event_loop.h"

struct virtio_net {
    struct virtio_device dev;
    int tap_fd;
    struct event_loop *loop;
    bool polling;           /* the guest has receive buffers: watch the tap */
    bool quiesced;          /* the machine is paused: leave the tap alone */
    uint8_t mac[6];
    struct virtq_chain *chain;
    uint64_t rx_frames;
    uint64_t tx_frames;
};

/* Opens (attaches to) tap device `name`; mac may be NULL for a default. */
int virtio_net_init(struct virtio_net *n, const struct guest_memory *mem, struct event_loop *loop,
                    const char *tap, const char *mac, struct error *err);
void virtio_net_destroy(struct virtio_net *n);
int virtio_net_parse_mac(const char *s, uint8_t mac[6]);

#endif
