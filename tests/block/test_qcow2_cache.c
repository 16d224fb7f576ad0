/* The metadata table caches' dirty count (qcow2_cache.c): a flush skips a
 * cache whose count says nothing is dirty, so the count must match the
 * entries' dirty bits after every kind of change (writeback updates,
 * evictions, discards of freed tables, flushes), or a flush would leave
 * tables unwritten. Random writes, discards and flushes over 32 L2 tables,
 * with and without lazy refcounts (then refcount blocks stay dirty too);
 * after each step the count is compared with the bits, and at
 * the end the image is read back against a model and checked by qemu-img.
 * White-box: looks at struct qcow2's caches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "block/qcow2_int.h"
#include "qcow2_test_util.h"

#define CLUSTER 4096u
#define DISK_SIZE (64u << 20)   /* 32 L2 tables of 4 KiB clusters */
#define STEPS 600

static char dir[] = "/tmp/cowvisor-qcow2-cache-XXXXXX";
static char image[128];

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return run("rm -rf %s", dir);
}

static int dirty_bits(const struct qcow2_cache *c)
{
    int n = 0;
    for (int i = 0; i < c->count; i++) {
        n += c->entries[i].offset && c->entries[i].dirty;
    }
    return n;
}

static void assert_counts(struct qcow2 *s)
{
    assert_int_equal(s->l2_cache.dirty_count, dirty_bits(&s->l2_cache));
    assert_int_equal(s->refblock_cache.dirty_count, dirty_bits(&s->refblock_cache));
    assert_int_equal(qcow2_cache_dirty(&s->l2_cache), dirty_bits(&s->l2_cache) > 0);
}

static void run_steps(bool lazy)
{
    struct error err = { 0 };
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = DISK_SIZE;
    o.cluster_size = CLUSTER;
    o.lazy_refcounts = lazy;
    snprintf(image, sizeof(image), "%s/c%d.qcow2", dir, lazy);
    assert_int_equal(qcow2_create(image, &o, &err), 0);

    char options[256];
    snprintf(options, sizeof(options), "driver=qcow2,file.filename=%s", image);
    struct blockdev *bd = NULL;
    struct blockdev_open_opts opts = { .flags = 0 };
    if (blockdev_open_spec(&bd, NULL, options, &opts, &err) < 0) {
        fail_msg("open %s: %s", options, err.msg);
    }
    struct qcow2 *s = qcow2_of(bd);

    static uint8_t model[DISK_SIZE / CLUSTER];  /* each cluster's byte, 0: zeros */
    memset(model, 0, sizeof(model));
    static uint8_t buf[CLUSTER];
    uint64_t seed = lazy ? 7 : 3;
    bool saw_dirty = false;
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = test_rand(&seed);
        uint32_t c = (uint32_t)(r % (DISK_SIZE / CLUSTER));
        if (r >> 60 == 0) {
            assert_int_equal(blockdev_flush(bd, &err), 0);
            assert_int_equal(s->l2_cache.dirty_count, 0);
        } else if ((r >> 58) % 3 == 0) {
            assert_int_equal(blockdev_discard(bd, (uint64_t)c * CLUSTER, CLUSTER, &err), 0);
            model[c] = 0;
        } else {
            model[c] = (uint8_t)(1 + step % 255);
            memset(buf, model[c], CLUSTER);
            assert_int_equal(blockdev_pwrite(bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err), 0);
        }
        saw_dirty |= s->l2_cache.dirty_count > 0;
        assert_counts(s);
    }
    assert_true(saw_dirty);     /* the batches did leave tables dirty */
    assert_int_equal(blockdev_flush(bd, &err), 0);
    assert_int_equal(s->l2_cache.dirty_count, 0);
    blockdev_close(bd);

    /* Reopened: every flushed table reached the file. */
    assert_int_equal(blockdev_open_spec(&bd, NULL, options, &opts, &err), 0);
    for (uint32_t c = 0; c < DISK_SIZE / CLUSTER; c++) {
        assert_int_equal(blockdev_pread(bd, (uint64_t)c * CLUSTER, buf, CLUSTER, &err), 0);
        if (buf[0] != model[c] || buf[CLUSTER - 1] != model[c]) {
            fail_msg("cluster %u reads %u, want %u", c, buf[0], model[c]);
        }
    }
    blockdev_close(bd);
    assert_int_equal(run("qemu-img check -q %s", image), 0);
}

static void test_dirty_count_plain(void **state)
{
    (void)state;
    run_steps(false);
}

static void test_dirty_count_lazy_refcounts(void **state)
{
    (void)state;
    run_steps(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirty_count_plain),
        cmocka_unit_test(test_dirty_count_lazy_refcounts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
