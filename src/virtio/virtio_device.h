/* The transport-independent half of a virtio 1.2 device: feature
 * negotiation, status, queues, config space, and the NEEDS_RESET state a
 * device enters when the guest breaks the rules. Transports (virtio_mmio.c,
 * virtio_pci.c) translate register accesses into these calls and deliver
 * the device's interrupts. Queue processing runs in the main loop when a
 * queue's notify eventfd fires; all of it happens under the device lock. */
#ifndef VIRTIO_VIRTIO_DEVICE_H
#define VIRTIO_VIRTIO_DEVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "util/error.h"
#include "virtio/virtqueue.h"
#include "vmm/guest_memory.h"

#define VIRTIO_MAX_QUEUES 8

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

struct virtio_device;

struct virtio_device_ops {
    /* Process what the driver made available on queue q. */
    void (*queue_notify)(struct virtio_device *d, int q);
    /* Device config space (little-endian); out-of-range bytes read as 0. */
    void (*config_read)(struct virtio_device *d, uint32_t offset, void *buf, unsigned len);
    void (*config_write)(struct virtio_device *d, uint32_t offset, const void *buf, unsigned len);
    /* The driver reset the device. */
    void (*reset)(struct virtio_device *d);
    /* Finish the requests in flight (with d->lock held), for devices that
     * complete them off d->lock: a queue is about to change under them. */
    void (*drain)(struct virtio_device *d);
    /* The driver set DRIVER_OK: start background work (e.g. a tap reader). */
    void (*activate)(struct virtio_device *d);
    void (*destroy)(struct virtio_device *d);
    /* The machine pauses: finish work in flight and stop taking host input
     * (with d->lock held); resume undoes it. */
    void (*quiesce)(struct virtio_device *d);
    void (*resume)(struct virtio_device *d);
    /* An eventfd the device reads itself for queue q's notifies (its own
     * thread serves the queue), or -1: the transport binds it to the
     * notify address in place of one the main loop polls. Optional. */
    int (*notify_fd)(struct virtio_device *d, int q);
    void (*save)(struct virtio_device *d, struct state_buf *b);
    int (*load)(struct virtio_device *d, struct state_buf *b, struct error *err);
    /* How many queues a driver that negotiated `features` can use, for a
     * device whose queue count depends on a feature (virtio-blk's MQ):
     * state saved by a device with fewer queues loads when the driver could
     * not have used more. NULL: the count must match. */
    int (*queues_usable)(const struct virtio_device *d, uint64_t features);
};

/* What the transport provides to the device. */
struct virtio_transport_ops {
    void (*notify_queue)(void *t, int q);       /* used-buffer interrupt */
    void (*notify_config)(void *t);             /* config-change interrupt */
};

struct virtio_device {
    const char *name;               /* points at label */
    char label[64];                 /* "virtio-blk@pci:00:02.0": names the device in log lines */
    uint32_t device_id;
    const struct virtio_device_ops *ops;
    const struct guest_memory *mem;
    pthread_mutex_t lock;

    uint64_t host_features;
    uint64_t guest_features;
    uint8_t status;
    uint32_t config_generation;
    int nqueues;
    struct virtqueue vqs[VIRTIO_MAX_QUEUES];
    /* Paused with its machine: notified requests are left in the rings
     * (a migration sends them as they are) and the queues notified
     * meanwhile (a bit each) are served at resume. */
    bool quiesced;
    uint64_t notified_while_quiesced;

    const struct virtio_transport_ops *transport;
    void *transport_opaque;
};

void virtio_device_init(struct virtio_device *d, const char *name, uint32_t device_id,
                        const struct virtio_device_ops *ops, const struct guest_memory *mem,
                        uint64_t features, int nqueues, uint16_t queue_size);
void virtio_device_destroy(struct virtio_device *d);
/* Appends where the device sits ("@mmio:0xd0000000") to its name in logs. */
void virtio_device_set_location(struct virtio_device *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void virtio_device_set_transport(struct virtio_device *d, const struct virtio_transport_ops *ops, void *opaque);

/* Driver-side operations (called by transports with d->lock held). */
void virtio_device_set_status(struct virtio_device *d, uint8_t status);
void virtio_device_set_driver_features(struct virtio_device *d, unsigned word, uint32_t value);
uint32_t virtio_device_get_features(struct virtio_device *d, unsigned word);
/* Enables queue q with the addresses the driver gave; may enter NEEDS_RESET. */
void virtio_device_queue_enable(struct virtio_device *d, int q);
/* Disables queue q (virtio-mmio QueueReady = 0) once nothing is in flight
 * on it, so its size and addresses may change. */
void virtio_device_queue_disable(struct virtio_device *d, int q);
void virtio_device_reset(struct virtio_device *d);

/* For device implementations: a broken guest puts the device into
 * NEEDS_RESET with one log line; it ignores its queues until reset. */
void virtio_device_fail(struct virtio_device *d, const struct error *why);
/* The device's configuration changed (e.g. a disk's capacity): a new
 * config generation and, once the driver is up, a config-change
 * interrupt. Called with d->lock held. */
void virtio_device_config_changed(struct virtio_device *d);
bool virtio_device_running(const struct virtio_device *d);
/* Pushes and interrupts when the driver asked for it. */
void virtio_device_complete(struct virtio_device *d, int q, uint16_t head, uint32_t len);
/* The same in two steps, for a batch: pushes without an interrupt, then one
 * interrupt for everything pushed since the last (if the driver wants it). */
void virtio_device_push(struct virtio_device *d, int q, uint16_t head, uint32_t len);
void virtio_device_notify_used(struct virtio_device *d, int q);
/* Called from the main loop when queue q was notified. */
void virtio_device_handle_notify(struct virtio_device *d, int q);

/* Pause and resume the device's own work (take d->lock). */
void virtio_device_quiesce(struct virtio_device *d);
void virtio_device_resume(struct virtio_device *d);
/* After a load: serve what the guest posted before the save and the old
 * process never saw notified. */
void virtio_device_kick_queues(struct virtio_device *d);
/* The layout of a virtio device's state on its transport (what
 * virtio_mmio_save and virtio_pci_save write, this part included). */
#define VIRTIO_STATE_VERSION 1
void virtio_device_save(struct virtio_device *d, struct state_buf *b);
int virtio_device_load(struct virtio_device *d, struct state_buf *b, struct error *err);

#endif
