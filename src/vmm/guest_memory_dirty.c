/* Dirty page tracking of guest memory: KVM's dirty log sees the guest's
 * writes, a bitmap of our own sees the VMM's (virtio devices filling the
 * guest's buffers), and diff snapshots (later: migration) need both.
 * Marking is lock-free (atomic OR): the main loop and vCPU threads may
 * mark while the snapshot code harvests. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/guest_memory.h"

#define PAGE_SHIFT 12

static size_t bitmap_words(uint64_t size)
{
    return (size_t)(((size >> PAGE_SHIFT) + 63) / 64);
}

/* ---- bitmaps ---- */

int guest_bitmap_init(struct guest_bitmap *b, const struct guest_memory *m, struct error *err)
{
    memset(b, 0, sizeof(*b));
    b->count = m->count;
    for (int i = 0; i < m->count; i++) {
        size_t n = bitmap_words(m->regions[i].size);
        b->pages[i] = m->regions[i].size >> PAGE_SHIFT;
        b->bits[i] = calloc(n ? n : 1, sizeof(uint64_t));
        if (!b->bits[i]) {
            guest_bitmap_free(b);
            return error_set(err, -ENOMEM, "out of memory for a page bitmap");
        }
    }
    return 0;
}

void guest_bitmap_free(struct guest_bitmap *b)
{
    for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
        free(b->bits[i]);
        b->bits[i] = NULL;
    }
}

uint64_t guest_bitmap_count(const struct guest_bitmap *b)
{
    uint64_t n = 0;
    for (int i = 0; i < b->count; i++) {
        for (size_t w = 0; w < (b->pages[i] + 63) / 64; w++) {
            n += (uint64_t)__builtin_popcountll(b->bits[i][w]);
        }
    }
    return n;
}

/* ---- the VMM's own writes ---- */

static void vmm_bits_stop(struct guest_memory *m)
{
    for (int i = 0; i < m->count; i++) {
        uint64_t *bits = __atomic_exchange_n(&m->regions[i].vmm_dirty, NULL, __ATOMIC_ACQ_REL);
        free(bits);
    }
}

static int vmm_bits_start(struct guest_memory *m, struct error *err)
{
    for (int i = 0; i < m->count; i++) {
        struct guest_region *r = &m->regions[i];
        if (r->vmm_dirty) {
            continue;
        }
        uint64_t *bits = calloc(bitmap_words(r->size), sizeof(uint64_t));
        if (!bits) {
            vmm_bits_stop(m);
            return error_set(err, -ENOMEM, "out of memory for the dirty bitmap");
        }
        __atomic_store_n(&r->vmm_dirty, bits, __ATOMIC_RELEASE);
    }
    return 0;
}

static void vmm_bits_harvest(struct guest_memory *m, int region, uint64_t *out)
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

/* ---- KVM's dirty log ---- */

static int kvm_log_harvest(struct guest_memory *m, int i, uint64_t *out, struct error *err)
{
    size_t n = bitmap_words(m->regions[i].size);
    uint64_t *bits = calloc(n ? n : 1, sizeof(uint64_t));
    if (!bits) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    struct kvm_dirty_log log = { .slot = (uint32_t)i, .dirty_bitmap = bits };
    if (ioctl(m->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
        int e = -errno;
        free(bits);
        return error_set_errno(err, e, "KVM_GET_DIRTY_LOG (slot %d)", i);
    }
    for (size_t w = 0; w < n; w++) {
        out[w] |= bits[w];
    }
    free(bits);
    return 0;
}

/* ---- the interface ---- */

int guest_memory_dirty_harvest(struct guest_memory *m, struct guest_bitmap *b, struct error *err)
{
    for (int i = 0; i < m->count; i++) {
        if (m->vm_fd >= 0) {
            int ret = kvm_log_harvest(m, i, b->bits[i], err);
            if (ret < 0) {
                return ret;
            }
        }
        vmm_bits_harvest(m, i, b->bits[i]);
    }
    return 0;
}

int guest_memory_dirty_start(struct guest_memory *m, struct error *err)
{
    int ret = vmm_bits_start(m, err);
    for (int i = 0; ret == 0 && m->vm_fd >= 0 && i < m->count; i++) {
        ret = guest_memory_set_slot(m, i, true, err);
    }
    if (ret < 0) {
        return ret;
    }
    m->dirty_tracking = true;
    /* Forget what was logged before (re-enabling may keep old bits). */
    struct guest_bitmap scratch;
    if ((ret = guest_bitmap_init(&scratch, m, err)) < 0) {
        return ret;
    }
    ret = guest_memory_dirty_harvest(m, &scratch, err);
    guest_bitmap_free(&scratch);
    return ret;
}

void guest_memory_dirty_stop(struct guest_memory *m)
{
    if (m->dirty_tracking && m->vm_fd >= 0) {
        for (int i = 0; i < m->count; i++) {
            guest_memory_set_slot(m, i, false, NULL);
        }
    }
    m->dirty_tracking = false;
    vmm_bits_stop(m);
}
