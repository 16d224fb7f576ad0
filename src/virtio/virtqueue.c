#include "virtio/virtqueue.h"

#include <errno.h>
#include <string.h>

void virtqueue_init(struct virtqueue *vq, uint16_t max_size)
{
    memset(vq, 0, sizeof(*vq));
    vq->max_size = max_size;
    vq->size = max_size;
    vq->msix_vector = 0xffff;
}

void virtqueue_reset(struct virtqueue *vq)
{
    virtqueue_init(vq, vq->max_size);
}

int virtqueue_enable(struct virtqueue *vq, const struct guest_memory *mem, bool event_idx, struct error *err)
{
    uint16_t n = vq->size;
    if (n == 0 || n > vq->max_size || (n & (n - 1))) {
        return error_set(err, -EINVAL, "queue size %u is not a power of two up to %u", n, vq->max_size);
    }
    if ((vq->desc_addr & 15) || (vq->avail_addr & 1) || (vq->used_addr & 3)) {
        return error_set(err, -EINVAL, "misaligned ring (desc 0x%llx avail 0x%llx used 0x%llx)",
                         (unsigned long long)vq->desc_addr, (unsigned long long)vq->avail_addr,
                         (unsigned long long)vq->used_addr);
    }
    vq->desc = guest_memory_ptr(mem, vq->desc_addr, 16ull * n);
    vq->avail = guest_memory_ptr(mem, vq->avail_addr, 6ull + 2ull * n);
    vq->used = guest_memory_ptr(mem, vq->used_addr, 6ull + 8ull * n);
    if (!vq->desc || !vq->avail || !vq->used) {
        vq->desc = NULL;
        vq->avail = NULL;
        vq->used = NULL;
        return error_set(err, -EINVAL, "ring outside guest memory (desc 0x%llx avail 0x%llx used 0x%llx)",
                         (unsigned long long)vq->desc_addr, (unsigned long long)vq->avail_addr,
                         (unsigned long long)vq->used_addr);
    }
    vq->mem = mem;
    vq->event_idx = event_idx;
    vq->last_avail_idx = 0;
    vq->used_idx = __atomic_load_n(&vq->used->idx, __ATOMIC_RELAXED);
    vq->signalled_used_valid = false;
    vq->ready = true;
    return 0;
}

static uint16_t *used_event(struct virtqueue *vq)
{
    return &vq->avail->ring[vq->size];
}

static uint16_t *avail_event(struct virtqueue *vq)
{
    return (uint16_t *)&vq->used->ring[vq->size];
}

bool virtqueue_has_work(struct virtqueue *vq)
{
    return vq->ready && __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->last_avail_idx;
}

static int add_buffer(struct virtqueue *vq, struct virtq_chain *c, const struct virtq_desc *d, int i,
                      struct error *err)
{
    uint64_t addr = d->addr;
    uint32_t len = d->len;
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    if (d->flags & VIRTQ_DESC_F_INDIRECT) {
        return error_set(err, -EINVAL, "descriptor %d is indirect, which was not offered", i);
    }
    if (!writable && c->nin) {
        return error_set(err, -EINVAL, "read-only descriptor %d after a writable one", i);
    }
    uint8_t *p = guest_memory_ptr(vq->mem, addr, len);
    if (!p) {
        return error_set(err, -EFAULT, "descriptor %d (0x%llx, %u bytes) lies outside guest memory", i,
                         (unsigned long long)addr, len);
    }
    c->bufs[c->nout + c->nin] = (struct virtq_buf){ p, len };
    if (writable) {
        guest_memory_mark_dirty(vq->mem, addr, len);   /* the device will write it */
        c->nin++;
        c->in_len += len;
    } else {
        c->nout++;
        c->out_len += len;
    }
    return 0;
}

