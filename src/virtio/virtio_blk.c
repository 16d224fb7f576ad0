#include "virtio/virtio_blk.h"
#include "virtio/virtio_blk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/sandbox.h"
#include "vmm/host_input.h"

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
enum { S_OK = 0, S_IOERR = 1, S_UNSUPP = 2 };

#define SECTOR 512u
#define MAX_DISCARD_SECTORS (1u << 22)
#define MAX_SEGMENTS 64
#define HEADER_SIZE 16

struct blk_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct blk_segment {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

static struct virtio_blk *to_blk(struct virtio_device *d)
{
    return (struct virtio_blk *)d;
}

/* A device can be left without an image (a failed switch to an overlay or
 * a job's new top, where the old image could not be reopened either): then
 * nothing is in range and every request fails, as with no medium. */
static bool in_range(struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
    if (!b->bdev) {
        return false;
    }
    uint64_t size = blockdev_size(b->bdev);
    return sector <= size / SECTOR && bytes <= size - sector * SECTOR;
}

/* Moves data between the chain's buffers (after the header, before the
 * status byte) and the disk, buffer by buffer, without a bounce copy.
 * nowait: see blockdev_pread_nowait and blockdev_pwrite_nowait. */
static int transfer(struct virtio_blk *b, const struct virtq_chain *c, uint64_t off, bool write, bool nowait,
                    uint64_t *done, struct error *err)
{
    int first = write ? 0 : c->nout, end = write ? c->nout : c->nout + c->nin;
    uint64_t skip = write ? HEADER_SIZE : 0;
    uint64_t total = write ? c->out_len - HEADER_SIZE : c->in_len - 1;
    *done = 0;
    for (int i = first; i < end && *done < total; i++) {
        uint64_t len = c->bufs[i].len, start = 0;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        start = skip;
        skip = 0;
        len -= start;
        if (len > total - *done) {
            len = total - *done;
        }
        uint8_t *p = c->bufs[i].ptr + start;
        int ret = write ? (nowait ? blockdev_pwrite_nowait(b->bdev, off + *done, p, len)
                                  : blockdev_pwrite(b->bdev, off + *done, p, len, err))
                        : (nowait ? blockdev_pread_nowait(b->bdev, off + *done, p, len)
                                  : blockdev_pread(b->bdev, off + *done, p, len, err));
        if (ret < 0) {
            return ret;
        }
        *done += len;
    }
    return 0;
}

static uint8_t discard_or_zero(struct virtio_blk *b, const struct virtq_chain *c, bool zero, struct error *err)
{
    uint64_t n = (c->out_len - HEADER_SIZE) / sizeof(struct blk_segment);
    if (n == 0 || n > MAX_SEGMENTS) {
        return S_IOERR;
    }
    for (uint64_t i = 0; i < n; i++) {
        struct blk_segment s;
        virtq_chain_read(c, HEADER_SIZE + i * sizeof(s), &s, sizeof(s));
        uint64_t bytes = (uint64_t)s.num_sectors * SECTOR;
        if (s.num_sectors > MAX_DISCARD_SECTORS || !in_range(b, s.sector, bytes) || (s.flags & ~1u) ||
            (!zero && s.flags)) {
            return S_UNSUPP;
        }
        int ret = zero ? blockdev_pwrite_zeroes(b->bdev, s.sector * SECTOR, bytes,
                                                (s.flags & 1) ? BDEV_ZERO_MAY_UNMAP : 0, err)
                       : blockdev_discard(b->bdev, s.sector * SECTOR, bytes, err);
        if (ret < 0) {
            return S_IOERR;
        }
    }
    return S_OK;
}

static void add(uint64_t *counter, uint64_t v)
{
    __atomic_fetch_add(counter, v, __ATOMIC_RELAXED);
}

/* Counts a served request by kind, as QEMU's block accounting does. */
static void account(struct virtio_blk *b, uint32_t type, uint64_t bytes, uint8_t status, uint64_t t0)
{
    struct virtio_blk_stats *st = &b->stats;
    uint64_t now = monotonic_ns(), ns = now - t0;
    bool failed = status != S_OK;
    __atomic_store_n(&st->last_ns, now, __ATOMIC_RELAXED);
    if (type == T_IN) {
        add(failed ? &st->failed_rd_ops : &st->rd_ops, 1);
        add(&st->rd_bytes, failed ? 0 : bytes);
        add(&st->rd_total_ns, ns);
    } else if (type == T_OUT) {
        add(failed ? &st->failed_wr_ops : &st->wr_ops, 1);
        add(&st->wr_bytes, failed ? 0 : bytes);
        add(&st->wr_total_ns, ns);
    } else if (type == T_FLUSH) {
        add(failed ? &st->failed_flush_ops : &st->flush_ops, 1);
        add(&st->flush_total_ns, ns);
    } else if (type == T_DISCARD || type == T_WRITE_ZEROES) {
        add(failed ? &st->failed_unmap_ops : &st->unmap_ops, 1);
        add(&st->unmap_total_ns, ns);
    }
}

void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *out)
{
    const uint64_t *src = (const uint64_t *)&b->stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    }
}

