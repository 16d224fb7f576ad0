/* A read (or a write in place) looks its cluster up under the image lock
 * and does its host I/O after dropping it. A rewrite or discard of that
 * cluster meanwhile frees the host cluster, and the next allocation may take
 * it for another guest cluster: the read must still return the old or the
 * new data of its own cluster, never another cluster's, and the write must
 * not land in another cluster. Deterministic: --wrap=hostfile_pread,
 * hostfile_pwrite and hostfile_pwrite_nowait hold the I/O between its lookup
 * and the host while the other writes run. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/hostfile.h"
#include "block/qcow2.h"
#include "block/qcow2_int.h"
#include "qcow2_test_util.h"

#define CLUSTER (64u << 10)

static char dir[] = "/tmp/cowvisor-readreuse-XXXXXX";
static char image[128];

/* The held read: hostfile_pread of hold_off waits for `go`. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static uint64_t hold_off = UINT64_MAX;
static bool held, go;

/* Holds the I/O at hold_off (once) until `go`. */
static void hold_here(uint64_t off)
{
    pthread_mutex_lock(&hold_lock);
    if (off == hold_off) {
        hold_off = UINT64_MAX;
        held = true;
        pthread_cond_broadcast(&hold_cond);
        while (!go) {
            pthread_cond_wait(&hold_cond, &hold_lock);
        }
    }
    pthread_mutex_unlock(&hold_lock);
}

int __real_hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len);
int __wrap_hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len);
int __wrap_hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len)
{
    hold_here(off);
    return __real_hostfile_pread(f, off, buf, len);
}

int __real_hostfile_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len);
int __wrap_hostfile_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len);
int __wrap_hostfile_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    hold_here(off);
    return __real_hostfile_pwrite(f, off, buf, len);
}

int __real_hostfile_pwrite_nowait(struct hostfile *f, uint64_t off, const void *buf, size_t len);
int __wrap_hostfile_pwrite_nowait(struct hostfile *f, uint64_t off, const void *buf, size_t len);
int __wrap_hostfile_pwrite_nowait(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    hold_here(off);
    return __real_hostfile_pwrite_nowait(f, off, buf, len);
}

/* A new empty image for each test, so that the first free cluster is known. */
static int make_image(void)
{
    struct error err = { 0 };
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 16 * CLUSTER;
    o.cluster_size = CLUSTER;
    unlink(image);
    return qcow2_create(image, &o, &err) < 0 ? -1 : 0;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(image, sizeof(image), "%s/r.qcow2", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return run("rm -rf %s", dir);
}

static uint64_t host_of(struct blockdev *bd, uint64_t off)
{
    struct qcow2 *s = qcow2_of(bd);
    uint64_t entry = 0, bitmap;
    pthread_mutex_lock(&s->lock);
    assert_int_equal(qcow2_lookup(s, off, &entry, &bitmap, NULL), 0);
    pthread_mutex_unlock(&s->lock);
    return entry & QCOW2_L2E_OFFSET_MASK;
}

/* The held I/O on cluster 1: a read of its first 4 KiB, or a write of 0xd4. */
struct held_io {
    struct blockdev *bd;
    uint8_t data[4096];
    int ret;
};

static void *read_cluster1(void *opaque)
{
    struct held_io *r = opaque;
    struct error err = { 0 };
    r->ret = blockdev_pread(r->bd, CLUSTER, r->data, sizeof(r->data), &err);
    return NULL;
}

static void *write_cluster1(void *opaque)
{
    struct held_io *r = opaque;
    struct error err = { 0 };
    memset(r->data, 0xd4, sizeof(r->data));
    r->ret = blockdev_pwrite(r->bd, CLUSTER, r->data, sizeof(r->data), &err);
    return NULL;
}

/* The VMM's fast path: the write from cached metadata, never blocking. */
static void *write_cluster1_nowait(void *opaque)
{
    struct held_io *r = opaque;
    memset(r->data, 0xd4, sizeof(r->data));
    r->ret = blockdev_pwrite_nowait(r->bd, CLUSTER, r->data, sizeof(r->data));
    pthread_mutex_lock(&hold_lock);
    held = true;    /* declined before its host write: the test fails on r->ret, not hangs */
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
    return NULL;
}

struct writer {
    struct blockdev *bd;
    uint64_t compressed_cluster;    /* where the compressed 0xb2 goes */
    bool done;                      /* under hold_lock */
    int ret;
};

/* Cluster 1 discarded (its host cluster freed), a compressed write of 0xb2
 * (whose allocation takes the first free cluster: cluster 1's old one), then
 * cluster 3 written plain (0xc3). A compressed write never overwrites (QEMU's
 * rule): cluster 1 is discarded first when it is the target. */
static void *rewrite(void *opaque)
{
    struct writer *w = opaque;
    static uint8_t buf[CLUSTER];
    struct error err = { 0 };
    memset(buf, 0xb2, sizeof(buf));
    w->ret = blockdev_discard(w->bd, CLUSTER, CLUSTER, &err);
    if (w->ret == 0) {
        w->ret = blockdev_pwrite_compressed(w->bd, w->compressed_cluster * CLUSTER, buf, CLUSTER, &err);
    }
    memset(buf, 0xc3, sizeof(buf));
    if (w->ret == 0) {
        w->ret = blockdev_pwrite(w->bd, 3 * CLUSTER, buf, CLUSTER, &err);
    }
    pthread_mutex_lock(&hold_lock);
    w->done = true;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
    return NULL;
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t b)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != b) {
            return false;
        }
    }
    return true;
}

