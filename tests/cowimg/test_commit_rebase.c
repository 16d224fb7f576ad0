/* Unit tests of the block-layer commit and rebase (src/block/commit.c,
 * rebase.c) on qcow2 chains built with the blockdev API: after commit the
 * base reads what the top read; after rebase the overlay reads the same on
 * its new backing file; data is compared byte for byte against a model. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/blockdev.h"
#include "block/commit.h"
#include "block/qcow2.h"
#include "block/rebase.h"

#define DISK (4u << 20)

static char dir[64];

static void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void create(const char *name, const char *backing, uint64_t size)
{
    char p[128];
    path(p, sizeof(p), name);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = size;
    o.backing_file = backing;
    o.backing_format = backing ? "qcow2" : NULL;
    struct error err = {0};
    assert_int_equal(qcow2_create(p, &o, &err), 0);
}

static struct blockdev *open_rw(const char *name)
{
    char p[128];
    path(p, sizeof(p), name);
    struct blockdev_open_opts opts = { .format = "qcow2" };
    struct blockdev *bd = NULL;
    struct error err = {0};
    assert_int_equal(blockdev_open(&bd, p, &opts, &err), 0);
    return bd;
}

/* Writes a byte pattern to the image and to the model of what it reads. */
static void put(struct blockdev *bd, uint8_t *model, uint64_t off, uint64_t len, int byte)
{
    uint8_t *buf = malloc(len);
    memset(buf, byte, len);
    struct error err = {0};
    assert_int_equal(blockdev_pwrite(bd, off, buf, len, &err), 0);
    if (model) {
        memcpy(model + off, buf, len);
    }
    free(buf);
}

static void assert_reads(struct blockdev *bd, const uint8_t *model, uint64_t size)
{
    uint8_t *buf = malloc(size);
    struct error err = {0};
    assert_int_equal(blockdev_pread(bd, 0, buf, size, &err), 0);
    assert_memory_equal(buf, model, size);
    free(buf);
}

/* base <- mid <- top, each with its own writes; returns what top reads. */
static uint8_t *make_chain(void)
{
    uint8_t *model = calloc(1, DISK);
    create("base.qcow2", NULL, DISK);
    struct blockdev *bd = open_rw("base.qcow2");
    put(bd, model, 0, DISK, 0x11);
    blockdev_close(bd);
    create("mid.qcow2", "base.qcow2", DISK);
    bd = open_rw("mid.qcow2");
    put(bd, model, 1u << 20, 512u << 10, 0x22);
    struct error err = {0};
    assert_int_equal(blockdev_pwrite_zeroes(bd, 3u << 20, 64u << 10, 0, &err), 0);
    memset(model + (3u << 20), 0, 64u << 10);
    blockdev_close(bd);
    create("top.qcow2", "mid.qcow2", DISK);
    bd = open_rw("top.qcow2");
    put(bd, model, (1u << 20) + 4096, 4096, 0x33);     /* inside a mid cluster */
    put(bd, model, 2u << 20, 100u << 10, 0x44);
    blockdev_close(bd);
    return model;
}

static void test_commit_into_backing(void **state)
{
    uint8_t *model = make_chain();
    struct blockdev *top = open_rw("top.qcow2");
    struct error err = {0};
    assert_int_equal(block_commit(top, blockdev_backing(top), NULL, &err), 0);
    assert_reads(top, model, DISK);
    blockdev_close(top);
    struct blockdev *mid = open_rw("mid.qcow2");
    assert_reads(mid, model, DISK);
    blockdev_close(mid);
    free(model);
}

static void test_commit_through_chain(void **state)
{
    uint8_t *model = make_chain();
    struct blockdev *top = open_rw("top.qcow2");
    char p[128];
    path(p, sizeof(p), "base.qcow2");
    int depth = 0;
    const struct blockdev *base = block_chain_find(top, p, &depth);
    assert_non_null(base);
    assert_int_equal(depth, 2);
    struct error err = {0};
    assert_int_equal(block_commit(top, base, NULL, &err), 0);
    blockdev_close(top);
    struct blockdev *b = open_rw("base.qcow2");
    assert_reads(b, model, DISK);
    blockdev_close(b);
    free(model);
}

