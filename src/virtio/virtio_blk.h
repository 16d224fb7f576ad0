/* virtio-blk (virtio 1.2 section 5.2) on a blockdev: read, write, flush,
 * discard, write-zeroes, get-id, read-only disks. The main loop takes
 * requests off the queue; a few worker threads serve them in parallel
 * (several requests in flight) straight between guest memory and the block
 * layer, and complete them in whatever order they finish. Reads the page
 * cache answers, and writes it takes in place, are served by the main loop
 * itself (no worker wake-up). */
#ifndef VIRTIO_VIRTIO_BLK_H
#define VIRTIO_VIRTIO_BLK_H

#include "block/blockdev.h"
#include "virtio/virtio_device.h"

#define VIRTIO_BLK_QUEUE_SIZE 256

#define VIRTIO_BLK_WORKERS 4

/* Request queues (VIRTIO_BLK_F_MQ): 1 .. VIRTIO_MAX_QUEUES; with more than
 * one the driver may post on any of them (Linux: one per vCPU), and each
 * request completes on the queue it came from, with that queue's interrupt
 * (its own MSI-X vector on virtio-pci). */
#define VIRTIO_BLK_MAX_QUEUES VIRTIO_MAX_QUEUES

struct blk_request;
struct blk_queue_thread;

/* What the guest asked of the disk, for QMP's query-blockstats; updated
 * with atomics by whichever thread serves a request. */
struct virtio_blk_stats {
    uint64_t rd_bytes, wr_bytes;
    uint64_t rd_ops, wr_ops, flush_ops, unmap_ops;
    uint64_t failed_rd_ops, failed_wr_ops, failed_flush_ops, failed_unmap_ops;
    uint64_t rd_total_ns, wr_total_ns, flush_total_ns, unmap_total_ns;
    uint64_t last_ns;                /* CLOCK_MONOTONIC of the last request */
};

struct virtio_blk {
    struct virtio_device dev;
    struct blockdev *bdev;
    bool read_only;
    char serial[20];
    struct virtq_chain *chain;      /* scratch for the chain being taken */
    uint64_t requests;
    uint64_t cached_reads;          /* of those, served without a worker */
    uint64_t inline_writes;         /* the same for writes the page cache took */
    uint64_t inline_unflushed;      /* bytes written inline since the last flush (atomic) */
    struct virtio_blk_stats stats;
    /* Each queue's completions (the used ring and its interrupt) under the
     * queue's own lock, so that workers finishing requests neither wait for
     * the device lock (held while the main loop takes requests off a ring)
     * nor for each other across queues. The rings' avail side stays the
     * main loop's, under dev.lock. */
    pthread_mutex_t queue_lock[VIRTIO_BLK_MAX_QUEUES];
    /* Worker pool: pending requests, in-flight count, stop, under pool_lock. */
    pthread_mutex_t pool_lock;
    pthread_t workers[VIRTIO_BLK_WORKERS];
    int nworkers;
    pthread_cond_t work;            /* a request was queued, or stop */
    pthread_cond_t idle;            /* in_flight dropped to 0 */
    struct blk_request *pending_head;
    struct blk_request *pending_tail;
    int in_flight;
    bool stop;
    /* With virtio_blk_serve_queues_in_threads: one thread per queue. */
    struct blk_queue_thread *queue_threads;
    bool queue_threads_stop;
};

int virtio_blk_init(struct virtio_blk *b, const struct guest_memory *mem, struct blockdev *bdev, bool read_only,
                    const char *serial, int num_queues, struct error *err);
/* The queues a disk gets unless told: one per vCPU, as QEMU's num-queues. */
int virtio_blk_default_queues(int vcpus);
/* Before the device is used: every request is served and completed on
 * the thread that notified the queue, in ring order (record/replay: no
 * completion may race the vCPU). */
void virtio_blk_make_synchronous(struct virtio_blk *b);
/* Before the device is used: each queue is served by a thread of its own
 * (QEMU's iothread, one per queue) instead of the thread that notified it
 * (the main loop, or a vCPU without ioeventfd). */
/* poll_max_ns: after a pass, a queue's thread spins on the avail ring for up
 * to this long before it sleeps on the notify eventfd (QEMU's iothread
 * poll-max-ns; adaptive below it; 0: never spins). */
#define VIRTIO_BLK_POLL_MAX_NS_DEFAULT 32768
int virtio_blk_serve_queues_in_threads(struct virtio_blk *b, uint64_t poll_max_ns, struct error *err);
/* The eventfd a queue's thread waits on, for the transport to bind to the
 * queue's notify address (KVM ioeventfd); -1 without queue threads. */
int virtio_blk_queue_notify_fd(struct virtio_blk *b, int q);
void virtio_blk_destroy(struct virtio_blk *b);
/* A consistent-enough copy of the counters (each read atomically). */
void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *out);
/* Waits (with b->dev.lock held, so that the main loop starts no request)
 * until no request is in flight. */
void virtio_blk_drain_locked(struct virtio_blk *b);

#endif
