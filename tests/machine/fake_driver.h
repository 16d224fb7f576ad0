/* A virtio device brought up without a driver or a real transport, for the
 * tests and benchmarks that drive its rings by hand (virtio-blk's inline
 * serving test, bench/blk_device_bench.c). */
#ifndef TESTS_MACHINE_FAKE_DRIVER_H
#define TESTS_MACHINE_FAKE_DRIVER_H

#include "virtio/virtio_device.h"

/* Leaves d as a driver would (features accepted, DRIVER_OK) with queue q of
 * `size` entries at the given guest addresses, interrupts going to t. */
int fake_driver_start(struct virtio_device *d, const struct virtio_transport_ops *t, void *opaque, int q,
                      uint16_t size, uint64_t desc, uint64_t avail, uint64_t used, struct error *err);

#endif
