/* qcow2 driver: random I/O against a reference model, across the format's
 * variants, with qemu-img check and compare as the judges. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/block_int.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"

#define DISK_SIZE (8u << 20)

struct variant {
    int version;
    uint32_t cluster_size;
    int refcount_bits;
    bool extended_l2;
    enum blockdev_compression compression;
    bool lazy_refcounts;
};

static char dir[] = "/tmp/cowvisor-qcow2-XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    return run("rm -rf %s", dir);
}

static struct blockdev *create_and_open(const char *path, const struct variant *v, uint64_t size,
                                        const char *backing, const char *backing_fmt)
{
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = size;
    o.version = v->version;
    o.cluster_size = v->cluster_size;
    o.refcount_bits = v->refcount_bits;
    o.extended_l2 = v->extended_l2;
    o.compression = v->compression;
    o.lazy_refcounts = v->lazy_refcounts;
    o.backing_file = backing;
    o.backing_format = backing_fmt;
    if (qcow2_create(path, &o, &err) < 0) {
        fail_msg("create %s: %s", path, err.msg);
    }
    struct blockdev *bd;
    struct blockdev_open_opts opts = { 0 };
    if (blockdev_open(&bd, path, &opts, &err) < 0) {
        fail_msg("open %s: %s", path, err.msg);
    }
    return bd;
}

/* Random writes, zero writes, discards and compressed writes, mirrored in ref. */
static void random_io(struct blockdev *bd, uint8_t *ref, uint64_t seed, int ops)
{
    struct error err = { 0 };
    uint32_t cs = bd->cluster_size;
    uint8_t *buf = malloc(4 * cs + 8192);
    for (int i = 0; i < ops; i++) {
        uint64_t r = test_rand(&seed);
        uint64_t off = test_rand(&seed) % DISK_SIZE;
        uint64_t len = 1 + test_rand(&seed) % (3 * cs + 4096);
        if (off + len > DISK_SIZE) {
            len = DISK_SIZE - off;
        }
        switch (r % 8) {
        case 0: case 1: case 2: case 3:
            fill_pattern(buf, len, r);
            assert_int_equal(blockdev_pwrite(bd, off, buf, len, &err), 0);
            memcpy(ref + off, buf, len);
            break;
        case 4:
            assert_int_equal(blockdev_pwrite_zeroes(bd, off, len, (r >> 8) & 1 ? BDEV_ZERO_MAY_UNMAP : 0,
                                                    &err), 0);
            memset(ref + off, 0, len);
            break;
        case 5: {
            /* discard keeps or zeroes whole clusters: the model reads back what we get */
            assert_int_equal(blockdev_discard(bd, off, len, &err), 0);
            assert_int_equal(blockdev_pread(bd, off, ref + off, len, &err), 0);
            break;
        }
        case 6: {
            uint64_t c = (off / cs) * cs;
            uint64_t n = c + cs <= DISK_SIZE ? cs : DISK_SIZE - c;
            fill_pattern(buf, n, r);
            memset(buf + n / 2, 0, n / 4); /* compressible */
            /* Compressed writes never overwrite (QEMU's rule): the cluster
             * is discarded first, which a v2 image with a backing file
             * cannot do; there the write fails and changes nothing. */
            assert_int_equal(blockdev_discard(bd, c, n, &err), 0);
            assert_int_equal(blockdev_pread(bd, c, ref + c, n, &err), 0);
            int ret = blockdev_pwrite_compressed(bd, c, buf, n, &err);
            if (ret == -EIO && strstr(err.msg, "never overwrite")) {
                break;
            }
            assert_int_equal(ret, 0);
            memcpy(ref + c, buf, n);
            break;
        }
        default: {
            assert_int_equal(blockdev_pread(bd, off, buf, len, &err), 0);
            assert_memory_equal(buf, ref + off, len);
        }
        }
    }
    free(buf);
}

