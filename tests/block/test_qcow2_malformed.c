/* Malformed qcow2 images: every one gets a clear error, no crash, and the
 * file is left exactly as it was. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/block_int.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"
#include "util/bswap.h"

static char dir[] = "/tmp/cowvisor-malformed-XXXXXX";
static char good[600];

static int setup(void **state)
{
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(good, sizeof(good), "%s/good.qcow2", dir);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 4 << 20;
    if (qcow2_create(good, &o, NULL) < 0) {
        return -1;
    }
    struct blockdev *bd;
    if (blockdev_open(&bd, good, NULL, NULL) < 0) {
        return -1;
    }
    uint8_t buf[70000];
    fill_pattern(buf, sizeof(buf), 3);
    int ret = blockdev_pwrite(bd, 100000, buf, sizeof(buf), NULL);
    blockdev_close(bd);
    return ret;
}

static int teardown(void **state)
{
    return run("rm -rf %s", dir);
}

struct patch {
    uint64_t off;
    int width;          /* 4 or 8: a big-endian field; 0: truncate the file at off */
    uint64_t value;
};

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    *len = fread(buf, 1, *len, f);
    fclose(f);
    return buf;
}

static void make_bad(const char *path, const struct patch *p, int n)
{
    assert_int_equal(run("cp %s %s", good, path), 0);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    for (int i = 0; i < n; i++) {
        uint8_t b[8];
        if (p[i].width == 0) {
            assert_int_equal(ftruncate(fd, (off_t)p[i].off), 0);
        } else if (p[i].width == 4) {
            st_be32(b, (uint32_t)p[i].value);
            assert_int_equal(pwrite(fd, b, 4, (off_t)p[i].off), 4);
        } else {
            st_be64(b, p[i].value);
            assert_int_equal(pwrite(fd, b, 8, (off_t)p[i].off), 8);
        }
    }
    close(fd);
}

/* Opens (read-write when it can) and reads everything; expects an error
 * containing `expect`, and the file unchanged. */
static void expect_rejected(const char *name, const struct patch *p, int n, const char *expect)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s.qcow2", dir, name);
    make_bad(path, p, n);
    size_t before_len, after_len;
    char *before = read_all(path, &before_len);

    struct blockdev *bd;
    struct error err = { 0 };
    struct blockdev_open_opts opts = { .format = "qcow2", .flags = BDEV_READ_ONLY };
    int ret = blockdev_open(&bd, path, &opts, &err);
    if (ret == 0) {
        uint8_t *buf = malloc(bd->size);
        ret = blockdev_pread(bd, 0, buf, bd->size, &err);
        free(buf);
        blockdev_close(bd);
    }
    if (ret >= 0) {
        fail_msg("%s: accepted", name);
    }
    if (!strstr(err.msg, expect)) {
        fail_msg("%s: message '%s' does not contain '%s'", name, err.msg, expect);
    }
    char *after = read_all(path, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);
}

static void test_bad_header_fields(void **state)
{
    expect_rejected("magic", (struct patch[]){ { 0, 4, 0x12345678 } }, 1, "not in qcow2 format");
    expect_rejected("version1", (struct patch[]){ { 4, 4, 1 } }, 1, "Unsupported qcow2 version 1");
    expect_rejected("version4", (struct patch[]){ { 4, 4, 4 } }, 1, "Unsupported qcow2 version 4");
    expect_rejected("cbits8", (struct patch[]){ { 20, 4, 8 } }, 1, "Unsupported cluster size");
    expect_rejected("cbits22", (struct patch[]){ { 20, 4, 22 } }, 1, "Unsupported cluster size");
    expect_rejected("cbits63", (struct patch[]){ { 20, 4, 63 } }, 1, "Unsupported cluster size");
    expect_rejected("hugesize", (struct patch[]){ { 24, 8, 1ULL << 62 } }, 1, "too big");
    /* Needs 2^23 L1 entries: more than an L1 table may hold, but QEMU calls
     * that a small L1 table, not a big image (iotest 054). */
    expect_rejected("bigsize", (struct patch[]){ { 24, 8, 1ULL << 52 } }, 1,
                    "L1 table is too small");
    expect_rejected("refcount_order", (struct patch[]){ { 96, 4, 7 } }, 1, "may not exceed 64");
    expect_rejected("header_length", (struct patch[]){ { 100, 4, 107 } }, 1, "header length");
    expect_rejected("incompat", (struct patch[]){ { 72, 8, 1ULL << 40 } }, 1,
                    "Unknown incompatible feature: 10000000000");
    expect_rejected("crypt", (struct patch[]){ { 32, 4, 1 } }, 1, "Encrypted");
    expect_rejected("backing_name", (struct patch[]){ { 8, 8, 65530 }, { 16, 4, 100 } }, 2,
                    "Backing file name too long");
    expect_rejected("backing_offset", (struct patch[]){ { 8, 8, 65537 }, { 16, 4, 1 } }, 2,
                    "Invalid backing file offset");
    expect_rejected("header_too_long", (struct patch[]){ { 100, 4, 0x7fffffff } }, 1,
                    "qcow2 header exceeds cluster size");
}

