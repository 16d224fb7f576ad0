/* A minimal polling virtio driver for the test guest: one transport-neutral
 * device handle over virtio-mmio or modern virtio-pci, split queues, and a
 * synchronous "submit a chain and wait for it" call. */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdint.h>

#define GVQ_SIZE 16
#define GVQ_MAX_QUEUES 2

struct gvq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct gvq {
    uint16_t index;
    uint16_t size;
    struct gvq_desc *desc;
    volatile uint16_t *avail;   /* flags, idx, ring[size], used_event */
    volatile uint8_t *used;     /* flags, idx, ring[size] of {id, len}, avail_event */
    uint16_t avail_idx;
    uint16_t last_used;
    uintptr_t notify_addr;
};

enum gvt { GV_MMIO, GV_PCI };

struct gvdev {
    enum gvt transport;
    uint32_t device_id;
    uintptr_t base;             /* mmio window */
    uintptr_t common, isr, device, notify;     /* pci structures */
    uint32_t notify_mult;
    struct gvq q[GVQ_MAX_QUEUES];
    int nq;
};

/* Buffers of one request: out (device reads) first, then in (device writes). */
struct gvbuf {
    void *addr;
    uint32_t len;
    int writable;
};

/* Discovery: returns the number of devices found (at most max). */
int virtio_find_mmio(const char *cmdline, struct gvdev *out, int max);
int virtio_find_pci(struct gvdev *out, int max);
/* Feature negotiation and queue setup; 0 on success. */
int virtio_init(struct gvdev *d, int nqueues);
/* The same, accepting the device-specific features of wanted_lo it offers. */
int virtio_init_features(struct gvdev *d, int nqueues, uint32_t wanted_lo);
/* Feature bits 0-31 the device offers. */
uint32_t virtio_features_lo(struct gvdev *d);
uint8_t virtio_status(struct gvdev *d);
/* Device config space. */
uint32_t virtio_config32(struct gvdev *d, uint32_t off);
/* Submits one chain on queue q and polls until the device returns it;
 * returns the used length, or -1 on timeout. */
int virtio_submit(struct gvdev *d, int q, const struct gvbuf *bufs, int n);
/* Submits nchains chains at once (chain i is counts[i] buffers of bufs, in
 * order) with one notify, and waits for all; lens[i] gets each used length.
 * Returns 0, or -1 on timeout. */
int virtio_submit_many(struct gvdev *d, int q, const struct gvbuf *bufs, const int *counts, int nchains,
                       int *lens);
/* Makes one chain available on queue q without waiting (one at a time). */
void virtio_post(struct gvdev *d, int q, const struct gvbuf *bufs, int n);
/* Polls queue q for a returned chain for up to max_cycles TSC cycles;
 * returns the used length or -1. */
int virtio_poll(struct gvdev *d, int q, uint64_t max_cycles);
const char *virtio_transport_name(const struct gvdev *d);

#endif