static void verify_all(struct blockdev *bd, const uint8_t *ref, uint64_t size)
{
    struct error err = { 0 };
    uint8_t *buf = malloc(size);
    assert_int_equal(blockdev_pread(bd, 0, buf, size, &err), 0);
    for (uint64_t i = 0; i < size; i++) {
        if (buf[i] != ref[i]) {
            fail_msg("data differs at offset %llu: %02x, expected %02x", (unsigned long long)i,
                     buf[i], ref[i]);
        }
    }
    free(buf);
}

static void judge_with_qemu(const char *img, const uint8_t *ref, uint64_t size)
{
    char raw[512];
    snprintf(raw, sizeof(raw), "%s.ref", img);
    assert_int_equal(write_file(raw, ref, size), 0);
    assert_int_equal(run("qemu-img check -q '%s'", img), 0);
    assert_int_equal(run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", img, raw), 0);
}

static void run_variant(const struct variant *v, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.qcow2", dir, name);
    uint8_t *ref = calloc(1, DISK_SIZE);
    struct blockdev *bd = create_and_open(path, v, DISK_SIZE, NULL, NULL);
    random_io(bd, ref, 0x9e3779b97f4a7c15ULL ^ v->cluster_size ^ (uint64_t)v->refcount_bits, 300);
    verify_all(bd, ref, DISK_SIZE);
    blockdev_close(bd);
    judge_with_qemu(path, ref, DISK_SIZE);

    /* Reopen: everything reads back from the file alone. */
    struct error err = { 0 };
    struct blockdev_open_opts ro = { .flags = BDEV_READ_ONLY };
    assert_int_equal(blockdev_open(&bd, path, &ro, &err), 0);
    verify_all(bd, ref, DISK_SIZE);
    blockdev_close(bd);
    free(ref);
}

static void test_v3_default(void **state)
{
    run_variant(&(struct variant){ 3, 65536, 16, false, BDEV_COMPRESSION_ZLIB, false }, "v3");
}

static void test_v2(void **state)
{
    run_variant(&(struct variant){ 2, 65536, 16, false, BDEV_COMPRESSION_ZLIB, false }, "v2");
}

static void test_small_clusters_refcount_bits(void **state)
{
    static const int bits[] = { 1, 2, 4, 8, 16, 32, 64 };
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "rb%d", bits[i]);
        run_variant(&(struct variant){ 3, 512 << (i % 4), bits[i], false,
                                       BDEV_COMPRESSION_ZLIB, false }, name);
    }
}

static void test_large_clusters(void **state)
{
    run_variant(&(struct variant){ 3, 2u << 20, 16, false, BDEV_COMPRESSION_ZSTD, false }, "2m");
}

static void test_extended_l2(void **state)
{
    run_variant(&(struct variant){ 3, 65536, 16, true, BDEV_COMPRESSION_ZSTD, false }, "extl2");
    run_variant(&(struct variant){ 3, 16384, 16, true, BDEV_COMPRESSION_ZLIB, false }, "extl2-16k");
}

static void test_lazy_refcounts(void **state)
{
    run_variant(&(struct variant){ 3, 65536, 16, false, BDEV_COMPRESSION_ZLIB, true }, "lazy");
}

/* top (qcow2) -> mid (qcow2) -> base (raw): reads fall through, writes COW. */
static void test_backing_chain(void **state)
{
    char base[512], mid[512], top[512];
    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(mid, sizeof(mid), "%s/mid.qcow2", dir);
    snprintf(top, sizeof(top), "%s/top.qcow2", dir);
    uint8_t *ref = malloc(DISK_SIZE);
    fill_pattern(ref, DISK_SIZE / 2, 42);
    memset(ref + DISK_SIZE / 2, 0, DISK_SIZE / 2);
    assert_int_equal(write_file(base, ref, DISK_SIZE / 2), 0); /* shorter than the overlays */

    const struct variant v = { 3, 4096, 16, false, BDEV_COMPRESSION_ZLIB, false };
    struct blockdev *bd = create_and_open(mid, &v, DISK_SIZE, "base.raw", "raw");
    random_io(bd, ref, 7, 100);
    blockdev_close(bd);
    const struct variant v2 = { 3, 65536, 16, true, BDEV_COMPRESSION_ZLIB, false };
    bd = create_and_open(top, &v2, 0, "mid.qcow2", "qcow2");
    assert_true(bd->size == DISK_SIZE);
    assert_non_null(bd->backing);
    assert_non_null(bd->backing->backing);
    random_io(bd, ref, 8, 200);
    verify_all(bd, ref, DISK_SIZE);
    blockdev_close(bd);
    judge_with_qemu(top, ref, DISK_SIZE);
    free(ref);
}

