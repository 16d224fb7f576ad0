/* virtio-blk queues served off the main loop, one thread per queue (what
 * QEMU does with an iothread, here one per queue so that a guest's vCPUs,
 * posting on their own queues, are served in parallel). A queue's thread
 * sleeps on the queue's notify eventfd: with a KVM VM, virtio-pci binds
 * that eventfd to the notify address itself (virtio_blk_queue_notify_fd),
 * so a guest's kick wakes the thread with no main-loop hop; any other
 * notify (virtio-mmio, a notify that exits to the VMM, a resume) arrives
 * through blk_queue_notify, which writes the same eventfd.
 *
 * A pass takes up to BATCH requests off the ring under the device lock and
 * counts them in flight (so that a drain, a reset or a pause, which hold
 * that lock, wait for them), then serves them without the lock: the
 * page cache's answers in this thread, the rest queued for the workers.
 * The queues' passes thus overlap; each completes on its own used ring
 * under its own lock (virtio_blk_dispatch).
 *
 * Poll mode (QEMU's iothread poll-max-ns): after a pass the thread spins on
 * the avail index, with the driver's notifications off, before it sleeps:
 * a guest posting again soon is served with no notify (no VM exit, no
 * eventfd wake-up). The spin reads guest memory without the device lock
 * (the rings stay mapped for the machine's life): what it sees is only a
 * hint, the pass that follows looks again under the lock. Its length
 * adapts (virtio_blk_poll_adapt) between 0 and poll_max_ns. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/sandbox.h"
#include "virtio/virtio_blk_int.h"

#define BATCH 16

struct blk_queue_thread {
    struct virtio_blk *blk;
    int q;
    int kick_fd;                    /* the queue's notify eventfd */
    pthread_t thread;
    bool started;
    uint64_t poll_max_ns, poll_ns;  /* the spin's bound and its current length */
    uint64_t polled;                /* requests a spin found (tests, debug log) */
    struct virtq_chain chains[BATCH];
};

#define POLL_GROW_FROM_NS 4000      /* QEMU's first step from no spin */

static bool stopping(struct virtio_blk *b)
{
    return __atomic_load_n(&b->queue_threads_stop, __ATOMIC_ACQUIRE);
}

/* Under dev.lock: whether the queue may be served now. A notify while
 * paused is kept for the resume, as virtio_device_handle_notify does. */
static bool queue_live(struct virtio_device *d, int q)
{
    if (d->quiesced) {
        d->notified_while_quiesced |= 1ull << q;
        return false;
    }
    return virtio_device_running(d) && d->vqs[q].ready;
}

/* Takes a batch off the ring (dev.lock held) and counts it in flight.
 * *more: the ring may hold more (the batch filled, or a request raced the
 * re-armed notification). */
static int take_batch(struct blk_queue_thread *t, bool *more)
{
    struct virtio_blk *b = t->blk;
    struct virtqueue *vq = &b->dev.vqs[t->q];
    struct error err = { 0 };
    int n = 0, ret = 0;
    *more = false;
    if (!queue_live(&b->dev, t->q)) {
        return 0;
    }
    while (n < BATCH && (ret = virtio_blk_pop(b, vq, &t->chains[n], &err)) == 1) {
        n++;
    }
    if (ret < 0) {
        virtio_device_fail(&b->dev, &err);
    } else if (n < BATCH) {
        virtqueue_enable_notify(vq);
        *more = virtqueue_has_work(vq);
    } else {
        *more = true;
    }
    pthread_mutex_lock(&b->pool_lock);
    b->in_flight += n;
    pthread_mutex_unlock(&b->pool_lock);
    return n;
}

/* The batch is served or queued: it no longer counts in flight here (the
 * workers count what they were given). */
static void release_batch(struct virtio_blk *b, int n)
{
    pthread_mutex_lock(&b->pool_lock);
    b->in_flight -= n;
    if (b->in_flight == 0) {
        pthread_cond_broadcast(&b->idle);
    }
    pthread_mutex_unlock(&b->pool_lock);
}