static void test_bad_tables(void **state)
{
    /* good.qcow2: header 0, refcount table 64k, refcount block 128k, L1 192k */
    expect_rejected("l1_beyond", (struct patch[]){ { 40, 8, 1ULL << 40 } }, 1,
                    "beyond the end of the file");
    expect_rejected("l1_header", (struct patch[]){ { 40, 8, 0 } }, 1, "overlaps the header");
    expect_rejected("l1_unaligned", (struct patch[]){ { 40, 8, 0x30200 } }, 1, "Active L1 table offset invalid");
    expect_rejected("l1_huge", (struct patch[]){ { 36, 4, 0x7fffffff } }, 1, "too large");
    expect_rejected("l1_small", (struct patch[]){ { 36, 4, 0 } }, 1, "L1 table is too small");
    expect_rejected("rt_beyond", (struct patch[]){ { 48, 8, 1ULL << 40 } }, 1,
                    "beyond the end of the file");
    expect_rejected("rt_overlap_l1", (struct patch[]){ { 48, 8, 0x30000 } }, 1, "overlaps");
    expect_rejected("rt_empty", (struct patch[]){ { 56, 4, 0 } }, 1, "no refcount table");
    expect_rejected("snapshots", (struct patch[]){ { 60, 4, 100000 } }, 1, "Snapshot table too large");
    expect_rejected("truncated", (struct patch[]){ { 50, 0, 0 } }, 1, "not in qcow2 format");
}

static void test_bad_l2_entries(void **state)
{
    /* The L1 entry (at 192k) points to the L2 table; make it unaligned. */
    expect_rejected("l2_unaligned", (struct patch[]){ { 0x30000, 8, (1ULL << 63) | 0x40200 } }, 1,
                    "unaligned");
    /* An L2 table at the header. */
    expect_rejected("l2_header", (struct patch[]){ { 0x30000, 8, 1ULL << 63 | 0x200 } }, 1,
                    "unaligned");
}

static void test_corrupt_image_refuses_rw_open(void **state)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/corrupt.qcow2", dir);
    make_bad(path, (struct patch[]){ { 72, 8, 2 } }, 1);
    struct blockdev *bd;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, path, NULL, &err), -EACCES);
    assert_non_null(strstr(err.msg, "corrupt"));
    struct blockdev_open_opts ro = { .flags = BDEV_READ_ONLY };
    assert_int_equal(blockdev_open(&bd, path, &ro, &err), 0);
    blockdev_close(bd);
}

/* A write that would land on metadata marks the image corrupt and stops. */
static void test_overlap_marks_corrupt(void **state)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/overlap.qcow2", dir);
    assert_int_equal(run("cp %s %s", good, path), 0);
    /* Find the L2 table and point the first data entry at the L1 table. */
    int fd = open(path, O_RDWR);
    uint8_t b[8];
    assert_int_equal(pread(fd, b, 8, 0x30000), 8);
    uint64_t l2 = ld_be64(b) & 0x00fffffffffffe00ULL;
    st_be64(b, (1ULL << 63) | 0x30000);
    assert_int_equal(pwrite(fd, b, 8, (off_t)(l2 + 8)), 8);   /* guest cluster 1 */
    close(fd);
    struct blockdev *bd;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, path, NULL, &err), 0);
    uint8_t data[512] = { 1 };
    assert_int_equal(blockdev_pwrite(bd, 65536, data, sizeof(data), &err), -EIO);
    assert_non_null(strstr(err.msg, "metadata"));
    assert_int_equal(blockdev_pwrite(bd, 0, data, sizeof(data), &err), -EACCES);
    blockdev_close(bd);
    assert_int_equal(run("qemu-img info %s | grep -q 'corrupt: true'", path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_header_fields),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_bad_l2_entries),
        cmocka_unit_test(test_corrupt_image_refuses_rw_open),
        cmocka_unit_test(test_overlap_marks_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
