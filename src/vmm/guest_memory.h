/* Guest RAM: one memfd per region, mapped shared, so it can later be dumped,
 * mapped back or handed to another process. Below 4 GiB RAM stops at the PCI
 * hole; the rest lives above 4 GiB. */
#ifndef VMM_GUEST_MEMORY_H
#define VMM_GUEST_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define GUEST_PCI_HOLE_START 0xc0000000ull
#define GUEST_4G             0x100000000ull
#define GUEST_MEM_MAX_REGIONS 4

struct guest_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;
    int memfd;
    uint64_t *vmm_dirty;    /* pages the VMM wrote while tracking (NULL: off) */
};

struct guest_memory {
    uint64_t ram_size;
    int count;
    struct guest_region regions[GUEST_MEM_MAX_REGIONS];
};

int guest_memory_create(struct guest_memory *m, uint64_t ram_size, struct error *err);
void guest_memory_destroy(struct guest_memory *m);
/* Host pointer to [gpa, gpa+len) when it lies wholly inside one region,
 * NULL otherwise: every guest-supplied address goes through this. */
void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);
/* Bytes of RAM below the PCI hole. */
uint64_t guest_memory_low_size(const struct guest_memory *m);
int guest_memory_write(const struct guest_memory *m, uint64_t gpa, const void *src, size_t len,
                       struct error *err);

/* Dirty tracking of the VMM's own writes into guest RAM (virtio devices),
 * which KVM's dirty log cannot see; diff snapshots need both
 * (guest_memory_dirty.c). */
int guest_memory_dirty_start(struct guest_memory *m, struct error *err);
void guest_memory_dirty_stop(struct guest_memory *m);
void guest_memory_mark_dirty(const struct guest_memory *m, uint64_t gpa, uint64_t len);
/* ORs region i's bits (one per 4 KiB page) into out and clears them. */
void guest_memory_dirty_harvest(struct guest_memory *m, int region, uint64_t *out);

#endif
