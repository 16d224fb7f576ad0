/* An address bus (port I/O or MMIO): devices claim ranges and get read/write
 * callbacks with the offset inside their range. vCPU threads dispatch their
 * exits here; registration may happen while they run (PCI BAR moves), so the
 * table is guarded by a read-write lock. */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef uint64_t (*bus_read_fn)(void *opaque, uint64_t offset, unsigned size);
typedef void (*bus_write_fn)(void *opaque, uint64_t offset, unsigned size, uint64_t value);

struct bus_range {
    uint64_t base;
    uint64_t len;
    bus_read_fn read;
    bus_write_fn write;
    void *opaque;
    const char *name;
};

struct bus {
    const char *name;
    pthread_rwlock_t lock;
    struct bus_range *ranges;
    int count;
    int cap;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);
/* -EBUSY when the range overlaps one already registered. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_read_fn read, bus_write_fn write,
                 void *opaque, const char *name, struct error *err);
/* Removes the range starting at base owned by opaque; false when none. */
bool bus_unregister(struct bus *b, uint64_t base, void *opaque);
/* Dispatches one access; false when nobody claims addr (reads then give all ones). */
bool bus_read(struct bus *b, uint64_t addr, void *data, unsigned size);
bool bus_write(struct bus *b, uint64_t addr, const void *data, unsigned size);

#endif
