/* virtio-blk with a thread per queue (virtio_blk_serve_queues_in_threads),
 * without a KVM VM: four queues laid out in guest memory by hand, one
 * driver thread per queue posting and notifying as a vCPU would, all at
 * once. Every request completes exactly once, on the used ring of the queue
 * it was posted on, with its status; every write lands where it was sent;
 * a write completed on one queue is seen by a read posted afterwards on
 * another; a flush posted on one queue reaches the disk after the writes
 * completed on the others (the file's pwrite and fdatasync calls are logged
 * through the linker's --wrap); a drain leaves no request taken off a ring
 * without its completion; a paused device leaves requests in the rings and
 * serves them at resume; in poll mode a queue's thread serves a request
 * posted with no notify, and its spin adapts, and a pause ends its spin
 * with the driver's notifications on; a synchronous device (record/replay) refuses
 * queue threads with a message. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_blk_int.h"
#include "fake_driver.h"

#define MEM_SIZE (8u << 20)
#define QUEUES 4
#define QSIZE 64
#define SLOTS 16                                    /* requests in flight per queue */
#define RING_GPA(q) (0x10000u + 0x4000u * (q))      /* desc; avail at +0x1000; used at +0x2000 */
#define HEADER_GPA(q, k) (0x40000u + 0x1000u * (q) + 16u * (k))
#define STATUS_GPA(q, k) (0x40800u + 0x1000u * (q) + (k))
#define DATA_GPA(q, k) (0x100000u + 0x10000u * (q) + 4096u * (k))
#define REGION (256u << 10)                         /* queue q writes [q * REGION, (q + 1) * REGION) */
#define DISK_SIZE (QUEUES * REGION)
#define ROUNDS 8

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4 };

/* The process's pwrite, pwritev2 (pwritev64v2: writes served inline) and fdatasync
 * calls (only the image's, here), in order: a sequence number each, for
 * the flush check. */
