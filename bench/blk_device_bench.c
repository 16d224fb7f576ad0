/* The host side of guest disk I/O, measured without KVM: a virtio-blk
 * device over guest memory, driven by a fake driver that keeps `depth`
 * requests in flight (posts a batch, notifies as a guest's kick would,
 * waits for the batch's interrupt). Offsets advance by the request size and
 * wrap, as `qemu-img bench` does, so that bench/blk-device.sh can set the
 * two side by side: QEMU's figure is its block layer alone, ours includes
 * the device (ring walk, completions, interrupts).
 * Usage: blk_device_bench FORMAT IMAGE read|write SIZE COUNT DEPTH FLUSH_INTERVAL [queue-threads[=POLL_NS]]
 * With queue-threads the queue is served by its own thread (--disk
 * queue-threads=on, poll-max-ns=POLL_NS, default as there): here that adds a wake-up to each kick, which the
 * default (served on the kicking thread, as a vCPU without ioeventfd) does
 * not have; in a VM both take one (main loop, or the queue's thread).
 * Prints "requests wall_seconds cpu_seconds". */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "block/blockdev.h"
#include "virtio/virtio_blk.h"
#include "../tests/machine/fake_driver.h"

#define QSIZE 64
#define MAX_DEPTH 16
#define DESC_GPA 0x1000u
#define AVAIL_GPA 0x2000u
#define USED_GPA 0x3000u
#define HEADER_GPA 0x10000u     /* request k's header at + 16 k, status at + 0x800 + k */
#define DATA_GPA 0x100000u      /* request k's data at + k * size */

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4 };

struct driver {
    struct guest_memory mem;
    struct virtio_blk blk;
    pthread_mutex_t lock;
    pthread_cond_t interrupt;
    uint16_t avail_idx, seen_used;
};

static void notify_queue(void *opaque, int q)
{
    struct driver *d = opaque;
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->interrupt);
    pthread_mutex_unlock(&d->lock);
}

static void notify_config(void *opaque) {}
static const struct virtio_transport_ops transport = { notify_queue, notify_config };

static uint16_t used_idx(struct driver *d)
{
    struct virtq_used *u = guest_memory_ptr(&d->mem, USED_GPA, 4);
    return __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
}

/* Request k: header, data (none for a flush), status; made available. */
static void post(struct driver *d, int k, uint32_t type, uint64_t off, uint32_t size)
{
    struct virtq_desc *desc = guest_memory_ptr(&d->mem, DESC_GPA, QSIZE * sizeof(*desc));
    struct virtq_avail *a = guest_memory_ptr(&d->mem, AVAIL_GPA, 4 + 2 * QSIZE);
    uint64_t header = HEADER_GPA + 16u * (unsigned)k, status = HEADER_GPA + 0x800u + (unsigned)k;
    uint32_t h[4] = { type, 0, (uint32_t)(off / 512), (uint32_t)(off / 512 >> 32) };
    memcpy(guest_memory_ptr(&d->mem, header, sizeof(h)), h, sizeof(h));
    uint16_t first = (uint16_t)(3 * k), n = first;
    desc[n] = (struct virtq_desc){ header, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(n + 1) };
    n++;
    if (type != T_FLUSH) {
        desc[n] = (struct virtq_desc){ DATA_GPA + (uint64_t)k * size, size,
                                       (uint16_t)(VIRTQ_DESC_F_NEXT | (type == T_IN ? VIRTQ_DESC_F_WRITE : 0)),
                                       (uint16_t)(n + 1) };
        n++;
    }
    desc[n] = (struct virtq_desc){ status, 1, VIRTQ_DESC_F_WRITE, 0 };
    a->ring[d->avail_idx % QSIZE] = first;
    __atomic_store_n(&a->idx, ++d->avail_idx, __ATOMIC_RELEASE);
}

/* The guest's kick, then its wait for the batch's interrupts; returns how
 * many of the n requests failed. */
