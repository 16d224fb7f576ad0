/* The decompressed-cluster cache and read-ahead of compressed clusters:
 * the nowait path serves cached compressed clusters, the cache never holds
 * more than compressed-cache-size, read-ahead fills it ahead of a sequential
 * stream, slots are faulted in ahead of fills but only a window ahead, a
 * read never returns a compressed cluster's data from before a
 * write that finished before it started, and bad option values are refused
 * with a message naming them. White-box: looks at struct qcow2's counters. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "block/qcow2_int.h"
#include "qcow2_test_util.h"
#include "util/zero.h"

#define CLUSTER (64u << 10)
#define CLUSTERS 32u
#define DISK_SIZE (CLUSTERS * CLUSTER)
#define VERSIONS 4              /* contents a cluster takes in the concurrent test */

static char dir[] = "/tmp/cowvisor-zcache-XXXXXX";
static char image[128], raw[128];

/* Compressible content of bytes [start, start+len) of cluster c in version v. */
static void version_part(uint8_t *buf, uint32_t c, uint32_t v, uint32_t start, uint32_t len)
{
    for (uint32_t i = start; i < start + len; i++) {
        buf[i - start] = (uint8_t)((i / 64) * 7 + (i / 4096) * 3 + c * 13 + v * 101);
    }
}

static void version_data(uint8_t *buf, uint32_t c, uint32_t v)
{
    version_part(buf, c, v, 0, CLUSTER);
}

static struct blockdev *open_spec(const char *options, unsigned flags)
{
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { .flags = flags };
    struct error err = { 0 };
    if (blockdev_open_spec(&bd, NULL, options, &opts, &err) < 0) {
        fail_msg("open %s: %s", options, err.msg);
    }
    return bd;
}

static struct blockdev *open_image(const char *extra, unsigned flags)
{
    char options[512];
    snprintf(options, sizeof(options), "driver=qcow2,file.filename=%s%s%s", image,
             extra ? "," : "", extra ? extra : "");
    return open_spec(options, flags);
}

/* Every cluster written compressed, version 0. */
static int setup(void **state)
{
    (void)state;
    struct error err = { 0 };
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(image, sizeof(image), "%s/z.qcow2", dir);
    snprintf(raw, sizeof(raw), "%s/z.raw", dir);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = DISK_SIZE;
    o.cluster_size = CLUSTER;
    if (qcow2_create(image, &o, &err) < 0 || write_file(raw, "", 0) < 0) {
        return -1;
    }
    return 0;
}

static int rewrite_compressed(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(NULL, 0);
    static uint8_t buf[CLUSTER];
    struct error err = { 0 };
    int ret = 0;
    for (uint32_t c = 0; c < CLUSTERS && ret == 0; c++) {
        version_data(buf, c, 0);
        /* A compressed write never overwrites (QEMU's rule): discarded first. */
        ret = blockdev_discard(bd, (uint64_t)c * CLUSTER, CLUSTER, &err);
        if (ret == 0) {
            ret = blockdev_pwrite_compressed(bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err);
        }
    }
    blockdev_close(bd);
    return ret;
}

static int teardown(void **state)
{
    (void)state;
    return run("rm -rf %s", dir);
}

static void assert_cluster_reads(struct blockdev *bd, uint32_t c, uint32_t v, bool nowait)
{
    static uint8_t want[CLUSTER], got[CLUSTER];
    struct error err = { 0 };
    version_data(want, c, v);
    memset(got, 0xee, sizeof(got));
    int ret = nowait ? blockdev_pread_nowait(bd, (uint64_t)c * CLUSTER, got, CLUSTER)
                     : blockdev_pread(bd, (uint64_t)c * CLUSTER, got, CLUSTER, &err);
    assert_int_equal(ret, 0);
    assert_memory_equal(got, want, CLUSTER);
}

static void test_nowait_serves_cached(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(NULL, BDEV_READ_ONLY);
    uint8_t buf[4096];
    struct error err = { 0 };
    assert_int_equal(blockdev_pread(bd, 0, buf, 512, &err), 0);     /* L2 table cached */
    assert_int_equal(blockdev_pread_nowait(bd, 5 * CLUSTER, buf, sizeof(buf)), -EAGAIN);
    assert_cluster_reads(bd, 5, 0, false);
    assert_cluster_reads(bd, 5, 0, true);
    blockdev_close(bd);
}