/* Serves one request; returns the bytes written into the guest's buffers. */
static uint32_t serve(struct virtio_blk *b, const struct virtq_chain *c)
{
    uint64_t t0 = monotonic_ns();
    struct blk_header h;
    struct error err = { 0 };
    uint8_t status = S_OK;
    uint64_t done = 0;
    virtq_chain_read(c, 0, &h, sizeof(h));
    uint64_t data_len = h.type == T_IN || h.type == T_GET_ID ? c->in_len - 1 : c->out_len - HEADER_SIZE;
    switch (h.type) {
    case T_IN:
    case T_OUT:
        if (h.type == T_OUT && b->read_only) {
            status = S_IOERR;
        } else if (data_len % SECTOR || !in_range(b, h.sector, data_len)) {
            status = S_IOERR;
        } else if (transfer(b, c, h.sector * SECTOR, h.type == T_OUT, false, &done, &err) < 0) {
            log_warn("%s: %s", b->dev.name, err.msg);
            status = S_IOERR;
        }
        if (h.type == T_OUT) {
            done = 0;
        }
        break;
    case T_FLUSH:
        if (!b->bdev) {
            status = S_IOERR;
        } else {
            /* Taken before: writes served inline meanwhile are not covered. */
            uint64_t unflushed = __atomic_load_n(&b->inline_unflushed, __ATOMIC_RELAXED);
            if (blockdev_flush(b->bdev, &err) < 0) {
                log_warn("%s: flush: %s", b->dev.name, err.msg);
                status = S_IOERR;
            } else {
                __atomic_fetch_sub(&b->inline_unflushed, unflushed, __ATOMIC_RELAXED);
            }
        }
        break;
    case T_GET_ID:
        done = virtq_chain_write(c, 0, b->serial, data_len < sizeof(b->serial) ? data_len : sizeof(b->serial));
        break;
    case T_DISCARD:
    case T_WRITE_ZEROES:
        status = b->read_only ? S_IOERR : discard_or_zero(b, c, h.type == T_WRITE_ZEROES, &err);
        if (err.code) {
            log_warn("%s: %s", b->dev.name, err.msg);
        }
        break;
    default:
        status = S_UNSUPP;
        break;
    }
    virtq_chain_write(c, c->in_len - 1, &status, 1);
    account(b, h.type, data_len, status, t0);
    return (uint32_t)(done + 1);
}

/* A request handed to a worker: a copy of the chain's buffer list. */
struct blk_request {
    struct blk_request *next;
    int queue;
    struct virtq_chain chain;   /* only nout + nin bufs are allocated */
};

static struct blk_request *request_from(const struct virtq_chain *c, int q)
{
    int n = c->nout + c->nin;
    struct blk_request *r = malloc(offsetof(struct blk_request, chain.bufs) + (size_t)n * sizeof(c->bufs[0]));
    if (!r) {
        return NULL;
    }
    r->next = NULL;
    r->queue = q;
    memcpy(&r->chain, c, offsetof(struct virtq_chain, bufs) + (size_t)n * sizeof(c->bufs[0]));
    return r;
}

/* A request is done (a worker's): under the queue's lock, the host input
 * seam sees the completions in the order the guest will. */
static void complete(struct virtio_blk *b, int q, uint16_t head, uint32_t len)
{
    pthread_mutex_lock(&b->queue_lock[q]);
    host_input_block_completion(b, head, len);
    virtio_device_complete(&b->dev, q, head, len);
    pthread_mutex_unlock(&b->queue_lock[q]);
}