static void test_backing_loop_is_an_error(void **state)
{
    char a[512], b[512];
    snprintf(a, sizeof(a), "%s/loop-a.qcow2", dir);
    snprintf(b, sizeof(b), "%s/loop-b.qcow2", dir);
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 1M && "
                         "qemu-img create -q -f qcow2 -u -b loop-a.qcow2 -F qcow2 %s 1M && "
                         "qemu-img rebase -q -u -b loop-b.qcow2 -F qcow2 %s", a, b, a), 0);
    struct blockdev *bd;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, a, NULL, &err), -ELOOP);
    assert_non_null(strstr(err.msg, "loop"));
}

/* Images qemu-img and qemu-io wrote, compressed ones included, read back
 * byte-identical to qemu-img convert -O raw. */
static void test_read_what_qemu_wrote(void **state)
{
    static const char *const variants[] = {
        "-o compat=0.10",
        "-o cluster_size=512,refcount_bits=1",
        "-o cluster_size=2M,compression_type=zstd",
        "-o extended_l2=on,cluster_size=64k",
        "-o compression_type=zstd,refcount_bits=64",
        "-o lazy_refcounts=on",
    };
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        char img[512], raw[512], src[512], cmp[512];
        snprintf(img, sizeof(img), "%s/q%zu.qcow2", dir, i);
        snprintf(src, sizeof(src), "%s/q%zu.src", dir, i);
        snprintf(raw, sizeof(raw), "%s/q%zu.raw", dir, i);
        snprintf(cmp, sizeof(cmp), "%s/q%zu.cmp", dir, i);
        uint8_t *data = malloc(DISK_SIZE);
        fill_pattern(data, DISK_SIZE, i + 1);
        memset(data + DISK_SIZE / 4, 0, DISK_SIZE / 4);
        for (size_t j = 0; j < DISK_SIZE; j += 3) {
            data[j] = 0x11; /* compressible but not trivial */
        }
        assert_int_equal(write_file(src, data, DISK_SIZE), 0);
        assert_int_equal(run("qemu-img convert -c -f raw -O qcow2 %s %s %s && "
                             "qemu-io -f qcow2 -c 'write -P 0x5a 12345 70000' -c 'write -z 3M 1M' "
                             "-c 'discard 5M 512k' %s >/dev/null && "
                             "qemu-img convert -f qcow2 -O raw %s %s",
                             variants[i], src, img, img, img, raw), 0);
        FILE *f = fopen(raw, "rb");
        assert_non_null(f);
        assert_int_equal(fread(data, 1, DISK_SIZE, f), DISK_SIZE);
        fclose(f);
        struct blockdev *bd;
        struct error err = { 0 };
        struct blockdev_open_opts ro = { .flags = BDEV_READ_ONLY };
        if (blockdev_open(&bd, img, &ro, &err) < 0) {
            fail_msg("%s: %s", variants[i], err.msg);
        }
        verify_all(bd, data, DISK_SIZE);
        blockdev_close(bd);
        free(data);
    }
}

/* Threads write interleaved 4 KiB stripes of the same clusters (so they race
 * on allocation, COW from the backing file and L2 tables) and read their own
 * stripes back; afterwards the whole disk matches the model. */
#define STRIPE 4096
#define THREADS 4

struct worker {
    pthread_t thread;
    struct blockdev *bd;
    uint8_t *ref;
    int id;
    int failures;
};