static void test_no_cache(void **state)
{
    (void)state;
    struct blockdev *bd = open_image("compressed-cache-size=0", BDEV_READ_ONLY);
    uint8_t buf[4096];
    assert_cluster_reads(bd, 3, 0, false);
    assert_int_equal(blockdev_pread_nowait(bd, 3 * CLUSTER, buf, sizeof(buf)), -EAGAIN);
    assert_int_equal(qcow2_of(bd)->zcache.used, 0);
    blockdev_close(bd);
}

/* An open that never reads a compressed cluster allocates no slots (under
 * ASan, poisoning the default 64-256 MiB made every tool start slow); the
 * first compressed read allocates them all. */
static void test_slots_allocated_at_first_read(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(NULL, BDEV_READ_ONLY);
    struct qcow2 *s = qcow2_of(bd);
    assert_int_equal(s->zcache.capacity, CLUSTERS + 1);
    assert_int_equal(s->zcache.slots.count, 0);
    assert_cluster_reads(bd, 5, 0, false);
    assert_int_equal(s->zcache.slots.count, CLUSTERS + 1);
    assert_int_equal(s->zcache.used, 1);
    blockdev_close(bd);
}

static void test_eviction_bound(void **state)
{
    (void)state;
    struct blockdev *bd = open_image("compressed-cache-size=256k", BDEV_READ_ONLY);
    struct qcow2 *s = qcow2_of(bd);
    assert_int_equal(s->zcache.capacity, 4);
    uint64_t seed = 7;
    for (int i = 0; i < 3 * (int)CLUSTERS; i++) {
        uint32_t c = (uint32_t)(test_rand(&seed) % CLUSTERS);
        assert_cluster_reads(bd, c, 0, false);
        assert_true(s->zcache.used <= 4);
    }
    assert_int_equal(s->zcache.used, 4);
    blockdev_close(bd);
}

/* Waits (bounded) until read-ahead has decompressed n clusters. */
static bool wait_readahead(struct qcow2 *s, uint64_t n)
{
    for (int i = 0; i < 10000; i++) {
        pthread_mutex_lock(&s->readahead.lock);
        bool done = s->readahead.done >= n && s->readahead.count == 0;
        pthread_mutex_unlock(&s->readahead.lock);
        if (done) {
            return true;
        }
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    }
    return false;
}

static void test_readahead(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(NULL, BDEV_READ_ONLY);
    struct qcow2 *s = qcow2_of(bd);
    uint8_t buf[4096];
    struct error err = { 0 };
    /* A random read starts no stream. */
    assert_int_equal(blockdev_pread(bd, 20 * CLUSTER, buf, sizeof(buf), &err), 0);
    assert_int_equal(s->readahead.nthreads, 0);
    /* Reads through clusters 0 and 1: clusters 2 .. 2+window come ahead. */
    uint32_t window = s->readahead.window;
    assert_true(window >= 4);
    for (uint64_t off = 0; off < 2 * CLUSTER; off += sizeof(buf)) {
        assert_int_equal(blockdev_pread(bd, off, buf, sizeof(buf), &err), 0);
    }
    assert_true(wait_readahead(s, window));
    /* Not beyond the window (this read starts a new stream, of one read). */
    assert_int_equal(blockdev_pread_nowait(bd, (uint64_t)(2 + window) * CLUSTER, buf, sizeof(buf)),
                     -EAGAIN);
    for (uint32_t c = 2; c < 2 + window; c++) {
        assert_cluster_reads(bd, c, 0, true);
    }
    blockdev_close(bd);
}

/* Waits (bounded) until the populate-ahead thread has populated n bytes. */
static bool wait_populated(struct qcow2_zcache *z, size_t n)
{
    for (int i = 0; i < 10000 && qcow2_zcache_populated(z) < n; i++) {
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    }
    return qcow2_zcache_populated(z) >= n;
}

/* Whether every page of [p, p+len) is resident (mincore), or none is. */
static bool resident(const uint8_t *p, size_t len, bool all)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = len / (size_t)page;
    unsigned char *vec = calloc(pages, 1);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)p, pages * (size_t)page, vec), 0);
    size_t in = 0;
    for (size_t i = 0; i < pages; i++) {
        in += vec[i] & 1;
    }
    free(vec);
    return all ? in == pages : in == 0;
}

