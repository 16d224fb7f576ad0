/* blockdev_pread_nowait: when it succeeds it returns exactly what
 * blockdev_pread returns; it declines (-EAGAIN) instead of doing I/O it
 * would wait for: uncached L2 tables, compressed clusters not in the
 * decompressed-cluster cache, O_DIRECT files.
 * Reads of an overlay fall through to its backing file the same way. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"

#define BASE_SIZE (2u << 20)
#define DISK_SIZE (4u << 20)
#define CLUSTER (64u << 10)

static char dir[] = "/tmp/cowvisor-nowait-XXXXXX";
static char base[128], overlay[128];
static uint8_t base_ref[BASE_SIZE];     /* the base file */
static uint8_t ref[DISK_SIZE];          /* what the overlay reads as */

static struct blockdev *open_image(const char *path, unsigned flags)
{
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { .flags = flags };
    struct error err = { 0 };
    if (blockdev_open(&bd, path, &opts, &err) < 0) {
        fail_msg("open %s: %s", path, err.msg);
    }
    return bd;
}

/* base.raw (2 MiB of pattern) under overlay.qcow2 (4 MiB): cluster 1 data,
 * cluster 2 zeroed, cluster 3 compressed, the rest from the base or zero
 * past its end. */
static int setup(void **state)
{
    (void)state;
    struct error err = { 0 };
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(overlay, sizeof(overlay), "%s/overlay.qcow2", dir);
    fill_pattern(base_ref, BASE_SIZE, 1);
    memset(ref, 0, sizeof(ref));
    memcpy(ref, base_ref, BASE_SIZE);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = DISK_SIZE;
    o.cluster_size = CLUSTER;
    o.backing_file = base;
    o.backing_format = "raw";
    if (write_file(base, base_ref, BASE_SIZE) < 0 || qcow2_create(overlay, &o, &err) < 0) {
        return -1;
    }
    struct blockdev *bd = open_image(overlay, 0);
    fill_pattern(ref + CLUSTER, CLUSTER, 2);
    for (uint32_t i = 0; i < CLUSTER; i++) {
        ref[3 * CLUSTER + i] = (uint8_t)(i % 251 / 8);     /* compressible, or it is stored plain */
    }
    memset(ref + 2 * CLUSTER, 0, CLUSTER);
    int ret = blockdev_pwrite(bd, CLUSTER, ref + CLUSTER, CLUSTER, &err);
    ret = ret ? ret : blockdev_pwrite_zeroes(bd, 2 * CLUSTER, CLUSTER, 0, &err);
    ret = ret ? ret : blockdev_pwrite_compressed(bd, 3 * CLUSTER, ref + 3 * CLUSTER, CLUSTER, &err);
    blockdev_close(bd);
    return ret;
}

static int teardown(void **state)
{
    (void)state;
    return run("rm -rf %s", dir);
}

static void test_raw(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(base, BDEV_READ_ONLY);
    uint8_t buf[8192];
    /* The file was just written: the page cache holds it. */
    for (uint64_t off = 0; off < BASE_SIZE; off += 100 * 1024 + 512) {
        assert_int_equal(blockdev_pread_nowait(bd, off, buf, sizeof(buf)), 0);
        assert_memory_equal(buf, base_ref + off, sizeof(buf));
    }
    assert_true(blockdev_pread_nowait(bd, BASE_SIZE - 512, buf, 1024) < 0);   /* past the end */
    blockdev_close(bd);
}

static void test_direct_declines(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(base, BDEV_READ_ONLY | BDEV_NO_CACHE);
    uint8_t buf[4096];
    assert_int_equal(blockdev_pread_nowait(bd, 0, buf, sizeof(buf)), -EAGAIN);
    blockdev_close(bd);
}

static void test_qcow2_overlay(void **state)
{
    (void)state;
    struct blockdev *bd = open_image(overlay, BDEV_READ_ONLY);
    struct error err = { 0 };
    static uint8_t buf[CLUSTER];
    /* Cluster 1's L2 table is not cached yet right after open. */
    assert_int_equal(blockdev_pread_nowait(bd, CLUSTER, buf, 4096), -EAGAIN);
    assert_int_equal(blockdev_pread(bd, CLUSTER, buf, 4096, &err), 0);
    /* Now every kind of cluster but the compressed one reads without waiting:
     * data, zero, from the base, zero past the base's end. */
    uint64_t offs[] = { CLUSTER, CLUSTER + 512, 2 * CLUSTER, 5 * CLUSTER + 4096, BASE_SIZE - 4096,
                        BASE_SIZE + 8192, DISK_SIZE - CLUSTER };
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        memset(buf, 0xee, sizeof(buf));
        assert_int_equal(blockdev_pread_nowait(bd, offs[i], buf, CLUSTER / 2), 0);
        assert_memory_equal(buf, ref + offs[i], CLUSTER / 2);
    }
    /* Across the data/zero boundary and the end of the base. */
    assert_int_equal(blockdev_pread_nowait(bd, 2 * CLUSTER - 4096, buf, 8192), 0);
    assert_memory_equal(buf, ref + 2 * CLUSTER - 4096, 8192);
    assert_int_equal(blockdev_pread_nowait(bd, BASE_SIZE - 4096, buf, 8192), 0);
    assert_memory_equal(buf, ref + BASE_SIZE - 4096, 8192);
    /* A compressed cluster means decompression work: declined until a read
     * has put it in the decompressed-cluster cache, then served from there. */
    struct block_status st;
    assert_int_equal(blockdev_block_status(bd, 3 * CLUSTER, CLUSTER, &st, &err), 0);
    assert_true(st.flags & BDEV_STATUS_COMPRESSED);
    assert_int_equal(blockdev_pread_nowait(bd, 3 * CLUSTER, buf, 4096), -EAGAIN);
    assert_int_equal(blockdev_pread(bd, 3 * CLUSTER, buf, CLUSTER, &err), 0);
    assert_memory_equal(buf, ref + 3 * CLUSTER, CLUSTER);
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(blockdev_pread_nowait(bd, 3 * CLUSTER + 4096, buf, 8192), 0);
    assert_memory_equal(buf, ref + 3 * CLUSTER + 4096, 8192);
    blockdev_close(bd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_direct_declines),
        cmocka_unit_test(test_qcow2_overlay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
