/* qcow2 driver: random I/O against a reference model, across the format's
 * variants, with qemu-img check and compare as the judges. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"

#define DISK_SIZE (8u << 20)

struct variant {
    int version;
    uint32_t cluster_size;
    int refcount_bits;
    bool extended_l2;
    enum qcow2_compression compression;
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
    struct qcow2_create_opts o;
    struct error err = { 0 };
    qcow2_create_opts_init(&o);
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
            int ret = blockdev_pwrite_compressed(bd, c, buf, n, &err);
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
    run_variant(&(struct variant){ 3, 65536, 16, false, QCOW2_COMPRESSION_ZLIB, false }, "v3");
}

static void test_v2(void **state)
{
    run_variant(&(struct variant){ 2, 65536, 16, false, QCOW2_COMPRESSION_ZLIB, false }, "v2");
}

static void test_small_clusters_refcount_bits(void **state)
{
    static const int bits[] = { 1, 2, 4, 8, 16, 32, 64 };
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "rb%d", bits[i]);
        run_variant(&(struct variant){ 3, 512 << (i % 4), bits[i], false,
                                       QCOW2_COMPRESSION_ZLIB, false }, name);
    }
}

static void test_large_clusters(void **state)
{
    run_variant(&(struct variant){ 3, 2u << 20, 16, false, QCOW2_COMPRESSION_ZSTD, false }, "2m");
}

static void test_extended_l2(void **state)
{
    run_variant(&(struct variant){ 3, 65536, 16, true, QCOW2_COMPRESSION_ZSTD, false }, "extl2");
    run_variant(&(struct variant){ 3, 16384, 16, true, QCOW2_COMPRESSION_ZLIB, false }, "extl2-16k");
}

static void test_lazy_refcounts(void **state)
{
    run_variant(&(struct variant){ 3, 65536, 16, false, QCOW2_COMPRESSION_ZLIB, true }, "lazy");
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

    const struct variant v = { 3, 4096, 16, false, QCOW2_COMPRESSION_ZLIB, false };
    struct blockdev *bd = create_and_open(mid, &v, DISK_SIZE, "base.raw", "raw");
    random_io(bd, ref, 7, 100);
    blockdev_close(bd);
    const struct variant v2 = { 3, 65536, 16, true, QCOW2_COMPRESSION_ZLIB, false };
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