static void *parallel_worker(void *arg)
{
    struct worker *w = arg;
    uint64_t seed = 0x1234 + (uint64_t)w->id;
    uint8_t buf[STRIPE];
    struct error err = { 0 };
    for (int i = 0; i < 400; i++) {
        uint64_t stripe = (test_rand(&seed) % (DISK_SIZE / STRIPE / THREADS)) * THREADS + (uint64_t)w->id;
        uint64_t off = stripe * STRIPE;
        uint32_t start = (uint32_t)(test_rand(&seed) % STRIPE);
        uint32_t len = 1 + (uint32_t)(test_rand(&seed) % (STRIPE - start));
        if (test_rand(&seed) % 3) {
            fill_pattern(buf, len, seed);
            if (blockdev_pwrite(w->bd, off + start, buf, len, &err) < 0) {
                print_error("write failed: %s\n", err.msg);
                w->failures++;
            }
            memcpy(w->ref + off + start, buf, len);
        } else if (blockdev_pread(w->bd, off, buf, STRIPE, &err) < 0 ||
                   memcmp(buf, w->ref + off, STRIPE) != 0) {
            int d = 0;
            while (d < STRIPE && buf[d] == w->ref[off + d]) {
                d++;
            }
            print_error("thread %d: stripe at %llu reads back wrong at +%d: %02x vs %02x (%s)\n",
                        w->id, (unsigned long long)off, d, buf[d], w->ref[off + d], err.msg);
            w->failures++;
        }
    }
    return NULL;
}

