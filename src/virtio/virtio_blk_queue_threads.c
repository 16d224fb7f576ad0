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
 * under its own lock (virtio_blk_dispatch). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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
    struct virtq_chain chains[BATCH];
};

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

static void *queue_thread(void *opaque)
{
    struct blk_queue_thread *t = opaque;
    struct error err = { 0 };
    if (sandbox_enter(SANDBOX_IO_WORKER, &err) < 0) {
        log_error("virtio-blk queue %d: %s", t->q, err.msg);   /* then its queue is never served */
        return NULL;
    }
    while (!stopping(t->blk)) {
        uint64_t v;
        ssize_t got = read(t->kick_fd, &v, sizeof(v));
        if (got < 0 && errno != EINTR && errno != EAGAIN) {
            log_error("virtio-blk queue %d: notify eventfd: %s", t->q, strerror(errno));
            return NULL;
        }
        serve_queue(t);
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

int virtio_blk_serve_queues_in_threads(struct virtio_blk *b, struct error *err)
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
        ts[q] = (struct blk_queue_thread){ .blk = b, .q = q, .kick_fd = eventfd(0, EFD_CLOEXEC) };
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