/* A 32 MiB cache (larger than the populate-ahead window): a few fills
 * start no thread (a short tool run pays for none); once the fills have
 * used a window's worth of slots, the slots ahead of them are faulted in by
 * the cache's thread, but no more than the window (the memory budget holds:
 * resident is what is used and a window ahead, not the whole cache). */
static void test_populate_ahead(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof(path), "%s/populate.qcow2", dir);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 64u << 20;
    o.cluster_size = CLUSTER;
    struct error err = { 0 };
    assert_int_equal(qcow2_create(path, &o, &err), 0);
    char options[256];
    snprintf(options, sizeof(options), "driver=qcow2,file.filename=%s,compressed-cache-size=32M", path);
    struct blockdev *bd = open_spec(options, 0);
    static uint8_t buf[CLUSTER];
    uint32_t window = QCOW2_ZCACHE_POPULATE_AHEAD / CLUSTER;
    for (uint32_t c = 0; c <= window; c++) {
        version_data(buf, c, 0);
        assert_int_equal(blockdev_pwrite_compressed(bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err), 0);
    }
    struct qcow2_zcache *z = &qcow2_of(bd)->zcache;
    for (uint32_t c = 0; c < 4; c++) {
        assert_cluster_reads(bd, c, 0, false);
    }
    assert_null(z->populate);
    for (uint32_t c = 4; c <= window; c++) {
        assert_cluster_reads(bd, c, 0, false);
    }
    assert_non_null(z->populate);
    size_t slab = (size_t)z->slots.count * CLUSTER;
    assert_int_equal(slab, 32u << 20);
    size_t used = (size_t)(window + 1) * CLUSTER;
    assert_true(wait_populated(z, used + QCOW2_ZCACHE_POPULATE_AHEAD - (2u << 20)));
    size_t populated = qcow2_zcache_populated(z);
    assert_true(populated <= used + QCOW2_ZCACHE_POPULATE_AHEAD + (4u << 20));
    assert_true(resident(z->slots.tables + slab - populated, populated, true));
    /* Below the window, past the first pages a sanitizer's malloc may fill. */
    assert_true(resident(z->slots.tables + (2u << 20), slab - populated - (4u << 20), false));
    blockdev_close(bd);
    unlink(path);
}

/* Readers check that no read returns a version older than the last one
 * written before the read began. */
struct race {
    struct blockdev *bd;
    uint32_t done_version[CLUSTERS];    /* atomics: last version written completely */
    uint32_t discards[CLUSTERS];        /* atomics: odd while the cluster is discarded */
    bool stop;
    int failures;
    uint64_t seed;
    pthread_t readers[2];
    int nreaders;       /* started, not yet joined */
};

static struct race race;

static void stop_readers(struct race *r)
{
    __atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
    for (; r->nreaders > 0; r->nreaders--) {
        pthread_join(r->readers[r->nreaders - 1], NULL);
    }
}

/* Also after a failed assertion: the readers stopped and the image closed
 * (its lock released), so that one failure does not fail the next tests. */
static int race_teardown(void **state)
{
    (void)state;
    stop_readers(&race);
    if (race.bd) {
        blockdev_close(race.bd);
        race.bd = NULL;
    }
    return 0;
}

static int version_of(const uint8_t *block, uint32_t c, uint32_t in_cluster)
{
    uint8_t want[4096];
    for (uint32_t v = 0; v < VERSIONS; v++) {
        version_part(want, c, v, in_cluster, sizeof(want));
        if (!memcmp(block, want, sizeof(want))) {
            return (int)v;
        }
    }
    return -1;
}