static void test_chain_find_misses(void **state)
{
    free(make_chain());
    struct blockdev *top = open_rw("top.qcow2");
    char p[128];
    path(p, sizeof(p), "top.qcow2");
    int depth = -1;
    assert_null(block_chain_find(top, p, &depth));         /* the top itself is not below */
    assert_null(block_chain_find(top, "/nonexistent/x", &depth));
    struct error err = {0};
    assert_int_equal(block_commit(top, top, NULL, &err), -EINVAL);
    blockdev_close(top);
}

static void test_rebase_onto_other_base(void **state)
{
    uint8_t *model = calloc(1, DISK);
    create("old.qcow2", NULL, DISK);
    struct blockdev *bd = open_rw("old.qcow2");
    put(bd, model, 0, 2u << 20, 0x55);
    blockdev_close(bd);
    create("new.qcow2", NULL, 3u << 20);                    /* shorter than the overlay */
    bd = open_rw("new.qcow2");
    put(bd, NULL, 0, 1u << 20, 0x55);                       /* agrees with old here */
    put(bd, NULL, 1u << 20, 2u << 20, 0x66);                /* differs here */
    blockdev_close(bd);
    create("ov.qcow2", "old.qcow2", DISK);
    bd = open_rw("ov.qcow2");
    put(bd, model, 512u << 10, 4096, 0x77);
    put(bd, model, 3584u << 10, 64u << 10, 0x88);

    char p[128];
    path(p, sizeof(p), "new.qcow2");
    struct blockdev_open_opts ro = { .format = "qcow2", .flags = BDEV_READ_ONLY };
    struct blockdev *nb = NULL;
    struct error err = {0};
    assert_int_equal(blockdev_open(&nb, p, &ro, &err), 0);
    assert_int_equal(block_rebase_copy(bd, nb, NULL, &err), 0);
    assert_int_equal(qcow2_change_backing_file(bd, "new.qcow2", "qcow2", &err), 0);
    blockdev_close(nb);
    blockdev_close(bd);

    bd = open_rw("ov.qcow2");
    assert_string_equal(blockdev_backing_filename(bd), "new.qcow2");
    assert_reads(bd, model, DISK);
    /* Ranges where old and new agreed were not copied: still from the backing. */
    struct block_status st;
    assert_int_equal(blockdev_block_status(bd, 0, 4096, &st, &err), 0);
    assert_int_equal(st.depth, 1);
    blockdev_close(bd);
    free(model);
}

static void test_rebase_to_no_backing(void **state)
{
    uint8_t *model = make_chain();
    struct blockdev *top = open_rw("top.qcow2");
    struct error err = {0};
    assert_int_equal(block_rebase_copy(top, NULL, NULL, &err), 0);
    assert_int_equal(qcow2_change_backing_file(top, NULL, NULL, &err), 0);
    blockdev_close(top);
    top = open_rw("top.qcow2");
    assert_null(blockdev_backing(top));
    assert_reads(top, model, DISK);
    blockdev_close(top);
    free(model);
}

/* Commit, then empty the overlay: nothing stays allocated in it, and it
 * reads what it read before, now from its backing file. */
static void test_commit_then_make_empty(void **state)
{
    uint8_t *model = make_chain();
    struct blockdev *top = open_rw("top.qcow2");
    struct error err = {0};
    assert_int_equal(block_commit(top, blockdev_backing(top), NULL, &err), 0);
    assert_int_equal(blockdev_make_empty(top, &err), 0);
    struct block_status st;
    for (uint64_t off = 0; off < DISK; off += st.len) {
        assert_int_equal(blockdev_block_status(top, off, DISK - off, &st, &err), 0);
        assert_true(st.depth > 0);
    }
    assert_reads(top, model, DISK);
    blockdev_close(top);
    free(model);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/cowimg-unit.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_into_backing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_through_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_find_misses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebase_onto_other_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebase_to_no_backing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_then_make_empty, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