static void serve_queue(struct blk_queue_thread *t)
{
    struct virtio_blk *b = t->blk;
    bool more = true;
    while (more && !stopping(b)) {
        pthread_mutex_lock(&b->dev.lock);
        int n = take_batch(t, &more);
        pthread_mutex_unlock(&b->dev.lock);
        bool pushed = false;
        for (int i = 0; i < n; i++) {
            virtio_blk_dispatch(b, t->q, &t->chains[i], &pushed);
        }
        if (pushed) {
            virtio_blk_notify_pass(b, t->q);
        }
        release_batch(b, n);
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t virtio_blk_poll_adapt(uint64_t poll_ns, uint64_t max_ns, bool found, uint64_t slept_ns)
{
    if (found) {
        return poll_ns;
    }
    if (slept_ns > max_ns) {
        return 0;   /* idle: spinning would only burn the core */
    }
    uint64_t grown = poll_ns ? poll_ns * 2 : POLL_GROW_FROM_NS;
    return grown < max_ns ? grown : max_ns;
}

/* Spins up to t->poll_ns on the avail index (see the top): whether the
 * driver posted meanwhile. Notifications are off during the spin only, then
 * back on, with a last look for a request that raced that. */
static bool poll_ring(struct blk_queue_thread *t)
{
    struct virtio_blk *b = t->blk;
    struct virtqueue *vq = &b->dev.vqs[t->q];
    if (!t->poll_ns) {
        return false;
    }
    pthread_mutex_lock(&b->dev.lock);
    bool live = !b->dev.quiesced && virtio_device_running(&b->dev) && vq->ready;
    const uint16_t *avail_idx = live ? &vq->avail->idx : NULL;
    uint16_t seen = vq->last_avail_idx;
    if (live) {
        virtqueue_disable_notify(vq);
    }
    pthread_mutex_unlock(&b->dev.lock);
    if (!live) {
        return false;
    }
    bool found = false;
    uint64_t deadline = now_ns() + t->poll_ns;
    while (!found && !stopping(b) && !__atomic_load_n(&b->dev.quiesced, __ATOMIC_ACQUIRE) &&
           now_ns() < deadline) {
        found = __atomic_load_n(avail_idx, __ATOMIC_ACQUIRE) != seen;
        __builtin_ia32_pause();
    }
    pthread_mutex_lock(&b->dev.lock);
    if (!b->dev.quiesced) {
        /* never left off outside a spin: a pass may not follow. Quiesced,
         * the quiesce turned them on (virtio_blk_end_polls): no write now. */
        virtqueue_enable_notify(vq);
        found = found || virtqueue_has_work(vq);
    }
    pthread_mutex_unlock(&b->dev.lock);
    t->polled += found;
    return found;
}

void virtio_blk_end_polls(struct virtio_blk *b)
{
    for (int q = 0; b->queue_threads && q < b->dev.nqueues; q++) {
        virtqueue_enable_notify(&b->dev.vqs[q]);
        /* The driver may have posted unnotified while a spin was on. */
        b->dev.notified_while_quiesced |= 1ull << q;
    }
}

/* Sleeps until the queue is notified (or the device stops): how long it slept. */
static int wait_notify(struct blk_queue_thread *t, uint64_t *slept_ns)
{
    uint64_t v, start = now_ns();
    ssize_t got = read(t->kick_fd, &v, sizeof(v));
    *slept_ns = now_ns() - start;
    if (got < 0 && errno != EINTR && errno != EAGAIN) {
        log_error("virtio-blk queue %d: notify eventfd: %s", t->q, strerror(errno));
        return -errno;
    }
    return 0;
}

static void *queue_thread(void *opaque)
{
    struct blk_queue_thread *t = opaque;
    struct error err = { 0 };
    if (sandbox_enter(SANDBOX_IO_WORKER, &err) < 0) {
        log_error("virtio-blk queue %d: %s", t->q, err.msg);   /* then its queue is never served */
        return NULL;
    }
    while (!stopping(t->blk)) {
        uint64_t slept_ns = 0;
        bool found = poll_ring(t);
        if (!found && wait_notify(t, &slept_ns) < 0) {
            return NULL;
        }
        t->poll_ns = virtio_blk_poll_adapt(t->poll_ns, t->poll_max_ns, found, slept_ns);
        serve_queue(t);
    }
    if (t->polled) {
        log_debug("virtio-blk queue %d: %" PRIu64 " passes started by polling", t->q, t->polled);
    }
    return NULL;
}

static void kick(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != sizeof(one)) {
        log_warn("virtio-blk: queue kick: %s", strerror(errno));   /* only an overflowed counter */
    }
}

void virtio_blk_kick_queue_thread(struct virtio_blk *b, int q)
{
    kick(b->queue_threads[q].kick_fd);
}

int virtio_blk_queue_notify_fd(struct virtio_blk *b, int q)
{
    return b->queue_threads && q >= 0 && q < b->dev.nqueues ? b->queue_threads[q].kick_fd : -1;
}

void virtio_blk_stop_queue_threads(struct virtio_blk *b)
{
    struct blk_queue_thread *ts = b->queue_threads;
    if (!ts) {
        return;
    }
    pthread_mutex_lock(&b->dev.lock);   /* blk_queue_notify kicks no more */
    b->queue_threads = NULL;
    pthread_mutex_unlock(&b->dev.lock);
    __atomic_store_n(&b->queue_threads_stop, true, __ATOMIC_RELEASE);
    for (int q = 0; q < b->dev.nqueues; q++) {
        if (ts[q].started) {
            kick(ts[q].kick_fd);
            pthread_join(ts[q].thread, NULL);
        }
        if (ts[q].kick_fd >= 0) {
            close(ts[q].kick_fd);
        }
    }
    free(ts);
}

int virtio_blk_serve_queues_in_threads(struct virtio_blk *b, uint64_t poll_max_ns, struct error *err)
{
    if (b->queue_threads) {
        return error_set(err, -EEXIST, "%s: the queues already have their threads", b->dev.name);
    }
    if (!b->nworkers) {
        return error_set(err, -EINVAL, "%s: queue threads need the device's workers (a synchronous "
                         "device, as under record/replay, serves requests where they are notified)", b->dev.name);
    }
    struct blk_queue_thread *ts = calloc((size_t)b->dev.nqueues, sizeof(*ts));
    if (!ts) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    b->queue_threads_stop = false;
    for (int q = 0; q < b->dev.nqueues; q++) {
        ts[q] = (struct blk_queue_thread){ .blk = b, .q = q, .kick_fd = eventfd(0, EFD_CLOEXEC),
                                           .poll_max_ns = poll_max_ns, .poll_ns = poll_max_ns };
    }
    b->queue_threads = ts;
    for (int q = 0; q < b->dev.nqueues; q++) {
        int ret = ts[q].kick_fd < 0 ? -errno : -pthread_create(&ts[q].thread, NULL, queue_thread, &ts[q]);
        if (ret < 0) {
            virtio_blk_stop_queue_threads(b);
            return error_set_errno(err, ret, "virtio-blk queue %d thread", q);
        }
        ts[q].started = true;
    }
    return 0;
}