static void *race_reader(void *opaque)
{
    struct race *r = opaque;
    uint64_t seed = __atomic_add_fetch(&r->seed, 977, __ATOMIC_RELAXED);
    uint8_t block[4096];
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint32_t c = (uint32_t)(test_rand(&seed) % CLUSTERS);
        uint32_t in_cluster = (uint32_t)(test_rand(&seed) % (CLUSTER / 4096)) * 4096;
        uint32_t floor = __atomic_load_n(&r->done_version[c], __ATOMIC_ACQUIRE);
        uint32_t discards = __atomic_load_n(&r->discards[c], __ATOMIC_ACQUIRE);
        struct error err = { 0 };
        bool nowait = test_rand(&seed) & 1;
        int ret = nowait ? blockdev_pread_nowait(r->bd, (uint64_t)c * CLUSTER + in_cluster, block, 4096)
                         : blockdev_pread(r->bd, (uint64_t)c * CLUSTER + in_cluster, block, 4096, &err);
        if (ret == -EAGAIN && nowait) {
            continue;
        }
        int v = ret == 0 ? version_of(block, c, in_cluster) : -1;
        /* Zeros only while a discard before a compressed write was under way. */
        bool discarded = (discards & 1) || discards != __atomic_load_n(&r->discards[c], __ATOMIC_ACQUIRE);
        if (v < 0 && ret == 0 && discarded && mem_is_zero(block, sizeof(block))) {
            continue;
        }
        if (v < (int)floor) {
            __atomic_add_fetch(&r->failures, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

/* A compressed write never overwrites (QEMU's rule): the cluster is
 * discarded first, and the readers are told so. */
static int race_rewrite_compressed(struct race *r, uint32_t c, const uint8_t *buf)
{
    struct error err = { 0 };
    __atomic_add_fetch(&r->discards[c], 1, __ATOMIC_ACQ_REL);
    int ret = blockdev_discard(r->bd, (uint64_t)c * CLUSTER, CLUSTER, &err);
    if (ret == 0) {
        ret = blockdev_pwrite_compressed(r->bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err);
    }
    __atomic_add_fetch(&r->discards[c], 1, __ATOMIC_ACQ_REL);
    return ret;
}

/* Versions 1.. of every cluster, compressed and plain by turns, while two
 * threads read (sequentially too, so read-ahead runs). */
static void test_concurrent_rewrites(void **state)
{
    (void)state;
    struct race *r = &race;
    memset(r, 0, sizeof(*r));
    r->bd = open_image("compressed-cache-size=512k", 0);
    r->seed = 12345;
    for (; r->nreaders < 2; r->nreaders++) {
        assert_int_equal(pthread_create(&r->readers[r->nreaders], NULL, race_reader, r), 0);
    }
    static uint8_t buf[CLUSTER];
    struct error err = { 0 };
    for (uint32_t v = 1; v < VERSIONS; v++) {
        for (uint32_t c = 0; c < CLUSTERS; c++) {
            /* Read it sequentially first: it is cached and read ahead. */
            assert_int_equal(blockdev_pread(r->bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err), 0);
            version_data(buf, c, v);
            int ret = (v + c) % 2 ? race_rewrite_compressed(r, c, buf)
                                  : blockdev_pwrite(r->bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err);
            assert_int_equal(ret, 0);
            __atomic_store_n(&r->done_version[c], v, __ATOMIC_RELEASE);
        }
    }
    stop_readers(r);
    assert_int_equal(r->failures, 0);
    for (uint32_t c = 0; c < CLUSTERS; c++) {
        assert_cluster_reads(r->bd, c, VERSIONS - 1, false);
    }
    blockdev_close(r->bd);
    r->bd = NULL;
    /* And so it stays on disk. */
    struct blockdev *bd = open_image(NULL, BDEV_READ_ONLY);
    for (uint32_t c = 0; c < CLUSTERS; c++) {
        assert_cluster_reads(bd, c, VERSIONS - 1, false);
    }
    blockdev_close(bd);
}

static uint64_t descriptor_of(struct blockdev *bd, uint64_t off)
{
    struct qcow2 *s = qcow2_of(bd);
    uint64_t entry = 0, bitmap;
    pthread_mutex_lock(&s->lock);
    assert_int_equal(qcow2_lookup(s, off, &entry, &bitmap, NULL), 0);
    pthread_mutex_unlock(&s->lock);
    return entry;
}

/* A compressed cluster rewritten plain frees its host cluster; compressed
 * again with other data of the same compressed size, it lands on the same
 * bytes: the same descriptor, which must not find the old data. */
static void test_descriptor_reuse(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(NULL, 0);
    static uint8_t buf[CLUSTER];
    struct error err = { 0 };
    uint64_t off = 7 * CLUSTER;
    version_data(buf, 7, 1);
    /* A compressed write never overwrites (QEMU's rule): discarded first. */
    assert_int_equal(blockdev_discard(bd, off, CLUSTER, &err), 0);
    assert_int_equal(blockdev_flush(bd, &err), 0);
    assert_int_equal(blockdev_pwrite_compressed(bd, off, buf, CLUSTER, &err), 0);
    uint64_t first = descriptor_of(bd, off);
    assert_true(first & QCOW2_OFLAG_COMPRESSED);
    assert_cluster_reads(bd, 7, 1, false);
    version_data(buf, 7, 2);
    assert_int_equal(blockdev_pwrite(bd, off, buf, CLUSTER, &err), 0);
    assert_int_equal(blockdev_flush(bd, &err), 0);  /* the deferred free of the host cluster */
    assert_cluster_reads(bd, 7, 2, false);
    version_data(buf, 7, 3);
    assert_int_equal(blockdev_discard(bd, off, CLUSTER, &err), 0);
    assert_int_equal(blockdev_flush(bd, &err), 0);
    assert_int_equal(blockdev_pwrite_compressed(bd, off, buf, CLUSTER, &err), 0);
    assert_int_equal(descriptor_of(bd, off), first);
    assert_cluster_reads(bd, 7, 3, false);
    assert_cluster_reads(bd, 7, 3, true);
    blockdev_close(bd);
}

static void assert_open_fails(const char *options, const char *message)
{
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { .flags = BDEV_READ_ONLY };
    struct error err = { 0 };
    assert_int_equal(blockdev_open_spec(&bd, NULL, options, &opts, &err), -EINVAL);
    assert_null(bd);
    if (!strstr(err.msg, message)) {
        fail_msg("'%s': expected '%s' in '%s'", options, message, err.msg);
    }
}

static void test_option_errors(void **state)
{
    (void)state;
    char options[512];
    snprintf(options, sizeof(options), "driver=qcow2,file.filename=%s,compressed-cache-size=lots",
             image);
    assert_open_fails(options, "Parameter 'compressed-cache-size' expects");
    snprintf(options, sizeof(options), "driver=qcow2,file.filename=%s,compressed-cache-size=1k",
             image);
    assert_open_fails(options, "at least one cluster (65536 bytes), not 1024");
    snprintf(options, sizeof(options), "driver=qcow2,file.filename=%s,compressed-cache-size=1E",
             image);
    assert_open_fails(options, "more than half of the host's memory");
    snprintf(options, sizeof(options), "driver=raw,file.filename=%s,compressed-cache-size=1M", raw);
    assert_open_fails(options, "Block format 'raw' does not support the option "
                               "'compressed-cache-size'");
    /* json: takes it too, and a value past the disk is cut to the disk. */
    snprintf(options, sizeof(options), "json:{\"driver\": \"qcow2\", \"compressed-cache-size\": "
             "1073741824, \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", image);
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { .flags = BDEV_READ_ONLY };
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, options, &opts, &err), 0);
    assert_int_equal(qcow2_of(bd)->zcache.capacity, CLUSTERS + 1);
    blockdev_close(bd);
}

/* Without the option: the whole of a 192 MiB disk (more than the old 64 MiB
 * default), and no more than 256 MiB of a 1 GiB disk; never over 1/64 of
 * the host's memory. */
static void test_default_size(void **state)
{
    (void)state;
    uint64_t budget = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 64;
    uint64_t sizes[] = { 192ull << 20, 1ull << 30 };
    for (int i = 0; i < 2; i++) {
        char path[160];
        snprintf(path, sizeof(path), "%s/default-%d.qcow2", dir, i);
        struct blockdev_create_opts o;
        blockdev_create_opts_init(&o);
        o.size = sizes[i];
        struct error err = { 0 };
        assert_int_equal(blockdev_create(path, &o, &err), 0);
        struct blockdev *bd = NULL;
        struct blockdev_open_opts opts = { .format = "qcow2", .flags = BDEV_READ_ONLY };
        assert_int_equal(blockdev_open(&bd, path, &opts, &err), 0);
        uint64_t want = sizes[i] + CLUSTER < (256ull << 20) ? sizes[i] + CLUSTER : 256ull << 20;
        want = want < budget ? want : budget;
        assert_int_equal(qcow2_of(bd)->zcache.capacity, want / CLUSTER);
        blockdev_close(bd);
        unlink(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_size),
        cmocka_unit_test_setup(test_nowait_serves_cached, rewrite_compressed),
        cmocka_unit_test(test_no_cache),
        cmocka_unit_test(test_slots_allocated_at_first_read),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_readahead),
        cmocka_unit_test(test_populate_ahead),
        cmocka_unit_test_teardown(test_concurrent_rewrites, race_teardown),
        cmocka_unit_test(test_descriptor_reuse),
        cmocka_unit_test(test_option_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