int virtqueue_pop(struct virtqueue *vq, struct virtq_chain *c, struct error *err)
{
    if (!vq->ready) {
        return 0;
    }
    uint16_t avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
    if (avail_idx == vq->last_avail_idx) {
        return 0;
    }
    if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->size) {
        return error_set(err, -EINVAL, "available index %u runs %u entries ahead of %u in a ring of %u",
                         avail_idx, (uint16_t)(avail_idx - vq->last_avail_idx), vq->last_avail_idx, vq->size);
    }
    uint16_t head = __atomic_load_n(&vq->avail->ring[vq->last_avail_idx % vq->size], __ATOMIC_RELAXED);
    if (head >= vq->size) {
        return error_set(err, -EINVAL, "available ring names descriptor %u of %u", head, vq->size);
    }
    c->head = head;
    c->nout = c->nin = 0;
    c->out_len = c->in_len = 0;
    uint16_t i = head;
    for (int count = 0;; count++) {
        if (count >= vq->size || count >= VIRTQ_MAX_CHAIN) {
            return error_set(err, -ELOOP, "descriptor chain from %u is longer than the ring (a loop?)", head);
        }
        struct virtq_desc d;
        memcpy(&d, &vq->desc[i], sizeof(d));    /* one snapshot: the guest may change it under us */
        int ret = add_buffer(vq, c, &d, i, err);
        if (ret < 0) {
            return ret;
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT)) {
            break;
        }
        if (d.next >= vq->size) {
            return error_set(err, -EINVAL, "descriptor %u chains to %u of %u", i, d.next, vq->size);
        }
        i = d.next;
    }
    vq->last_avail_idx++;
    if (vq->event_idx) {
        __atomic_store_n(avail_event(vq), vq->last_avail_idx, __ATOMIC_RELAXED);
    }
    return 1;
}

void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
    if (!vq->ready || vq->size == 0) {
        return;     /* the driver took the queue away: nowhere to complete */
    }
    struct virtq_used_elem *e = &vq->used->ring[vq->used_idx % vq->size];
    __atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
    vq->used_idx++;
    __atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
}

void virtqueue_enable_notify(struct virtqueue *vq)
{
    if (!vq->ready) {
        return;
    }
    if (vq->event_idx) {
        __atomic_store_n(avail_event(vq), vq->last_avail_idx, __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(&vq->used->flags, 0, __ATOMIC_RELAXED);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void virtqueue_disable_notify(struct virtqueue *vq)
{
    if (vq->ready && !vq->event_idx) {
        __atomic_store_n(&vq->used->flags, VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
    }
}

bool virtqueue_should_notify(struct virtqueue *vq)
{
    if (!vq->ready) {
        return false;
    }
    /* The used index must be visible before we read the driver's wish. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx) {
        return !(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
    uint16_t old = vq->signalled_used;
    uint16_t now = vq->used_idx;
    bool valid = vq->signalled_used_valid;
    vq->signalled_used = now;
    vq->signalled_used_valid = true;
    if (!valid) {
        return true;
    }
    uint16_t event = __atomic_load_n(used_event(vq), __ATOMIC_RELAXED);
    /* vring_need_event(): did used_idx cross event since the last signal? */
    return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len)
{
    uint64_t done = 0;
    for (int i = 0; i < c->nout && done < len; i++) {
        const struct virtq_buf *b = &c->bufs[i];
        if (offset >= b->len) {
            offset -= b->len;
            continue;
        }
        uint64_t n = b->len - offset < len - done ? b->len - offset : len - done;
        memcpy((uint8_t *)dst + done, b->ptr + offset, n);
        done += n;
        offset = 0;
    }
    return done;
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t offset, const void *src, uint64_t len)
{
    uint64_t done = 0;
    for (int i = c->nout; i < c->nout + c->nin && done < len; i++) {
        const struct virtq_buf *b = &c->bufs[i];
        if (offset >= b->len) {
            offset -= b->len;
            continue;
        }
        uint64_t n = b->len - offset < len - done ? b->len - offset : len - done;
        memcpy(b->ptr + offset, (const uint8_t *)src + done, n);
        done += n;
        offset = 0;
    }
    return done;
}
