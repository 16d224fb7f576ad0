/* Split virtqueues (virtio 1.2, section 2.7) as a device sees them, with
 * VIRTIO_F_EVENT_IDX. Everything the guest wrote is distrusted: addresses go
 * through guest_memory_ptr, indices and chain lengths are bounded, and a
 * violation is reported as an error (the device then enters NEEDS_RESET)
 * instead of being followed. No indirect descriptors are offered. */
#ifndef VIRTIO_VIRTQUEUE_H
#define VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "vmm/guest_memory.h"

#define VIRTQ_MAX_SIZE 1024
#define VIRTQ_MAX_CHAIN 1024

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_USED_F_NO_NOTIFY 1
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];    /* size entries, then used_event */
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[];  /* size entries, then avail_event */
};

struct virtqueue {
    /* As the driver configured them. */
    uint16_t size;
    uint16_t max_size;
    bool ready;
    uint64_t desc_addr;
    uint64_t avail_addr;
    uint64_t used_addr;
    uint16_t msix_vector;
    /* Device side. */
    bool event_idx;
    uint16_t last_avail_idx;
    uint16_t used_idx;
    uint16_t signalled_used;
    bool signalled_used_valid;
    /* Resolved when the queue is enabled. */
    const struct guest_memory *mem;
    struct virtq_desc *desc;
    struct virtq_avail *avail;
    struct virtq_used *used;
};

/* One guest buffer of a chain, already translated. */
struct virtq_buf {
    uint8_t *ptr;
    uint32_t len;
};

struct virtq_chain {
    uint16_t head;
    int nout;               /* device-readable buffers come first */
    int nin;                /* then device-writable ones */
    uint64_t out_len;
    uint64_t in_len;
    struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

void virtqueue_init(struct virtqueue *vq, uint16_t max_size);
/* Back to the reset state (not ready, addresses cleared). */
void virtqueue_reset(struct virtqueue *vq);
/* Checks size and ring placement and maps the rings; -EINVAL names the problem. */
int virtqueue_enable(struct virtqueue *vq, const struct guest_memory *mem, bool event_idx, struct error *err);
/* 1: a chain was taken; 0: the ring is empty; <0: the guest broke the ring. */
int virtqueue_pop(struct virtqueue *vq, struct virtq_chain *chain, struct error *err);
/* Returns a chain to the driver with len bytes written into its in-buffers. */
void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt for what was pushed since the last one. */
bool virtqueue_should_notify(struct virtqueue *vq);
/* Tells the driver to notify us again from the current avail index on. */
void virtqueue_enable_notify(struct virtqueue *vq);
/* While the device polls the ring: the driver need not notify (without
 * EVENT_IDX; with it, as QEMU, the next request may still notify once). */
void virtqueue_disable_notify(struct virtqueue *vq);
bool virtqueue_has_work(struct virtqueue *vq);

/* Copies between a chain's buffers and flat memory. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t offset, const void *src, uint64_t len);

#endif
