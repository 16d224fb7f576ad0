#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b, const char *name)
{
    memset(b, 0, sizeof(*b));
    b->name = name;
    pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
    free(b->ranges);
    pthread_rwlock_destroy(&b->lock);
    b->ranges = NULL;
    b->count = b->cap = 0;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_read_fn read, bus_write_fn write,
                 void *opaque, const char *name, struct error *err)
{
    if (len == 0 || base + len < base) {
        return error_set(err, -EINVAL, "%s bus: bad range for %s", b->name, name);
    }
    pthread_rwlock_wrlock(&b->lock);
    for (int i = 0; i < b->count; i++) {
        struct bus_range *r = &b->ranges[i];
        if (base < r->base + r->len && r->base < base + len) {
            pthread_rwlock_unlock(&b->lock);
            return error_set(err, -EBUSY, "%s bus: %s at 0x%llx overlaps %s at 0x%llx", b->name, name,
                             (unsigned long long)base, r->name, (unsigned long long)r->base);
        }
    }
    if (b->count == b->cap) {
        int cap = b->cap ? b->cap * 2 : 16;
        struct bus_range *n = realloc(b->ranges, (size_t)cap * sizeof(*n));
        if (!n) {
            pthread_rwlock_unlock(&b->lock);
            return error_set(err, -ENOMEM, "out of memory");
        }
        b->ranges = n;
        b->cap = cap;
    }
    b->ranges[b->count++] = (struct bus_range){ base, len, read, write, opaque, name };
    pthread_rwlock_unlock(&b->lock);
    return 0;
}

bool bus_unregister(struct bus *b, uint64_t base, void *opaque)
{
    bool found = false;
    pthread_rwlock_wrlock(&b->lock);
    for (int i = 0; i < b->count; i++) {
        if (b->ranges[i].base == base && b->ranges[i].opaque == opaque) {
            b->ranges[i] = b->ranges[--b->count];
            found = true;
            break;
        }
    }
    pthread_rwlock_unlock(&b->lock);
    return found;
}

/* Copies the range out under the lock so the callback runs without it
 * (a callback may itself move ranges, e.g. a BAR write). */
static bool lookup(struct bus *b, uint64_t addr, unsigned size, struct bus_range *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&b->lock);
    for (int i = 0; i < b->count; i++) {
        struct bus_range *r = &b->ranges[i];
        if (addr >= r->base && addr - r->base + size <= r->len) {
            *out = *r;
            found = true;
            break;
        }
    }
    pthread_rwlock_unlock(&b->lock);
    return found;
}

bool bus_read(struct bus *b, uint64_t addr, void *data, unsigned size)
{
    struct bus_range r;
    uint64_t v = ~0ull;
    bool found = size <= 8 && lookup(b, addr, size, &r);
    if (found && r.read) {
        v = r.read(r.opaque, addr - r.base, size);
    }
    for (unsigned i = 0; i < size && i < 8; i++) {
        ((uint8_t *)data)[i] = (uint8_t)(v >> (8 * i));
    }
    return found;
}

bool bus_write(struct bus *b, uint64_t addr, const void *data, unsigned size)
{
    struct bus_range r;
    if (size > 8 || !lookup(b, addr, size, &r)) {
        return false;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++) {
        v |= (uint64_t)((const uint8_t *)data)[i] << (8 * i);
    }
    if (r.write) {
        r.write(r.opaque, addr - r.base, size, v);
    }
    return true;
}