/* The same for a request served while taking requests off the ring: one
 * interrupt at the end of the pass covers all of them (blk_queue_notify). */
static void complete_in_pass(struct virtio_blk *b, int q, uint16_t head, uint32_t len, bool *pushed)
{
    pthread_mutex_lock(&b->queue_lock[q]);
    host_input_block_completion(b, head, len);
    virtio_device_push(&b->dev, q, head, len);
    pthread_mutex_unlock(&b->queue_lock[q]);
    *pushed = true;
}

void virtio_blk_notify_pass(struct virtio_blk *b, int q)
{
    pthread_mutex_lock(&b->queue_lock[q]);
    virtio_device_notify_used(&b->dev, q);
    pthread_mutex_unlock(&b->queue_lock[q]);
}

static void *blk_worker(void *opaque)
{
    struct virtio_blk *b = opaque;
    struct error err = { 0 };
    if (sandbox_enter(SANDBOX_IO_WORKER, &err) < 0) {
        log_error("virtio-blk worker: %s", err.msg);   /* then it serves no request */
        return NULL;
    }
    pthread_mutex_lock(&b->pool_lock);
    for (;;) {
        while (!b->pending_head && !b->stop) {
            pthread_cond_wait(&b->work, &b->pool_lock);
        }
        if (!b->pending_head) {
            break;
        }
        struct blk_request *r = b->pending_head;
        b->pending_head = r->next;
        if (!b->pending_head) {
            b->pending_tail = NULL;
        }
        pthread_mutex_unlock(&b->pool_lock);
        uint32_t len = serve(b, &r->chain);     /* the block layer is thread-safe */
        complete(b, r->queue, r->chain.head, len);
        free(r);
        pthread_mutex_lock(&b->pool_lock);
        if (--b->in_flight == 0) {
            pthread_cond_broadcast(&b->idle);
        }
    }
    pthread_mutex_unlock(&b->pool_lock);
    return NULL;
}

/* A read whose data is all in memory (page cache, cached metadata), or a
 * write the page cache takes in place, is served on the thread that took it
 * off the ring, sparing a worker's wake-up; any other outcome leaves it to
 * the workers, which redo it from the start. Only small requests: the
 * device lock is held meanwhile, and a large one that misses late would be
 * done twice. Writes served so stop at MAX_INLINE_UNFLUSHED bytes since the
 * last flush, so that a guest that never flushes does not make this thread
 * wait on the kernel's dirty-page throttling. A flush still goes to a
 * worker: every write completed before it is already in the page cache. */
#define MAX_INLINE_IO (128u << 10)
#define MAX_INLINE_UNFLUSHED (64ull << 20)

static bool serve_inline(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *len)
{
    struct blk_header h;
    uint64_t done;
    if (virtq_chain_read(c, 0, &h, sizeof(h)) != sizeof(h) || (h.type != T_IN && h.type != T_OUT)) {
        return false;
    }
    bool write = h.type == T_OUT;
    uint64_t data_len = write ? c->out_len - HEADER_SIZE : c->in_len - 1;
    if (data_len > MAX_INLINE_IO || data_len % SECTOR || !in_range(b, h.sector, data_len) ||
        (write && (b->read_only ||
                   __atomic_load_n(&b->inline_unflushed, __ATOMIC_RELAXED) + data_len > MAX_INLINE_UNFLUSHED)) ||
        transfer(b, c, h.sector * SECTOR, write, true, &done, NULL) < 0) {
        return false;
    }
    if (write) {
        add(&b->inline_unflushed, data_len);
        add(&b->inline_writes, 1);      /* atomics: queue threads serve in parallel */
        done = 0;
    } else {
        add(&b->cached_reads, 1);
    }
    uint8_t status = S_OK;
    virtq_chain_write(c, c->in_len - 1, &status, 1);
    account(b, h.type, data_len, status, monotonic_ns());
    *len = (uint32_t)(done + 1);
    return true;
}

/* Queues a request for the workers; serves it here when there are none or
 * when it is a read the caches answer (*pushed: its completion awaits the
 * pass's interrupt). */
