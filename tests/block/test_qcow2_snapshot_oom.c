/* Snapshot create, rename, delete and apply (revert) when memory runs out: every
 * allocation of the operation is made to fail in turn (malloc, calloc,
 * strdup and strndup wrapped with --wrap). Each must fail cleanly: an
 * error, no crash, and an image qemu-img check calls free of corruption
 * (a leak is allowed, as with QEMU, when it fails after refcounts rose).
 * Found a NULL store in qcow2_snapshots_serialize.
 *
 * And the memory a snapshot create takes (the bytes asked of malloc,
 * calloc and realloc, counted): a hostile image whose L1 entries all name
 * one full L2 table has millions of references to three clusters; the
 * refcount room check once kept one word per reference (16 MiB for 256
 * entries, 2 GiB for a legit 16 TiB image). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long countdown = -1;     /* allocations left before one fails (-1: none fails) */
static int failed;              /* whether the armed failure happened */

static bool fail_now(void)
{
    if (countdown < 0) {
        return false;
    }
    if (countdown-- == 0) {
        failed = 1;
        return true;
    }
    return false;
}

static size_t asked;             /* bytes asked for since it was zeroed */

static size_t count(size_t n)
{
    __atomic_add_fetch(&asked, n, __ATOMIC_RELAXED);
    return n;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(count(n)); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(count(n), size); }
void *__wrap_realloc(void *p, size_t n) { return __real_realloc(p, count(n)); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }

static char dir[] = "/tmp/cowvisor-snapshot-oom-XXXXXX";

static int sh(const char *fmt, const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), fmt, path);
    return system(cmd);
}

static void make_image(const char *path)
{
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = 8 << 20;
    o.cluster_size = 65536;
    assert_int_equal(qcow2_create(path, &o, &err), 0);
    struct blockdev *bd = NULL;
    struct blockdev_open_opts oo = { 0 };
    assert_int_equal(blockdev_open(&bd, path, &oo, &err), 0);
    static uint8_t data[65536];
    memset(data, 0x5a, sizeof(data));
    for (uint64_t off = 0; off < (4u << 20); off += 3 * sizeof(data)) {
        assert_int_equal(blockdev_pwrite(bd, off, data, sizeof(data), &err), 0);
    }
    assert_int_equal(blockdev_snapshot_create(bd, "first", NULL, &err), 0);
    blockdev_close(bd);
}

enum op { CREATE, RENAME, DELETE, APPLY };

static int run_op(struct blockdev *bd, enum op op, struct error *err)
{
    switch (op) {
    case CREATE: return blockdev_snapshot_create(bd, "second", NULL, err);
    case RENAME: return blockdev_snapshot_rename(bd, "first", "renamed", err);
    case APPLY: return blockdev_snapshot_apply(bd, "first", err);
    default: return blockdev_snapshot_delete(bd, "first", err);
    }
}

/* Fails the op's 0th, 1st, ... allocation until it runs without failing. */
static void every_allocation_fails_cleanly(enum op op)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/img.qcow2", dir);
    int tried = 0;
    for (long n = 0; n < 10000; n++) {
        make_image(path);
        struct blockdev *bd = NULL;
        struct blockdev_open_opts oo = { 0 };
        struct error err = { 0 };
        assert_int_equal(blockdev_open(&bd, path, &oo, &err), 0);
        failed = 0;
        countdown = n;
        int ret = run_op(bd, op, &err);
        countdown = -1;
        blockdev_close(bd);
        if (!failed) {
            assert_int_equal(ret, 0);       /* ran whole: the sweep is over */
            break;
        }
        tried++;
        if (ret < 0 && !err.msg[0]) {
            fail_msg("allocation %ld failed: error %d without a message", n, ret);
        }
        /* 3: leaks only. A delete that fails while freeing may also leave
         * COPIED flags behind their refcounts (the window a crash there
         * leaves, in QEMU too: one extra copy at worst, check -r mends it).
         * Anything else is corruption (or a crash of check). */
        int rc = sh("qemu-img check -q '%s' >/dev/null 2>&1", path);
        if (rc != 0 && WEXITSTATUS(rc) == 2 && op == DELETE) {
            rc = sh("qemu-img check '%s' 2>&1 | grep '^ERROR' | grep -qv '^ERROR OFLAG_COPIED' && exit 2 || exit 0", path);
        }
        if (rc != 0 && WEXITSTATUS(rc) != 3) {
            sh("qemu-img check '%s' >&2", path);
            fail_msg("allocation %ld failed (op returned %d: %s): the image is corrupt", n, ret, err.msg);
        }
    }
    assert_true(tried > 0);
}

static void test_create_out_of_memory(void **state) { (void)state; every_allocation_fails_cleanly(CREATE); }
static void test_rename_out_of_memory(void **state) { (void)state; every_allocation_fails_cleanly(RENAME); }
static void test_delete_out_of_memory(void **state) { (void)state; every_allocation_fails_cleanly(DELETE); }
static void test_apply_out_of_memory(void **state) { (void)state; every_allocation_fails_cleanly(APPLY); }

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