static int kick_and_wait(struct driver *d, int n)
{
    virtio_device_handle_notify(&d->blk.dev, 0);
    uint16_t want = (uint16_t)(d->seen_used + n);
    pthread_mutex_lock(&d->lock);
    while ((uint16_t)(used_idx(d) - want) > QSIZE) {   /* used_idx before want */
        pthread_cond_wait(&d->interrupt, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    d->seen_used = want;
    int failed = 0;
    for (int k = 0; k < n; k++) {
        failed += *(uint8_t *)guest_memory_ptr(&d->mem, HEADER_GPA + 0x800u + (unsigned)k, 1) != 0;
    }
    return failed;
}

static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static double wall_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int setup(struct driver *d, struct blockdev *bd, uint32_t size, bool threads, uint64_t poll_ns,
                 struct error *err)
{
    int ret;
    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->interrupt, NULL);
    if ((ret = guest_memory_create(&d->mem, DATA_GPA + (uint64_t)MAX_DEPTH * size, err)) < 0 ||
        (ret = virtio_blk_init(&d->blk, &d->mem, bd, false, "", 1, err)) < 0) {
        return ret;
    }
    ret = fake_driver_start(&d->blk.dev, &transport, d, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA, err);
    return ret < 0 || !threads ? ret : virtio_blk_serve_queues_in_threads(&d->blk, poll_ns, err);
}

int main(int argc, char **argv)
{
    bool threads = argc == 9 && strncmp(argv[8], "queue-threads", 13) == 0 &&
                   (!argv[8][13] || argv[8][13] == '=');
    uint64_t poll_ns = threads && argv[8][13] ? strtoull(argv[8] + 14, NULL, 0) : VIRTIO_BLK_POLL_MAX_NS_DEFAULT;
    if (argc != 8 && !threads) {
        fprintf(stderr, "usage: %s FORMAT IMAGE read|write SIZE COUNT DEPTH FLUSH_INTERVAL "
                "[queue-threads[=POLL_NS]]\n", argv[0]);
        return 2;
    }
    bool write = strcmp(argv[3], "write") == 0;
    uint32_t size = (uint32_t)strtoul(argv[4], NULL, 0);
    long count = strtol(argv[5], NULL, 0), depth = strtol(argv[6], NULL, 0), flush_every = strtol(argv[7], NULL, 0);
    if (size < 512 || size % 512 || size > (4u << 20) || count < 1 || depth < 1 || depth > MAX_DEPTH ||
        flush_every < 0) {
        fprintf(stderr, "%s: bad size, count, depth (1-%d) or flush interval\n", argv[0], MAX_DEPTH);
        return 2;
    }
    struct error err = { 0 };
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { .format = argv[1] };
    static struct driver d;
    if (blockdev_open(&bd, argv[2], &opts, &err) < 0 || setup(&d, bd, size, threads, poll_ns, &err) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        return 1;
    }
    uint64_t disk = blockdev_size(bd), off = 0;
    long done = 0, since_flush = 0, failed = 0;
    double w0 = wall_seconds(), c0 = cpu_seconds();
    while (done < count) {
        int n = (int)(count - done < depth ? count - done : depth);
        for (int k = 0; k < n; k++) {
            post(&d, k, write ? T_OUT : T_IN, off, size);
            off = off + 2 * (uint64_t)size > disk ? 0 : off + size;
        }
        failed += kick_and_wait(&d, n);
        done += n;
        since_flush += n;
        if (flush_every && since_flush >= flush_every) {
            post(&d, 0, T_FLUSH, 0, 0);
            failed += kick_and_wait(&d, 1);
            since_flush = 0;
        }
    }
    double wall = wall_seconds() - w0, cpu = cpu_seconds() - c0;
    if (failed) {
        fprintf(stderr, "%s: %ld requests failed\n", argv[0], failed);
        return 1;
    }
    printf("%ld %.3f %.3f\n", done, wall, cpu);
    virtio_blk_destroy(&d.blk);
    blockdev_close(bd);
    guest_memory_destroy(&d.mem);
    return 0;
}