void virtio_blk_dispatch(struct virtio_blk *b, int q, const struct virtq_chain *c, bool *pushed)
{
    uint32_t len;
    if (b->nworkers && serve_inline(b, c, &len)) {
        complete_in_pass(b, q, c->head, len, pushed);
        return;
    }
    struct blk_request *r = b->nworkers ? request_from(c, q) : NULL;
    if (!r) {
        complete_in_pass(b, q, c->head, serve(b, c), pushed);
        return;
    }
    pthread_mutex_lock(&b->pool_lock);
    b->in_flight++;
    if (b->pending_tail) {
        b->pending_tail->next = r;
    } else {
        b->pending_head = r;
    }
    b->pending_tail = r;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->pool_lock);
}

int virtio_blk_pop(struct virtio_blk *b, struct virtqueue *vq, struct virtq_chain *c, struct error *err)
{
    int ret = virtqueue_pop(vq, c, err);
    if (ret == 1 && (c->out_len < HEADER_SIZE || c->in_len < 1)) {
        return error_set(err, -EINVAL, "request %u without header or status byte", c->head);
    }
    if (ret == 1) {
        add(&b->requests, 1);
    }
    return ret;
}

static void blk_queue_notify(struct virtio_device *d, int q)
{
    struct virtio_blk *b = to_blk(d);
    struct virtqueue *vq = &d->vqs[q];
    if (b->queue_threads) {
        virtio_blk_kick_queue_thread(b, q);
        return;
    }
    for (;;) {
        struct error err = { 0 };
        int ret;
        bool pushed = false;
        while ((ret = virtio_blk_pop(b, vq, b->chain, &err)) == 1) {
            virtio_blk_dispatch(b, q, b->chain, &pushed);
        }
        if (pushed) {
            virtio_blk_notify_pass(b, q);
        }
        if (ret < 0) {
            virtio_device_fail(d, &err);
            return;
        }
        /* Re-arm notifications, then look once more for what raced in. */
        virtqueue_enable_notify(vq);
        if (!virtqueue_has_work(vq)) {
            return;
        }
    }
}