/* The writes are given until they finish or 0.3 s (the read guard makes them wait
 * for the held read); either way the read is then let go. */
static void release_after_writes(struct writer *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 300 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&hold_lock);
    while (!w->done && pthread_cond_timedwait(&hold_cond, &hold_lock, &until) == 0) {
    }
    go = true;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
}

/* Cluster 1 written plain (0xa1), then `io` on it held at its host read or
 * write while `rewrite` frees its host cluster and writes elsewhere. */
static struct blockdev *race_held_io(void *(*io)(void *), struct held_io *r, uint64_t compressed_cluster,
                                     uint64_t *old_host)
{
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { 0 };
    struct error err = { 0 };
    char spec[256];
    assert_int_equal(make_image(), 0);
    snprintf(spec, sizeof(spec), "driver=qcow2,file.filename=%s", image);
    assert_int_equal(blockdev_open_spec(&bd, NULL, spec, &opts, &err), 0);
    static uint8_t buf[CLUSTER];
    memset(buf, 0xa1, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, CLUSTER, buf, CLUSTER, &err), 0);
    *old_host = host_of(bd, CLUSTER);

    pthread_mutex_lock(&hold_lock);
    hold_off = *old_host;
    held = go = false;
    pthread_mutex_unlock(&hold_lock);
    r->bd = bd;
    pthread_t rt, wt;
    assert_int_equal(pthread_create(&rt, NULL, io, r), 0);
    pthread_mutex_lock(&hold_lock);
    while (!held) {
        pthread_cond_wait(&hold_cond, &hold_lock);
    }
    pthread_mutex_unlock(&hold_lock);
    struct writer w = { .bd = bd, .compressed_cluster = compressed_cluster };
    assert_int_equal(pthread_create(&wt, NULL, rewrite, &w), 0);
    release_after_writes(&w);
    pthread_join(rt, NULL);
    pthread_join(wt, NULL);
    assert_int_equal(w.ret, 0);
    assert_int_equal(r->ret, 0);
    return bd;
}

static void test_plain_read_vs_reuse(void **state)
{
    (void)state;
    struct held_io r = { 0 };
    uint64_t old_host;
    struct blockdev *bd = race_held_io(read_cluster1, &r, 1, &old_host);
    /* Old data, new data, or zeros (the discard punched the hole under the
     * read): never the compressed bytes now in its old host cluster. */
    if (!all_bytes(r.data, sizeof(r.data), 0xa1) && !all_bytes(r.data, sizeof(r.data), 0xb2) &&
        !all_bytes(r.data, sizeof(r.data), 0)) {
        fail_msg("the read of cluster 1 returned 0x%02x.. (cluster 1 was at 0x%llx)", r.data[0],
                 (unsigned long long)old_host);
    }
    blockdev_close(bd);
}

static void assert_cluster2_intact(struct blockdev *bd, uint64_t old_host)
{
    static uint8_t got[CLUSTER];
    struct error err = { 0 };
    int ret = blockdev_pread(bd, 2 * CLUSTER, got, CLUSTER, &err);
    if (ret < 0 || !all_bytes(got, CLUSTER, 0xb2)) {
        fail_msg("cluster 2 (compressed, cluster 1 was at 0x%llx) reads %s0x%02x..: the write to cluster 1 "
                 "landed in it", (unsigned long long)old_host, ret < 0 ? "an error, " : "", got[0]);
    }
}

/* The write in place must land in cluster 1's host cluster while it is still
 * cluster 1's: never in cluster 2's compressed data that took it over. */
static void test_write_in_place_vs_reuse(void **state)
{
    (void)state;
    struct held_io r = { 0 };
    uint64_t old_host;
    struct blockdev *bd = race_held_io(write_cluster1, &r, 2, &old_host);
    assert_cluster2_intact(bd, old_host);
    blockdev_close(bd);
}

static void test_nowait_write_vs_reuse(void **state)
{
    (void)state;
    struct held_io r = { 0 };
    uint64_t old_host;
    struct blockdev *bd = race_held_io(write_cluster1_nowait, &r, 2, &old_host);
    assert_cluster2_intact(bd, old_host);
    blockdev_close(bd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_read_vs_reuse),
        cmocka_unit_test(test_write_in_place_vs_reuse),
        cmocka_unit_test(test_nowait_write_vs_reuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
