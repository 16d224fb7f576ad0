/* Pages of guest RAM the VMM itself writes (virtio devices filling the
 * guest's buffers). KVM's dirty log only sees writes by the guest, so diff
 * snapshots OR this bitmap with it. Marking is lock-free (atomic OR): the
 * main loop and vCPU threads may mark while the snapshot code harvests. */
#include <errno.h>
#include <stdlib.h>

#include "vmm/guest_memory.h"

#define PAGE_SHIFT 12

static size_t bitmap_words(uint64_t size)
{
    return (size_t)(((size >> PAGE_SHIFT) + 63) / 64);
}

int guest_memory_dirty_start(struct guest_memory *m, struct error *err)
{
    for (int i = 0; i < m->count; i++) {
        struct guest_region *r = &m->regions[i];
        if (r->vmm_dirty) {
            continue;
        }
        uint64_t *bits = calloc(bitmap_words(r->size), sizeof(uint64_t));
        if (!bits) {
            guest_memory_dirty_stop(m);
            return error_set(err, -ENOMEM, "out of memory for the dirty bitmap");
        }
        __atomic_store_n(&r->vmm_dirty, bits, __ATOMIC_RELEASE);
    }
    return 0;
}

void guest_memory_dirty_stop(struct guest_memory *m)
{
    for (int i = 0; i < m->count; i++) {
        uint64_t *bits = __atomic_exchange_n(&m->regions[i].vmm_dirty, NULL, __ATOMIC_ACQ_REL);
        free(bits);
    }
}

void guest_memory_mark_dirty(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
    if (!m || len == 0) {
        return;
    }
    for (int i = 0; i < m->count; i++) {
        const struct guest_region *r = &m->regions[i];
        uint64_t *bits = __atomic_load_n(&r->vmm_dirty, __ATOMIC_ACQUIRE);
        if (!bits || gpa >= r->gpa + r->size || gpa + len <= r->gpa) {
            continue;
        }
        uint64_t start = (gpa > r->gpa ? gpa - r->gpa : 0) >> PAGE_SHIFT;
        uint64_t end_byte = gpa + len - r->gpa;
        uint64_t end = ((end_byte < r->size ? end_byte : r->size) + (1u << PAGE_SHIFT) - 1) >> PAGE_SHIFT;
        for (uint64_t p = start; p < end; p++) {
            __atomic_fetch_or(&bits[p / 64], 1ull << (p % 64), __ATOMIC_RELAXED);
        }
    }
}

void guest_memory_dirty_harvest(struct guest_memory *m, int region, uint64_t *out)
{
    struct guest_region *r = &m->regions[region];
    uint64_t *bits = __atomic_load_n(&r->vmm_dirty, __ATOMIC_ACQUIRE);
    if (!bits) {
        return;
    }
    size_t n = bitmap_words(r->size);
    for (size_t w = 0; w < n; w++) {
        out[w] |= __atomic_exchange_n(&bits[w], 0, __ATOMIC_ACQ_REL);
    }
}
