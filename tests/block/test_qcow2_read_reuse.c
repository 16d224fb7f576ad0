/* A read looks its cluster up under the image lock and reads the host bytes
 * after dropping it. A rewrite of that cluster meanwhile frees the host
 * cluster, and the next allocation may take it for another guest cluster:
 * the read must still return the old or the new data of its own cluster,
 * never another cluster's. Deterministic: --wrap=hostfile_pread holds the
 * read between its lookup and its host read while the writes run. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

int __real_hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len);
int __wrap_hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len);
int __wrap_hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len)
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
    return __real_hostfile_pread(f, off, buf, len);
}

static int setup(void **state)
{
    (void)state;
    struct error err = { 0 };
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(image, sizeof(image), "%s/r.qcow2", dir);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 16 * CLUSTER;
    o.cluster_size = CLUSTER;
    return qcow2_create(image, &o, &err) < 0 ? -1 : 0;
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

struct reader {
    struct blockdev *bd;
    uint8_t got[4096];
    int ret;
};

static void *read_cluster1(void *opaque)
{
    struct reader *r = opaque;
    struct error err = { 0 };
    r->ret = blockdev_pread(r->bd, CLUSTER, r->got, sizeof(r->got), &err);
    return NULL;
}

struct writer {
    struct blockdev *bd;
    bool done;      /* under hold_lock */
    int ret;
};

/* Cluster 1 discarded and rewritten compressed (a compressed write never
 * overwrites: QEMU's rule), its host cluster freed, then cluster 2 written
 * plain: the allocator's first free cluster is cluster 1's old one. */
static void *rewrite(void *opaque)
{
    struct writer *w = opaque;
    static uint8_t buf[CLUSTER];
    struct error err = { 0 };
    memset(buf, 0xb2, sizeof(buf));
    w->ret = blockdev_discard(w->bd, CLUSTER, CLUSTER, &err);
    if (w->ret == 0) {
        w->ret = blockdev_pwrite_compressed(w->bd, CLUSTER, buf, CLUSTER, &err);
    }
    memset(buf, 0xc3, sizeof(buf));
    if (w->ret == 0) {
        w->ret = blockdev_pwrite(w->bd, 2 * CLUSTER, buf, CLUSTER, &err);
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

static void test_plain_read_vs_reuse(void **state)
{
    (void)state;
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { 0 };
    struct error err = { 0 };
    char spec[256];
    snprintf(spec, sizeof(spec), "driver=qcow2,file.filename=%s", image);
    assert_int_equal(blockdev_open_spec(&bd, NULL, spec, &opts, &err), 0);
    static uint8_t buf[CLUSTER];
    memset(buf, 0xa1, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, CLUSTER, buf, CLUSTER, &err), 0);
    uint64_t old_host = host_of(bd, CLUSTER);

    pthread_mutex_lock(&hold_lock);
    hold_off = old_host;
    pthread_mutex_unlock(&hold_lock);
    struct reader r = { .bd = bd };
    pthread_t rt, wt;
    assert_int_equal(pthread_create(&rt, NULL, read_cluster1, &r), 0);
    pthread_mutex_lock(&hold_lock);
    while (!held) {
        pthread_cond_wait(&hold_cond, &hold_lock);
    }
    pthread_mutex_unlock(&hold_lock);
    struct writer w = { .bd = bd };
    assert_int_equal(pthread_create(&wt, NULL, rewrite, &w), 0);
    release_after_writes(&w);
    pthread_join(rt, NULL);
    pthread_join(wt, NULL);

    assert_int_equal(w.ret, 0);
    assert_int_equal(r.ret, 0);
    /* Old data, new data, or zeros (the discard before the compressed write
     * punched the hole under the read): never cluster 2's 0xc3. */
    if (!all_bytes(r.got, sizeof(r.got), 0xa1) && !all_bytes(r.got, sizeof(r.got), 0xb2) &&
        !all_bytes(r.got, sizeof(r.got), 0)) {
        fail_msg("the read of cluster 1 returned 0x%02x.. (cluster 2 is now at 0x%llx, cluster 1 "
                 "was at 0x%llx)", r.got[0], (unsigned long long)host_of(bd, 2 * CLUSTER),
                 (unsigned long long)old_host);
    }
    blockdev_close(bd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_read_vs_reuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
