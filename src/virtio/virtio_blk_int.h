/* What virtio_blk.c shares with its queue threads (virtio_blk_queue_threads.c). */
#ifndef VIRTIO_VIRTIO_BLK_INT_H
#define VIRTIO_VIRTIO_BLK_INT_H

#include "virtio/virtio_blk.h"

/* Takes the next request off vq: 1, 0 (ring empty) or a negative errno with
 * err set (the guest broke the ring, or a request has no header or status
 * byte). Counts it. */
int virtio_blk_pop(struct virtio_blk *b, struct virtqueue *vq, struct virtq_chain *c, struct error *err);
/* Serves c here (the caches answer it, or there are no workers) or queues a
 * copy of it for the workers; *pushed: a completion awaits the interrupt
 * virtio_blk_notify_pass sends. */
void virtio_blk_dispatch(struct virtio_blk *b, int q, const struct virtq_chain *c, bool *pushed);
void virtio_blk_notify_pass(struct virtio_blk *b, int q);

/* Queue q was notified (dev.lock held): wake its thread. */
void virtio_blk_kick_queue_thread(struct virtio_blk *b, int q);
/* A queue thread's next spin (ns), from its last one: found says whether
 * the spin saw a request, slept_ns how long the sleep after a fruitless
 * spin lasted. As QEMU's adaptive polling: a request that came soon after
 * the spin gave up makes it longer, a long idle period ends it, a found
 * request keeps it. */
uint64_t virtio_blk_poll_adapt(uint64_t poll_ns, uint64_t max_ns, bool found, uint64_t slept_ns);
/* The queue threads finish their pass and leave. */
void virtio_blk_stop_queue_threads(struct virtio_blk *b);
/* Quiescing (dev.lock held, dev.quiesced set): the queue threads' spins
 * end and the driver's notifications are on again, as outside a spin;
 * nothing writes the rings until the resume, which looks at every queue. */
void virtio_blk_end_polls(struct virtio_blk *b);

#endif