static void blk_config_read(struct virtio_device *d, uint32_t offset, void *buf, unsigned len)
{
    struct virtio_blk *b = to_blk(d);
    uint8_t cfg[64] = { 0 };
    uint64_t capacity = b->bdev ? blockdev_size(b->bdev) / SECTOR : 0;
    uint32_t seg_max = 128, blk_size = SECTOR, max_discard = MAX_DISCARD_SECTORS, max_seg = MAX_SEGMENTS;
    uint32_t align = 1;
    uint16_t num_queues = (uint16_t)d->nqueues;
    memcpy(cfg + 0, &capacity, 8);
    memcpy(cfg + 12, &seg_max, 4);
    memcpy(cfg + 20, &blk_size, 4);
    memcpy(cfg + 34, &num_queues, 2);
    memcpy(cfg + 36, &max_discard, 4);
    memcpy(cfg + 40, &max_seg, 4);
    memcpy(cfg + 44, &align, 4);
    memcpy(cfg + 48, &max_discard, 4);
    memcpy(cfg + 52, &max_seg, 4);
    cfg[56] = 1;    /* write zeroes may unmap */
    memset(buf, 0, len);
    if (offset < sizeof(cfg)) {
        memcpy(buf, cfg + offset, len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
    }
}

void virtio_blk_drain_locked(struct virtio_blk *b)
{
    pthread_mutex_lock(&b->pool_lock);
    while (b->in_flight > 0) {
        pthread_cond_wait(&b->idle, &b->pool_lock);
    }
    pthread_mutex_unlock(&b->pool_lock);
}

/* Called with dev.lock held: let the workers finish what is in flight
 * (a reset, a pause). The main loop starts requests: until it runs
 * again, none is added. */
static void blk_drain(struct virtio_device *d)
{
    virtio_blk_drain_locked(to_blk(d));
}

/* Paused (dev.lock held): requests in flight complete, and a queue
 * thread's spin leaves the used ring as the driver expects it. */
static void blk_quiesce(struct virtio_device *d)
{
    blk_drain(d);
    virtio_blk_end_polls(to_blk(d));
}

/* Saving state while requests are in flight would lose them: drain first
 * (called with dev.lock held). Nothing device-specific needs saving. */
static void blk_save(struct virtio_device *d, struct state_buf *b)
{
    blk_drain(d);
}

/* Without MQ the driver knows one queue only. */
static int blk_queues_usable(const struct virtio_device *d, uint64_t features)
{
    return features & (1ull << VIRTIO_BLK_F_MQ) ? d->nqueues : 1;
}

static int blk_notify_fd(struct virtio_device *d, int q)
{
    return virtio_blk_queue_notify_fd(to_blk(d), q);
}

static const struct virtio_device_ops blk_ops = {
    .queue_notify = blk_queue_notify,
    .notify_fd = blk_notify_fd,
    .config_read = blk_config_read,
    .reset = blk_drain,
    .drain = blk_drain,
    .quiesce = blk_quiesce,
    .save = blk_save,
    .queues_usable = blk_queues_usable,
};

int virtio_blk_default_queues(int vcpus)
{
    return vcpus < 1 ? 1 : vcpus > VIRTIO_BLK_MAX_QUEUES ? VIRTIO_BLK_MAX_QUEUES : vcpus;
}

int virtio_blk_init(struct virtio_blk *b, const struct guest_memory *mem, struct blockdev *bdev, bool read_only,
                    const char *serial, int num_queues, struct error *err)
{
    memset(b, 0, sizeof(*b));
    if (num_queues < 1 || num_queues > VIRTIO_BLK_MAX_QUEUES) {
        return error_set(err, -EINVAL, "virtio-blk num-queues must be 1 to %d, not %d", VIRTIO_BLK_MAX_QUEUES,
                         num_queues);
    }
    uint64_t features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                        (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |
                        (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
    read_only = read_only || blockdev_is_read_only(bdev);
    if (read_only) {
        features |= 1ull << VIRTIO_BLK_F_RO;
    }
    if (num_queues > 1) {
        features |= 1ull << VIRTIO_BLK_F_MQ;    /* as QEMU: a single queue is offered without it */
    }
    virtio_device_init(&b->dev, "virtio-blk", VIRTIO_ID_BLOCK, &blk_ops, mem, features, num_queues,
                       VIRTIO_BLK_QUEUE_SIZE);
    b->bdev = bdev;
    b->read_only = read_only;
    b->requests = 0;
    memset(b->serial, 0, sizeof(b->serial));
    if (serial) {
        memcpy(b->serial, serial, strnlen(serial, sizeof(b->serial)));
    }
    for (int q = 0; q < VIRTIO_BLK_MAX_QUEUES; q++) {
        pthread_mutex_init(&b->queue_lock[q], NULL);
    }
    pthread_mutex_init(&b->pool_lock, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->idle, NULL);
    b->pending_head = b->pending_tail = NULL;
    b->in_flight = 0;
    b->stop = false;
    b->nworkers = 0;
    b->chain = malloc(sizeof(*b->chain));
    if (!b->chain) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < VIRTIO_BLK_WORKERS; i++) {
        int ret = pthread_create(&b->workers[i], NULL, blk_worker, b);
        if (ret != 0) {
            log_warn("virtio-blk: only %d worker threads: %s", i, strerror(ret));
            break;
        }
        b->nworkers++;
    }
    return 0;
}

/* The workers finish what they hold and leave. */
static void stop_workers(struct virtio_blk *b)
{
    pthread_mutex_lock(&b->pool_lock);
    b->stop = true;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->pool_lock);
    for (int i = 0; i < b->nworkers; i++) {
        pthread_join(b->workers[i], NULL);
    }
    b->nworkers = 0;
}

void virtio_blk_make_synchronous(struct virtio_blk *b)
{
    virtio_blk_stop_queue_threads(b);
    stop_workers(b);
    b->stop = false;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
    if (!b->dev.ops) {
        return;     /* virtio_blk_init refused its arguments: nothing was set up */
    }
    log_debug("%s: %" PRIu64 " requests, of them %" PRIu64 " reads served from the caches and %" PRIu64
              " writes served inline", b->dev.name, b->requests, b->cached_reads, b->inline_writes);
    virtio_blk_stop_queue_threads(b);
    stop_workers(b);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->idle);
    pthread_mutex_destroy(&b->pool_lock);
    for (int q = 0; q < VIRTIO_BLK_MAX_QUEUES; q++) {
        pthread_mutex_destroy(&b->queue_lock[q]);
    }
    free(b->chain);
    b->chain = NULL;
    virtio_device_destroy(&b->dev);
}
