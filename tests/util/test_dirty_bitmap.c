/* The in-memory dirty bitmap: granule rounding at both ends of a range,
 * runs, counts with a partial last granule, resizes, merges across
 * granularities, and the serialized layout qcow2 and QEMU use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/dirty_bitmap.h"

static void test_set_reset(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(1000000, 4096);
    dirty_bitmap_set(b, 4095, 2);           /* touches granules 0 and 1 */
    assert_true(dirty_bitmap_get(b, 0));
    assert_true(dirty_bitmap_get(b, 8191));
    assert_false(dirty_bitmap_get(b, 8192));
    assert_int_equal(dirty_bitmap_count(b), 8192);
    dirty_bitmap_reset(b, 1, 8191);         /* granule 0 only partly: stays */
    assert_true(dirty_bitmap_get(b, 0));
    assert_false(dirty_bitmap_get(b, 4096));
    dirty_bitmap_set(b, 999999, 100);       /* clipped to the last, partial granule */
    assert_int_equal(dirty_bitmap_count(b), 4096 + (1000000 - 999424));
    dirty_bitmap_reset(b, 999500, 500);     /* not all of the tail granule: stays */
    assert_true(dirty_bitmap_get(b, 999999));
    dirty_bitmap_reset(b, 999424, 576);     /* from its start to the end: cleared */
    assert_false(dirty_bitmap_get(b, 999999));
    dirty_bitmap_set(b, 2000000, 10);       /* past the end: nothing */
    assert_int_equal(dirty_bitmap_count(b), 4096);
    dirty_bitmap_clear(b);
    assert_int_equal(dirty_bitmap_count(b), 0);
    dirty_bitmap_free(b);
}

static void test_runs(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(1 << 20, 512);
    dirty_bitmap_set(b, 64 * 512, 200 * 512);
    bool dirty;
    assert_int_equal(dirty_bitmap_run(b, 0, 1 << 20, &dirty), 64 * 512);
    assert_false(dirty);
    assert_int_equal(dirty_bitmap_run(b, 64 * 512 + 7, 1 << 20, &dirty), 200 * 512 - 7);
    assert_true(dirty);
    assert_int_equal(dirty_bitmap_run(b, 264 * 512, 1 << 20, &dirty), (1 << 20) - 264 * 512);
    assert_false(dirty);
    assert_int_equal(dirty_bitmap_run(b, 100 * 512, 512, &dirty), 512);
    assert_int_equal(dirty_bitmap_next_dirty(b, 0), 64 * 512);
    assert_int_equal(dirty_bitmap_next_dirty(b, 100 * 512 + 3), 100 * 512 + 3);
    assert_int_equal(dirty_bitmap_next_dirty(b, 264 * 512), -1);
    dirty_bitmap_free(b);
}

static void test_resize(void **state)
{
    struct dirty_bitmap *b = dirty_bitmap_new(100 * 4096, 4096);
    dirty_bitmap_set(b, 0, 100 * 4096);
    assert_int_equal(dirty_bitmap_resize(b, 10 * 4096 + 1), 0);
    assert_int_equal(dirty_bitmap_count(b), 10 * 4096 + 1);
    assert_int_equal(dirty_bitmap_resize(b, 1000 * 4096), 0);
    /* What the shrink cut off comes back clean. */
    assert_int_equal(dirty_bitmap_count(b), 11 * 4096);
    assert_int_equal(dirty_bitmap_next_dirty(b, 11 * 4096), -1);
    dirty_bitmap_free(b);
}

static void test_merge(void **state)
{
    struct dirty_bitmap *fine = dirty_bitmap_new(1 << 20, 512);
    struct dirty_bitmap *coarse = dirty_bitmap_new(1 << 20, 65536);
    dirty_bitmap_set(fine, 70000, 1);
    dirty_bitmap_merge(coarse, fine);
    assert_int_equal(dirty_bitmap_count(coarse), 65536);
    assert_true(dirty_bitmap_get(coarse, 65536));
    dirty_bitmap_merge(fine, coarse);
    assert_int_equal(dirty_bitmap_count(fine), 65536);
    dirty_bitmap_free(fine);
    dirty_bitmap_free(coarse);
}

static void test_serialize(void **state)
{
    /* 70 granules: two 64-bit words serialized. */
    struct dirty_bitmap *b = dirty_bitmap_new(70 * 512, 512);
    assert_int_equal(dirty_bitmap_serialized_size(b), 16);
    dirty_bitmap_set(b, 0, 1);
    dirty_bitmap_set(b, 9 * 512, 1);
    dirty_bitmap_set(b, 69 * 512, 1);
    uint8_t buf[16];
    dirty_bitmap_serialize(b, 0, buf, sizeof(buf));
    uint8_t want[16] = { [0] = 0x01, [1] = 0x02, [8] = 0x20 };
    assert_memory_equal(buf, want, sizeof(want));
    struct dirty_bitmap *c = dirty_bitmap_new(70 * 512, 512);
    buf[8] |= 0xc0;                         /* bits past the disk: ignored */
    dirty_bitmap_deserialize(c, 0, buf, sizeof(buf));
    assert_int_equal(dirty_bitmap_count(c), 3 * 512);
    dirty_bitmap_deserialize_ones(c, 8, 8);
    assert_int_equal(dirty_bitmap_count(c), 2 * 512 + 6 * 512);
    dirty_bitmap_free(b);
    dirty_bitmap_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_reset), cmocka_unit_test(test_runs),
        cmocka_unit_test(test_resize), cmocka_unit_test(test_merge),
        cmocka_unit_test(test_serialize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