static void test_parallel_io(void **state)
{
    char base[512], top[512];
    snprintf(base, sizeof(base), "%s/par-base.qcow2", dir);
    snprintf(top, sizeof(top), "%s/par-top.qcow2", dir);
    uint8_t *ref = malloc(DISK_SIZE);
    fill_pattern(ref, DISK_SIZE, 99);
    assert_int_equal(write_file(top, ref, DISK_SIZE), 0);
    assert_int_equal(run("qemu-img convert -q -c -f raw -O qcow2 %s %s", top, base), 0);
    const struct variant variants[] = {
        { 3, 65536, 16, false, BDEV_COMPRESSION_ZLIB, false },
        { 3, 65536, 16, true, BDEV_COMPRESSION_ZLIB, false },
    };
    uint8_t *orig = malloc(DISK_SIZE);
    memcpy(orig, ref, DISK_SIZE);
    for (size_t v = 0; v < 2; v++) {
        memcpy(ref, orig, DISK_SIZE);
        struct blockdev *bd = create_and_open(top, &variants[v], 0, "par-base.qcow2", "qcow2");
        struct worker w[THREADS];
        for (int i = 0; i < THREADS; i++) {
            w[i] = (struct worker){ .bd = bd, .ref = ref, .id = i };
            assert_int_equal(pthread_create(&w[i].thread, NULL, parallel_worker, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(w[i].thread, NULL);
            assert_int_equal(w[i].failures, 0);
        }
        verify_all(bd, ref, DISK_SIZE);
        blockdev_close(bd);
        judge_with_qemu(top, ref, DISK_SIZE);
    }
    free(orig);
    free(ref);
}

/* A depth-3 chain qemu-img and qemu-io made (raw base, qcow2 middle with
 * subclusters, compressed qcow2 top) reads like qemu-img convert says. */
static void test_read_qemu_chain(void **state)
{
    char base[512], mid[512], top[512], raw[512];
    snprintf(base, sizeof(base), "%s/qc-base.raw", dir);
    snprintf(mid, sizeof(mid), "%s/qc-mid.qcow2", dir);
    snprintf(top, sizeof(top), "%s/qc-top.qcow2", dir);
    snprintf(raw, sizeof(raw), "%s/qc-top.raw", dir);
    assert_int_equal(run("qemu-img create -q -f raw %s 3M && "
                         "qemu-io -f raw -c 'write -P 0x61 0 3M' %s >/dev/null && "
                         "qemu-img create -q -f qcow2 -o extended_l2=on -b qc-base.raw -F raw %s 4M && "
                         "qemu-io -f qcow2 -c 'write -P 0x62 100k 10k' -c 'write -z 1M 64k' "
                         "-c 'write -P 0x63 3M 512k' %s >/dev/null && "
                         "qemu-img create -q -f qcow2 -o compression_type=zstd,cluster_size=4k "
                         "-b qc-mid.qcow2 -F qcow2 %s && "
                         "qemu-io -f qcow2 -c 'write -c -P 0x64 8k 4k' -c 'write -P 0x65 98k 5k' "
                         "-c 'discard 2M 64k' %s >/dev/null && "
                         "qemu-img convert -O raw %s %s", base, base, mid, mid, top, top, top, raw), 0);
    FILE *f = fopen(raw, "rb");
    assert_non_null(f);
    uint8_t *want = malloc(4 << 20);
    assert_int_equal(fread(want, 1, 4 << 20, f), 4 << 20);
    fclose(f);
    struct blockdev *bd;
    struct error err = { 0 };
    struct blockdev_open_opts ro = { .flags = BDEV_READ_ONLY };
    assert_int_equal(blockdev_open(&bd, top, &ro, &err), 0);
    assert_true(bd->size == 4 << 20);
    verify_all(bd, want, 4 << 20);
    /* block status walks the chain: depth 0 for the top's own data */
    struct block_status st;
    assert_int_equal(blockdev_block_status(bd, 8192, 4096, &st, &err), 0);
    assert_int_equal(st.depth, 0);
    assert_true(st.flags & BDEV_STATUS_COMPRESSED);
    assert_int_equal(blockdev_block_status(bd, 3 << 20, 4096, &st, &err), 0);
    assert_int_equal(st.depth, 1);
    assert_int_equal(blockdev_block_status(bd, 0, 4096, &st, &err), 0);
    assert_int_equal(st.depth, 2);
    blockdev_close(bd);
    free(want);
}

/* Zero writes at subcluster granularity (2 KiB subclusters of 64 KiB
 * clusters); a discard inside a cluster leaves it, as QEMU 7.2's (discards
 * are aligned to clusters, subclusters or not); qemu-img map agrees, and
 * discarding the whole cluster frees the host cluster. */
static void test_subcluster_discard(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/sc.qcow2", dir);
    const struct variant v = { 3, 65536, 16, true, BDEV_COMPRESSION_ZLIB, false };
    struct blockdev *bd = create_and_open(path, &v, 1 << 20, NULL, NULL);
    struct error err = { 0 };
    uint8_t buf[65536];
    memset(buf, 0x77, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, 0, buf, sizeof(buf), &err), 0);
    assert_int_equal(blockdev_discard(bd, 4096, 4096, &err), 0);
    assert_int_equal(blockdev_pwrite_zeroes(bd, 16384, 2048, 0, &err), 0);
    struct block_status st;
    assert_int_equal(blockdev_block_status(bd, 0, 65536, &st, &err), 0);
    assert_true(st.len == 16384 && (st.flags & BDEV_STATUS_DATA));
    assert_int_equal(blockdev_block_status(bd, 16384, 65536 - 16384, &st, &err), 0);
    assert_true(st.len == 2048 && (st.flags & BDEV_STATUS_ZERO) && (st.flags & BDEV_STATUS_ALLOCATED));
    memset(buf + 16384, 0, 2048);
    uint8_t *ref = calloc(1, 1 << 20);
    memcpy(ref, buf, sizeof(buf));
    verify_all(bd, ref, 1 << 20);
    blockdev_close(bd);
    judge_with_qemu(path, ref, 1 << 20);
    assert_int_equal(run("qemu-img map --output=json %s | grep -q '\"start\": 16384, \"length\": 2048, "
                         "\"depth\": 0, \"present\": true, \"zero\": true, \"data\": false'", path), 0);
    /* Discarding every subcluster frees the host cluster. */
    assert_int_equal(blockdev_open(&bd, path, NULL, &err), 0);
    assert_int_equal(blockdev_discard(bd, 0, 65536, &err), 0);
    blockdev_close(bd);
    memset(ref, 0, 65536);
    judge_with_qemu(path, ref, 1 << 20);
    /* qemu-img check prints no "allocated" line when no cluster is allocated */
    assert_int_equal(run("qemu-img check %s | grep -q 'allocated'", path), 1);
    free(ref);
}

/* 512-byte clusters with 64-bit refcounts: 64 clusters per refcount block and
 * a one-cluster refcount table cover only 2 MiB, so filling 8 MiB moves the
 * refcount table several times; growing the disk moves the L1 table. */
static void test_metadata_growth(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/growth.qcow2", dir);
    const struct variant v = { 3, 512, 64, false, BDEV_COMPRESSION_ZLIB, false };
    struct blockdev *bd = create_and_open(path, &v, 1 << 20, NULL, NULL);
    struct error err = { 0 };
    uint8_t *ref = malloc(DISK_SIZE);
    fill_pattern(ref, DISK_SIZE, 5);
    assert_int_equal(blockdev_pwrite(bd, 0, ref, 1 << 20, &err), 0);
    assert_int_equal(blockdev_truncate(bd, DISK_SIZE, false, PREALLOC_OFF, &err), 0);
    for (uint64_t off = 1 << 20; off < DISK_SIZE; off += 65536) {
        assert_int_equal(blockdev_pwrite(bd, off, ref + off, 65536, &err), 0);
    }
    verify_all(bd, ref, DISK_SIZE);
    blockdev_close(bd);
    judge_with_qemu(path, ref, DISK_SIZE);
    /* the refcount table moved past the start of the file */
    assert_int_equal(run("test $(od -An -tu8 --endian=big -j48 -N8 %s) -gt 2048", path), 0);
    /* 1 GiB needs an L1 table of 512 clusters, far more than fit between the
     * refcount blocks of 64 clusters each: it goes to an area of its own. */
    assert_int_equal(blockdev_open(&bd, path, NULL, &err), 0);
    assert_int_equal(blockdev_truncate(bd, 1ULL << 30, false, PREALLOC_OFF, &err), 0);
    assert_int_equal(blockdev_pwrite(bd, 900ULL << 20, ref, 1 << 20, &err), 0);
    blockdev_close(bd);
    assert_int_equal(run("qemu-img check -q %s", path), 0);
    char raw[600];
    snprintf(raw, sizeof(raw), "%s.part", path);
    assert_int_equal(write_file(raw, ref, 1 << 20), 0);
    assert_int_equal(run("qemu-img compare -q -f raw %s 'json:{\"driver\": \"raw\", "
                         "\"offset\": %llu, \"size\": 1048576, \"file\": {\"driver\": "
                         "\"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": "
                         "\"%s\"}}}'", raw, 900ULL << 20, path), 0);
    free(ref);
}

/* O_DIRECT (cache=none): unaligned metadata and guest writes go through
 * aligned bounce buffers; the result is the same image. */
static void test_direct_io(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/direct.qcow2", dir);
    const struct variant v = { 3, 16384, 16, true, BDEV_COMPRESSION_ZSTD, false };
    blockdev_close(create_and_open(path, &v, DISK_SIZE, NULL, NULL));
    struct blockdev *bd;
    struct error err = { 0 };
    struct blockdev_open_opts opts = { .flags = BDEV_NO_CACHE };
    int ret = blockdev_open(&bd, path, &opts, &err);
    if (ret == -EINVAL) {
        skip();     /* a file system without O_DIRECT (tmpfs) */
    }
    assert_int_equal(ret, 0);
    uint8_t *ref = calloc(1, DISK_SIZE);
    random_io(bd, ref, 77, 200);
    verify_all(bd, ref, DISK_SIZE);
    blockdev_close(bd);
    judge_with_qemu(path, ref, DISK_SIZE);
    free(ref);
}

static void test_preallocation(void **state)
{
    static const enum blockdev_prealloc modes[] = { PREALLOC_METADATA, PREALLOC_FALLOC,
                                                    PREALLOC_FULL };
    for (size_t i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/prealloc%zu.qcow2", dir, i);
        struct blockdev_create_opts o;
        struct error err = { 0 };
        blockdev_create_opts_init(&o);
        o.size = 3 << 20;
        o.prealloc = modes[i];
        assert_int_equal(qcow2_create(path, &o, &err), 0);
        /* Every cluster is allocated and reads zero; qemu-img agrees. */
        assert_int_equal(run("qemu-img check -q %s", path), 0);
        assert_int_equal(run("qemu-img map --output=json %s | grep -q '\"data\": false'", path), 1);
        struct blockdev *bd;
        assert_int_equal(blockdev_open(&bd, path, NULL, &err), 0);
        struct block_status st;
        assert_int_equal(blockdev_block_status(bd, 0, bd->size, &st, &err), 0);
        assert_true(st.flags & BDEV_STATUS_DATA);
        assert_true(st.len == bd->size);
        uint8_t buf[4096];
        assert_int_equal(blockdev_pread(bd, 1 << 20, buf, sizeof(buf), &err), 0);
        for (size_t j = 0; j < sizeof(buf); j++) {
            assert_int_equal(buf[j], 0);
        }
        /* Grow with preallocation, shrink back. */
        assert_int_equal(blockdev_truncate(bd, 5 << 20, false, modes[i], &err), 0);
        assert_int_equal(blockdev_truncate(bd, 2 << 20, false, PREALLOC_OFF, &err), -EINVAL);
        assert_int_equal(blockdev_truncate(bd, 2 << 20, true, PREALLOC_OFF, &err), 0);
        blockdev_close(bd);
        assert_int_equal(run("qemu-img check -q %s && qemu-img info %s | grep -q '(2097152 bytes)'",
                             path, path), 0);
    }
}

/* Unknown header extensions survive a header rewrite; unknown autoclear bits
 * are cleared by the first write. */
static void test_header_rewrite_keeps_unknown(void **state)
{
    char path[512], base[512];
    snprintf(path, sizeof(path), "%s/ext.qcow2", dir);
    snprintf(base, sizeof(base), "%s/ext-base.qcow2", dir);
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 1M && qemu-img create -q -f qcow2 %s 1M",
                         base, path), 0);
    /* Insert an unknown extension (type 0x12345678, 8 bytes) after the header. */
    assert_int_equal(run("printf '\\022\\064\\126\\170\\000\\000\\000\\010ABCDEFGH"
                         "\\000\\000\\000\\000\\000\\000\\000\\000' | "
                         "dd of=%s bs=1 seek=112 conv=notrunc status=none && "
                         "printf '\\000\\000\\000\\000\\000\\000\\000\\200' | "
                         "dd of=%s bs=1 seek=88 conv=notrunc status=none", path, path), 0);
    struct blockdev *bd;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, path, NULL, &err), 0);
    assert_int_equal(qcow2_change_backing_file(bd, "ext-base.qcow2", "qcow2", &err), 0);
    uint8_t b[512] = { 7 };
    assert_int_equal(blockdev_pwrite(bd, 0, b, sizeof(b), &err), 0);
    blockdev_close(bd);
    assert_int_equal(run("grep -q ABCDEFGH %s", path), 0);
    assert_int_equal(run("qemu-img info %s | grep -q 'backing file: ext-base.qcow2'", path), 0);
    assert_int_equal(run("qemu-img check -q %s", path), 0);
    /* autoclear_features (offset 88) is zero again */
    assert_int_equal(run("test $(od -An -tx1 -j88 -N8 %s | tr -d ' \n') = 0000000000000000", path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_default),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_small_clusters_refcount_bits),
        cmocka_unit_test(test_large_clusters),
        cmocka_unit_test(test_extended_l2),
        cmocka_unit_test(test_lazy_refcounts),
        cmocka_unit_test(test_backing_chain),
        cmocka_unit_test(test_backing_loop_is_an_error),
        cmocka_unit_test(test_read_what_qemu_wrote),
        cmocka_unit_test(test_parallel_io),
        cmocka_unit_test(test_read_qemu_chain),
        cmocka_unit_test(test_subcluster_discard),
        cmocka_unit_test(test_metadata_growth),
        cmocka_unit_test(test_direct_io),
        cmocka_unit_test(test_preallocation),
        cmocka_unit_test(test_header_rewrite_keeps_unknown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