/* 64 KiB clusters, 16-bit refcounts: header, refcount table, refcount
 * block, the L1 table (n entries, each naming the one L2 table), the L2
 * table (every entry naming the one data cluster), the data cluster. */
static void make_hostile_image(const char *path, uint32_t n)
{
    const uint64_t cs = 65536;
    uint64_t l1 = 3, l2 = l1 + (n * 8 + cs - 1) / cs, data = l2 + 1, total = data + 1;
    uint8_t *img = calloc(total, cs);
    assert_non_null(img);
    static const uint64_t header[][2] = {
        { 0x514649fb, 4 }, { 3, 4 }, { 0, 8 }, { 0, 4 }, { 16, 4 }, { 0, 8 },  /* size below */
        { 0, 4 }, { 0, 4 }, { 0, 8 }, { 65536, 8 }, { 1, 4 }, { 0, 4 }, { 0, 8 },
        { 0, 8 }, { 0, 8 }, { 0, 8 }, { 4, 4 }, { 104, 4 },
    };
    size_t pos = 0;
    for (size_t i = 0; i < sizeof(header) / sizeof(header[0]); pos += header[i][1], i++) {
        put_be(img + pos, header[i][0], (int)header[i][1]);
    }
    put_be(img + 24, (uint64_t)n * (cs / 8) * cs, 8);      /* the size n L1 entries cover */
    put_be(img + 36, n, 4);
    put_be(img + 40, l1 * cs, 8);
    put_be(img + cs, 2 * cs, 8);
    for (uint64_t c = 0; c < total; c++) {
        put_be(img + 2 * cs + 2 * c, 1, 2);
    }
    for (uint32_t i = 0; i < n; i++) {
        put_be(img + l1 * cs + 8 * i, (l2 * cs) | 1ull << 63, 8);
    }
    for (uint64_t i = 0; i < cs / 8; i++) {
        put_be(img + l2 * cs + 8 * i, (data * cs) | 1ull << 63, 8);
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(img, cs, total, f), total);
    assert_int_equal(fclose(f), 0);
    free(img);
}

/* 256 L1 entries, 2 million references to one data cluster whose 16-bit
 * refcount overflows at the 65535th: refused as QEMU refuses it (-EINVAL,
 * one cluster leaked, as QEMU leaks it), in a few hundred KiB. */
static void test_many_references_little_memory(void **state)
{
    char path[256], orig[256], copy[256];
    snprintf(path, sizeof(path), "%s/hostile.qcow2", dir);
    snprintf(orig, sizeof(orig), "%s/hostile-orig.qcow2", dir);
    snprintf(copy, sizeof(copy), "%s/hostile-qemu.qcow2", dir);
    make_hostile_image(path, 256);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp '%s' '%s' && qemu-img snapshot -c s1 '%s' 2>&1 | "
             "grep -q -- '-22 (Invalid argument)'", path, orig, path, copy, copy);
    assert_int_equal(system(cmd), 0);
    struct blockdev *bd = NULL;
    struct blockdev_open_opts oo = { 0 };
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, path, &oo, &err), 0);
    __atomic_store_n(&asked, 0, __ATOMIC_RELAXED);
    int ret = blockdev_snapshot_create(bd, "s1", NULL, &err);
    size_t used = __atomic_load_n(&asked, __ATOMIC_RELAXED);
    blockdev_close(bd);
    assert_int_equal(ret, -EINVAL);
    assert_non_null(strstr(err.msg, "would exceed 16 bits"));
    if (used > (1u << 20)) {
        fail_msg("the snapshot create asked for %zu bytes (at most 1 MiB expected)", used);
    }
    /* What changed is what qemu-img also leaves on a refusal: the new L1
     * table's cluster, written before the check (iotest 112), leaked. No
     * other refcount changed (qemu-img's own refusal on this image
     * changes some half way: its copy is not the reference here). */
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", path, orig);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "qemu-img check '%s' >'%s.chk' 2>&1; qemu-img check '%s' >'%s.chk' 2>&1; "
             "grep -q '^1 leaked clusters' '%s.chk' && "
             "sed -e '/^$/d' -e '/waste of disk/d' -e '/leak/Id' -e '/^Image end offset/d' '%s.chk' >'%s.f' && "
             "sed -e '/^$/d' -e '/waste of disk/d' -e '/leak/Id' -e '/^Image end offset/d' '%s.chk' >'%s.f' && "
             "diff '%s.f' '%s.f'", path, path, orig, orig, path, path, path, orig, orig, path, orig);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_out_of_memory),
        cmocka_unit_test(test_rename_out_of_memory),
        cmocka_unit_test(test_delete_out_of_memory),
        cmocka_unit_test(test_apply_out_of_memory),
        cmocka_unit_test(test_many_references_little_memory),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    sh("rm -rf '%s'", dir);
    return ret;
}
