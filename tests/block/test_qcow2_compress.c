/* Decompressing a zstd cluster (qcow2_compress.c) as QEMU's qcow2 accepts
 * it: one frame that states its size (what QEMU writes; decompressed in one
 * call), a frame without its size, a cluster split over several frames, and
 * the bytes of the next compressed cluster after the frame. Damaged or short
 * data fails with -EIO; nothing is ever written past the cluster. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <zstd.h>

#include "block/qcow2_int.h"

#define CLUSTER (64u << 10)
#define CAP (CLUSTER + 4096)

static uint8_t cluster[CLUSTER], out[CLUSTER + 64], comp[CAP];

static void fill(void)
{
    for (uint32_t i = 0; i < CLUSTER; i++) {
        cluster[i] = (uint8_t)((i / 97) * 7 + (i % 13 == 0));
    }
}

/* Compresses cluster[from, to) as one frame at dst; with_size: the frame
 * header states the content size. Returns the frame's length. */
static size_t frame(uint8_t *dst, size_t cap, uint32_t from, uint32_t to, bool with_size)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size);
    ZSTD_outBuffer o = { dst, cap, 0 };
    ZSTD_inBuffer in = { cluster + from, to - from, 0 };
    size_t r = with_size ? ZSTD_compressStream2(c, &o, &in, ZSTD_e_end) : 0;
    if (!with_size) {
        /* Fed in two steps, zstd cannot know the size when it writes the header. */
        in.size = (to - from) / 2;
        ZSTD_compressStream2(c, &o, &in, ZSTD_e_continue);
        in.size = to - from;
        r = ZSTD_compressStream2(c, &o, &in, ZSTD_e_end);
    }
    assert_int_equal(r, 0);
    ZSTD_freeCCtx(c);
    return o.pos;
}

static void assert_decompresses(size_t len)
{
    memset(out, 0xee, sizeof(out));
    assert_int_equal(qcow2_decompress(BDEV_COMPRESSION_ZSTD, comp, len, out, CLUSTER), 0);
    assert_memory_equal(out, cluster, CLUSTER);
    assert_int_equal(out[CLUSTER], 0xee);      /* nothing written past the cluster */
}

static void test_one_frame_with_size(void **state)
{
    fill();
    size_t n = qcow2_compress(BDEV_COMPRESSION_ZSTD, cluster, CLUSTER, comp, CAP);
    assert_true(n > 0 && n < CLUSTER);
    assert_true(ZSTD_getFrameContentSize(comp, n) == CLUSTER);
    assert_decompresses(n);
    /* What follows in the file (the next cluster's bytes) is ignored. */
    memset(comp + n, 0x5a, 700);
    assert_decompresses(n + 700);
}

static void test_frame_without_size(void **state)
{
    fill();
    size_t n = frame(comp, CAP, 0, CLUSTER, false);
    assert_true(ZSTD_getFrameContentSize(comp, n) == ZSTD_CONTENTSIZE_UNKNOWN);
    memset(comp + n, 0x5a, 300);
    assert_decompresses(n + 300);
}

static void test_several_frames(void **state)
{
    fill();
    size_t a = frame(comp, CAP, 0, CLUSTER / 4, true);
    size_t b = frame(comp + a, CAP - a, CLUSTER / 4, CLUSTER, true);
    memset(comp + a + b, 0x5a, 100);
    assert_decompresses(a + b + 100);
}

static void test_damaged_and_short(void **state)
{
    fill();
    size_t n = qcow2_compress(BDEV_COMPRESSION_ZSTD, cluster, CLUSTER, comp, CAP);
    assert_int_equal(qcow2_decompress(BDEV_COMPRESSION_ZSTD, comp, n / 2, out, CLUSTER), -EIO);
    /* A frame of a quarter cluster: the cluster is incomplete. */
    size_t q = frame(comp, CAP, 0, CLUSTER / 4, true);
    assert_int_equal(qcow2_decompress(BDEV_COMPRESSION_ZSTD, comp, q, out, CLUSTER), -EIO);
    memset(comp + q, 0x5a, 100);
    assert_int_equal(qcow2_decompress(BDEV_COMPRESSION_ZSTD, comp, q + 100, out, CLUSTER), -EIO);
    /* A frame of more than a cluster: the cluster is its start (as QEMU
     * reads it), and not one byte more is written. */
    size_t big = frame(comp, CAP, 0, CLUSTER, true);
    memset(out, 0xee, sizeof(out));
    assert_int_equal(qcow2_decompress(BDEV_COMPRESSION_ZSTD, comp, big, out, CLUSTER / 2), 0);
    assert_memory_equal(out, cluster, CLUSTER / 2);
    assert_int_equal(out[CLUSTER / 2], 0xee);
    memset(comp, 0xa5, 64);
    assert_int_equal(qcow2_decompress(BDEV_COMPRESSION_ZSTD, comp, 64, out, CLUSTER), -EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_frame_with_size),
        cmocka_unit_test(test_frame_without_size),
        cmocka_unit_test(test_several_frames),
        cmocka_unit_test(test_damaged_and_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
