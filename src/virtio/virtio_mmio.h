/* The virtio-mmio transport (virtio 1.2 section 4.2, version 2 registers).
 * Each device has a 4 KiB window and one interrupt line; queue notifies are
 * ioeventfds (one per queue, matched on the queue index) served by the main
 * loop, interrupts go through an irqfd. Where KVM is not there (unit tests)
 * both fall back to direct calls. */
#ifndef VIRTIO_VIRTIO_MMIO_H
#define VIRTIO_VIRTIO_MMIO_H

#include <stdint.h>

#include "util/error.h"
#include "virtio/virtio_device.h"
#include "vmm/event_loop.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

#define VIRTIO_MMIO_SIZE 0x1000
/* The layout cowvisor gives its guests: device i at base + i * 4 KiB on GSI
 * first_gsi + i (announced to Linux on the command line). */
#define VIRTIO_MMIO_BASE 0xd0000000ull
#define VIRTIO_MMIO_FIRST_GSI 16

struct virtio_mmio {
    struct virtio_device *dev;
    struct vm *vm;                  /* NULL in unit tests */
    struct event_loop *loop;
    uint64_t base;
    struct irq_line irq;
    int irqfd;
    int notify_fd[VIRTIO_MAX_QUEUES];
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint32_t queue_sel;
    uint32_t interrupt_status;
};

int virtio_mmio_create(struct virtio_mmio *t, struct virtio_device *dev, struct vm *vm, struct event_loop *loop,
                       uint64_t base, struct irq_line irq, struct error *err);
void virtio_mmio_destroy(struct virtio_mmio *t);
/* The transport's own registers back to power-on (the device resets apart). */
void virtio_mmio_reset(struct virtio_mmio *t);
uint64_t virtio_mmio_read(void *opaque, uint64_t offset, unsigned size);
void virtio_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

void virtio_mmio_save(struct virtio_mmio *t, struct state_buf *b);
int virtio_mmio_load(struct virtio_mmio *t, struct state_buf *b, struct error *err);

#endif