static uint64_t io_seq, last_pwrite_seq, last_sync_seq;
ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags);
ssize_t __wrap_pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    ssize_t ret = __real_pwrite64(fd, buf, n, off);
    __atomic_store_n(&last_pwrite_seq, __atomic_add_fetch(&io_seq, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    return ret;
}

ssize_t __wrap_pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    ssize_t ret = __real_pwritev64v2(fd, iov, n, off, flags);
    if (ret > 0) {
        __atomic_store_n(&last_pwrite_seq, __atomic_add_fetch(&io_seq, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    }
    return ret;
}

int __wrap_fdatasync(int fd)
{
    int ret = __real_fdatasync(fd);
    __atomic_store_n(&last_sync_seq, __atomic_add_fetch(&io_seq, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    return ret;
}

struct rig {
    struct guest_memory mem;
    struct blockdev *bd;
    struct virtio_blk blk;
    char path[64];
    pthread_mutex_t irq_lock;
    pthread_cond_t irq;
};

/* One queue's driver: what it posted and what it has seen completed. A
 * failure is kept as a message (cmocka asserts only on the test's thread). */
struct lane {
    struct rig *r;
    int q;
    uint16_t avail, seen_used;
    char failure[160];
};

static void notify_queue(void *opaque, int q)
{
    struct rig *r = opaque;
    pthread_mutex_lock(&r->irq_lock);
    pthread_cond_broadcast(&r->irq);
    pthread_mutex_unlock(&r->irq_lock);
}

static void notify_config(void *opaque) {}
static const struct virtio_transport_ops transport = { notify_queue, notify_config };

static void *gpa(struct rig *r, uint64_t addr, uint64_t len)
{
    return guest_memory_ptr(&r->mem, addr, len);
}

static struct rig *rig_create_polling(bool threads, uint64_t poll_max_ns)
{
    struct rig *r = calloc(1, sizeof(*r));
    struct error err = { 0 };
    assert_non_null(r);
    snprintf(r->path, sizeof(r->path), "/tmp/cowvisor-blkqt-XXXXXX");
    int fd = mkstemp(r->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
    assert_int_equal(guest_memory_create(&r->mem, MEM_SIZE, &err), 0);
    assert_int_equal(blockdev_open(&r->bd, r->path, &(struct blockdev_open_opts){ .format = "raw" }, &err), 0);
    assert_int_equal(virtio_blk_init(&r->blk, &r->mem, r->bd, false, "", QUEUES, &err), 0);
    pthread_mutex_init(&r->irq_lock, NULL);
    pthread_cond_init(&r->irq, NULL);
    for (int q = 0; q < QUEUES; q++) {
        assert_int_equal(fake_driver_start(&r->blk.dev, &transport, r, q, QSIZE, RING_GPA(q),
                                           RING_GPA(q) + 0x1000, RING_GPA(q) + 0x2000, &err), 0);
    }
    if (threads) {
        assert_int_equal(virtio_blk_serve_queues_in_threads(&r->blk, poll_max_ns, &err), 0);
        assert_true(virtio_blk_queue_notify_fd(&r->blk, QUEUES - 1) >= 0);
    }
    return r;
}

static struct rig *rig_create(bool threads)
{
    return rig_create_polling(threads, VIRTIO_BLK_POLL_MAX_NS_DEFAULT);
}

static void rig_destroy(struct rig *r)
{
    virtio_blk_destroy(&r->blk);
    blockdev_close(r->bd);
    guest_memory_destroy(&r->mem);
    pthread_cond_destroy(&r->irq);
    pthread_mutex_destroy(&r->irq_lock);
    unlink(r->path);
    free(r);
}

/* Request k of lane l: header, data (4 KiB filled with `fill` for a write;
 * none for a flush), status; made available. */
static void post(struct lane *l, int k, uint32_t type, uint64_t off, uint8_t fill)
{
    struct rig *r = l->r;
    int q = l->q;
    struct virtq_desc *desc = gpa(r, RING_GPA(q), QSIZE * sizeof(*desc));
    struct virtq_avail *a = gpa(r, RING_GPA(q) + 0x1000, 4 + 2 * QSIZE);
    uint32_t h[4] = { type, 0, (uint32_t)(off / 512), 0 };
    memcpy(gpa(r, HEADER_GPA(q, k), sizeof(h)), h, sizeof(h));
    *(uint8_t *)gpa(r, STATUS_GPA(q, k), 1) = 0xff;
    uint16_t first = (uint16_t)(3 * k), n = first;
    desc[n] = (struct virtq_desc){ HEADER_GPA(q, k), 16, VIRTQ_DESC_F_NEXT, (uint16_t)(n + 1) };
    n++;
    if (type != T_FLUSH) {
        memset(gpa(r, DATA_GPA(q, k), 4096), type == T_OUT ? fill : 0xee, 4096);
        desc[n] = (struct virtq_desc){ DATA_GPA(q, k), 4096,
                                       (uint16_t)(VIRTQ_DESC_F_NEXT | (type == T_IN ? VIRTQ_DESC_F_WRITE : 0)),
                                       (uint16_t)(n + 1) };
        n++;
    }
    desc[n] = (struct virtq_desc){ STATUS_GPA(q, k), 1, VIRTQ_DESC_F_WRITE, 0 };
    a->ring[l->avail % QSIZE] = first;
    __atomic_store_n(&a->idx, ++l->avail, __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct rig *r, int q)
{
    struct virtq_used *u = gpa(r, RING_GPA(q) + 0x2000, 4);
    return __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
}

static void kick(struct lane *l)
{
    virtio_device_handle_notify(&l->r->blk.dev, l->q);     /* what a transport does on a notify */
}

static bool lane_fail(struct lane *l, const char *fmt, ...)
{
    if (!l->failure[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->failure, sizeof(l->failure), fmt, ap);
        va_end(ap);
    }
    return false;
}

/* Waits (10 s at most) until the lane's n posted requests are completed, and
 * checks each completion: one of this batch's heads, once, status OK,
 * len as the request's kind says. */
static bool wait_batch(struct lane *l, int n, uint32_t type)
{
    struct rig *r = l->r;
    uint16_t target = (uint16_t)(l->seen_used + n);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&r->irq_lock);
    while ((uint16_t)(used_idx(r, l->q) - l->seen_used) < n) {
        if (pthread_cond_timedwait(&r->irq, &r->irq_lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&r->irq_lock);
            return lane_fail(l, "queue %d: %u of %d requests completed in 10 s", l->q,
                        (unsigned)(uint16_t)(used_idx(r, l->q) - l->seen_used), n);
        }
    }
    pthread_mutex_unlock(&r->irq_lock);
    if (used_idx(r, l->q) != target) {
        return lane_fail(l, "queue %d: %u completions for %d requests", l->q,
                    (unsigned)(uint16_t)(used_idx(r, l->q) - l->seen_used), n);
    }
    struct virtq_used *u = gpa(r, RING_GPA(l->q) + 0x2000, 4 + 8 * QSIZE);
    bool seen[SLOTS] = { false };
    for (; l->seen_used != target; l->seen_used++) {
        struct virtq_used_elem e = u->ring[l->seen_used % QSIZE];
        int k = (int)e.id / 3;
        if (e.id % 3 || k >= n || seen[k]) {
            return lane_fail(l, "queue %d: head %u completed, not one of this batch's or twice", l->q, e.id);
        }
        seen[k] = true;
        uint32_t len = type == T_IN ? 4097 : 1;
        if (e.len != len || *(uint8_t *)gpa(r, STATUS_GPA(l->q, k), 1) != 0) {
            return lane_fail(l, "queue %d: request %d: len %u status %u", l->q, k, e.len,
                        *(uint8_t *)gpa(r, STATUS_GPA(l->q, k), 1));
        }
    }
    return true;
}

static uint8_t fill_of(int q, int round, int k)
{
    return (uint8_t)(1 + q * 64 + round * 8 + k);
}

/* Rounds of SLOTS 4 KiB writes at once into the lane's region, each round
 * rewriting the same blocks with new bytes, then reads of them all: each
 * block must hold the last round's bytes. */
static void *write_then_read(void *opaque)
{
    struct lane *l = opaque;
    uint64_t base = (uint64_t)l->q * REGION;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < SLOTS; k++) {
            post(l, k, T_OUT, base + 4096u * (unsigned)k, fill_of(l->q, round, k));
        }
        kick(l);
        if (!wait_batch(l, SLOTS, T_OUT)) {
            return NULL;
        }
    }
    for (int k = 0; k < SLOTS; k++) {
        post(l, k, T_IN, base + 4096u * (unsigned)k, 0);
    }
    kick(l);
    if (!wait_batch(l, SLOTS, T_IN)) {
        return NULL;
    }
    for (int k = 0; k < SLOTS; k++) {
        const uint8_t *d = gpa(l->r, DATA_GPA(l->q, k), 4096);
        uint8_t want = fill_of(l->q, ROUNDS - 1, k);
        for (int i = 0; i < 4096; i++) {
            if (d[i] != want) {
                lane_fail(l, "queue %d: block %d byte %d is %u, not the last write's %u", l->q, k, i, d[i], want);
                return NULL;
            }
        }
    }
    return NULL;
}

static void assert_lanes_ok(struct lane *lanes, int n)
{
    for (int q = 0; q < n; q++) {
        if (lanes[q].failure[0]) {
            fail_msg("%s", lanes[q].failure);
        }
    }
}

static void test_queues_in_parallel_lose_nothing(void **state)
{
    struct rig *r = rig_create(true);
    struct lane lanes[QUEUES];
    pthread_t t[QUEUES];
    for (int q = 0; q < QUEUES; q++) {
        lanes[q] = (struct lane){ .r = r, .q = q };
        assert_int_equal(pthread_create(&t[q], NULL, write_then_read, &lanes[q]), 0);
    }
    for (int q = 0; q < QUEUES; q++) {
        pthread_join(t[q], NULL);
    }
    assert_lanes_ok(lanes, QUEUES);
    assert_int_equal(r->blk.requests, QUEUES * (ROUNDS + 1) * SLOTS);
    /* And on the disk itself: each queue's blocks hold its last round. */
    uint8_t buf[4096];
    struct error err = { 0 };
    for (int q = 0; q < QUEUES; q++) {
        for (int k = 0; k < SLOTS; k++) {
            assert_int_equal(blockdev_pread(r->bd, (uint64_t)q * REGION + 4096u * (unsigned)k, buf, 4096, &err), 0);
            assert_int_equal(buf[0], fill_of(q, ROUNDS - 1, k));
            assert_int_equal(buf[4095], fill_of(q, ROUNDS - 1, k));
        }
    }
    rig_destroy(r);
}

/* A write completed on queue 0, then a read of the block posted on queue 3
 * and a flush on queue 2: the read sees the write, the flush comes after it
 * on the disk. */
static void completed_write_seen_across_queues(bool threads)
{
    struct rig *r = rig_create(threads);
    struct lane w = { .r = r, .q = 0 }, rd = { .r = r, .q = 3 }, fl = { .r = r, .q = 2 };
    for (int i = 0; i < 20; i++) {
        uint8_t fill = (uint8_t)(0x40 + i);
        post(&w, 0, T_OUT, 8192, fill);
        kick(&w);
        assert_true(wait_batch(&w, 1, T_OUT));
        uint64_t written = __atomic_load_n(&last_pwrite_seq, __ATOMIC_SEQ_CST);
        assert_true(written > 0);
        post(&rd, 0, T_IN, 8192, 0);
        kick(&rd);
        assert_true(wait_batch(&rd, 1, T_IN));
        assert_int_equal(*(uint8_t *)gpa(r, DATA_GPA(3, 0), 1), fill);
        post(&fl, 0, T_FLUSH, 0, 0);
        kick(&fl);
        assert_true(wait_batch(&fl, 1, T_FLUSH));
        assert_true(__atomic_load_n(&last_sync_seq, __ATOMIC_SEQ_CST) > written);
    }
    assert_string_equal(w.failure, "");
    assert_string_equal(rd.failure, "");
    assert_string_equal(fl.failure, "");
    rig_destroy(r);
}

static void test_completed_write_seen_across_queues(void **state)
{
    completed_write_seen_across_queues(true);
}

/* The same served on the notifying thread (the main loop's way). */
static void test_completed_write_seen_across_queues_unthreaded(void **state)
{
    completed_write_seen_across_queues(false);
}

/* Every request a queue thread took off a ring is completed once a drain
 * (what a reset, a pause and a save do) returns. */
static void test_drain_leaves_nothing_taken(void **state)
{
    struct rig *r = rig_create(true);
    for (int round = 0; round < 50; round++) {
        struct lane lanes[QUEUES];
        for (int q = 0; q < QUEUES; q++) {
            lanes[q] = (struct lane){ .r = r, .q = q, .avail = used_idx(r, q), .seen_used = used_idx(r, q) };
            for (int k = 0; k < SLOTS; k++) {
                post(&lanes[q], k, round % 2 ? T_IN : T_OUT, (uint64_t)q * REGION + 4096u * (unsigned)k, 7);
            }
            kick(&lanes[q]);
        }
        pthread_mutex_lock(&r->blk.dev.lock);
        virtio_blk_drain_locked(&r->blk);
        for (int q = 0; q < QUEUES; q++) {
            assert_int_equal(used_idx(r, q), r->blk.dev.vqs[q].last_avail_idx);
        }
        pthread_mutex_unlock(&r->blk.dev.lock);
        for (int q = 0; q < QUEUES; q++) {
            assert_true(wait_batch(&lanes[q], SLOTS, round % 2 ? T_IN : T_OUT));
        }
    }
    rig_destroy(r);
}

/* Paused, a notified queue keeps its requests; resumed, it serves them. */
static void test_paused_device_serves_at_resume(void **state)
{
    struct rig *r = rig_create(true);
    struct lane l = { .r = r, .q = 2 };
    virtio_device_quiesce(&r->blk.dev);
    post(&l, 0, T_IN, 0, 0);
    kick(&l);
    usleep(50 * 1000);      /* time for the queue's thread to (wrongly) serve it */
    assert_int_equal(used_idx(r, 2), 0);
    assert_int_equal(r->blk.dev.vqs[2].last_avail_idx, 0);
    virtio_device_resume(&r->blk.dev);
    assert_true(wait_batch(&l, 1, T_IN));
    assert_string_equal(l.failure, "");
    rig_destroy(r);
}

/* Whether the device tells the driver not to notify, within 10 s. */
static bool driver_told_not_to_notify(struct rig *r, int q)
{
    struct virtq_used *u = gpa(r, RING_GPA(q) + 0x2000, 4);
    for (int i = 0; i < 10000; i++) {
        if (__atomic_load_n(&u->flags, __ATOMIC_ACQUIRE) & VIRTQ_USED_F_NO_NOTIFY) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* Poll mode: after a pass the queue's thread spins on the ring (here for
 * up to 5 s), telling the driver it need not notify (without EVENT_IDX), and
 * serves a request posted with no notify at all. */
static void test_poll_serves_unnotified(void **state)
{
    struct rig *r = rig_create_polling(true, 5000000000ull);
    struct lane l = { .r = r, .q = 1 };
    post(&l, 0, T_OUT, REGION, 0x5a);
    kick(&l);
    assert_true(wait_batch(&l, 1, T_OUT));
    if (!r->blk.dev.vqs[1].event_idx) {
        assert_true(driver_told_not_to_notify(r, 1));
    }
    post(&l, 0, T_IN, REGION, 0);      /* no kick */
    assert_true(wait_batch(&l, 1, T_IN));
    assert_string_equal(l.failure, "");
    uint8_t *data = gpa(r, DATA_GPA(1, 0), 4096);
    for (int i = 0; i < 4096; i++) {
        assert_int_equal(data[i], 0x5a);
    }
    rig_destroy(r);
}

/* A pause (a migration's stop) ends a spin: the flag that told the driver
 * not to notify is clear once the pause returns, and stays so (a ring page
 * sent with it set would leave the destination's driver never notifying).
 * A request posted unnotified meanwhile is served at the resume. */
static void test_pause_ends_the_spin(void **state)
{
    struct rig *r = rig_create_polling(true, 5000000000ull);
    struct lane l = { .r = r, .q = 1 };
    struct virtq_used *u = gpa(r, RING_GPA(1) + 0x2000, 4);
    post(&l, 0, T_OUT, REGION, 0x5a);
    kick(&l);
    assert_true(wait_batch(&l, 1, T_OUT));
    assert_true(driver_told_not_to_notify(r, 1));
    virtio_device_quiesce(&r->blk.dev);
    assert_int_equal(__atomic_load_n(&u->flags, __ATOMIC_ACQUIRE), 0);
    post(&l, 0, T_IN, REGION, 0);      /* no kick */
    usleep(50 * 1000);                  /* time for the thread to (wrongly) write the ring */
    assert_int_equal(__atomic_load_n(&u->flags, __ATOMIC_ACQUIRE), 0);
    assert_int_equal(used_idx(r, 1), 1);
    virtio_device_resume(&r->blk.dev);
    assert_true(wait_batch(&l, 1, T_IN));
    assert_string_equal(l.failure, "");
    rig_destroy(r);
}

/* The spin's length: kept while it finds requests, grown (from 4 us,
 * doubling, up to the bound) when a request came soon after it gave up,
 * ended by an idle period longer than the bound; a bound of 0 never spins. */
static void test_poll_adapts(void **state)
{
    uint64_t max = 32768;
    assert_int_equal(virtio_blk_poll_adapt(8000, max, true, 0), 8000);
    assert_int_equal(virtio_blk_poll_adapt(8000, max, false, 20000), 16000);
    assert_int_equal(virtio_blk_poll_adapt(0, max, false, 1000), 4000);
    assert_int_equal(virtio_blk_poll_adapt(30000, max, false, 1000), max);
    assert_int_equal(virtio_blk_poll_adapt(max, max, false, max + 1), 0);
    assert_int_equal(virtio_blk_poll_adapt(0, 0, false, 10), 0);
}

static void test_synchronous_device_refuses_threads(void **state)
{
    struct rig *r = rig_create(false);
    struct error err = { 0 };
    assert_int_equal(virtio_blk_queue_notify_fd(&r->blk, 0), -1);
    virtio_blk_make_synchronous(&r->blk);
    assert_int_equal(virtio_blk_serve_queues_in_threads(&r->blk, VIRTIO_BLK_POLL_MAX_NS_DEFAULT, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "queue threads need the device's workers"));
    rig_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queues_in_parallel_lose_nothing),
        cmocka_unit_test(test_completed_write_seen_across_queues),
        cmocka_unit_test(test_completed_write_seen_across_queues_unthreaded),
        cmocka_unit_test(test_drain_leaves_nothing_taken),
        cmocka_unit_test(test_paused_device_serves_at_resume),
        cmocka_unit_test(test_poll_serves_unnotified),
        cmocka_unit_test(test_pause_ends_the_spin),
        cmocka_unit_test(test_poll_adapts),
        cmocka_unit_test(test_synchronous_device_refuses_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
