/* qcow2 check and repair, judged by qemu-img check: images damaged on
 * purpose must get the same counts from both, our repair must leave what
 * qemu-img's repair leaves (and the same guest data), and an image left
 * dirty by lazy refcounts is repaired when opened. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"
#include "util/bswap.h"

static char dir[] = "/tmp/cowvisor-check-XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    return run("rm -rf %s", dir);
}

struct counts {
    long corruptions, leaks, check_errors;
    long long image_end, total, allocated, fragmented, compressed;
};

static long long json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : 0;
}

static void qemu_counts(const char *path, struct counts *c)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "qemu-img check -U --output=json '%s' 2>/dev/null", path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char json[8192] = { 0 };
    size_t n = fread(json, 1, sizeof(json) - 1, f);
    pclose(f);
    assert_true(n > 0);
    c->corruptions = (long)json_num(json, "corruptions");
    c->leaks = (long)json_num(json, "leaks");
    c->check_errors = (long)json_num(json, "check-errors");
    c->image_end = json_num(json, "image-end-offset");
    c->total = json_num(json, "total-clusters");
    c->allocated = json_num(json, "allocated-clusters");
    c->fragmented = json_num(json, "fragmented-clusters");
    c->compressed = json_num(json, "compressed-clusters");
}

static void to_counts(const struct blockdev_check_result *r, struct counts *c)
{
    c->corruptions = r->corruptions;
    c->leaks = r->leaks;
    c->check_errors = r->check_errors;
    c->image_end = (long long)r->image_end_offset;
    c->total = (long long)r->total_clusters;
    c->allocated = (long long)r->allocated_clusters;
    c->fragmented = (long long)r->fragmented_clusters;
    c->compressed = (long long)r->compressed_clusters;
}

static void our_check(const char *path, unsigned fix, struct blockdev_check_result *res)
{
    struct blockdev *bd;
    struct blockdev_open_opts o = { .flags = BDEV_CHECK | BDEV_NO_BACKING |
                                             (fix ? 0 : BDEV_READ_ONLY) };
    struct error err = { 0 };
    if (blockdev_open(&bd, path, &o, &err) < 0) {
        fail_msg("open %s for check: %s", path, err.msg);
    }
    if (qcow2_check(bd, fix, res, &err) < 0) {
        fail_msg("check %s: %s", path, err.msg);
    }
    blockdev_close(bd);
}

static void expect_same(const struct counts *ours, const struct counts *qemu, bool frag)
{
    assert_int_equal(ours->corruptions, qemu->corruptions);
    assert_int_equal(ours->leaks, qemu->leaks);
    assert_int_equal(ours->check_errors, qemu->check_errors);
    if (frag) {
        assert_int_equal(ours->image_end, qemu->image_end);
        assert_int_equal(ours->total, qemu->total);
        assert_int_equal(ours->allocated, qemu->allocated);
        assert_int_equal(ours->fragmented, qemu->fragmented);
        assert_int_equal(ours->compressed, qemu->compressed);
    }
}

static void poke64(const char *path, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    st_be64(b, v);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b, 8, (off_t)off), 8);
    close(fd);
}

static void poke16(const char *path, uint64_t off, uint16_t v)
{
    uint8_t b[2];
    st_be16(b, v);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b, 2, (off_t)off), 2);
    close(fd);
}

static uint64_t peek64(const char *path, uint64_t off)
{
    uint8_t b[8] = { 0 };
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
    close(fd);
    return ld_be64(b);
}

/* Where things are in a 64 KiB-cluster, 16-bit-refcount image. */
struct layout {
    uint64_t l1, l2, refblock0, file_size;
};

static void find_layout(const char *path, struct layout *l)
{
    l->l1 = peek64(path, 40);
    l->l2 = peek64(path, l->l1) & 0x00fffffffffffe00ULL;
    l->refblock0 = peek64(path, peek64(path, 48));
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    l->file_size = (uint64_t)ftell(f);
    fclose(f);
}

/* A base image: data, a compressed cluster, a snapshot, more data. */
static void make_base(const char *path, bool with_snapshot)
{
    assert_int_equal(run("qemu-img create -q -f qcow2 '%s' 8M && "
                         "qemu-io -c 'write -q -P 1 0 1M' -c 'write -q -c -P 2 2M 64k' "
                         "-c 'write -q -P 5 3M 64k' -c 'write -q -P 6 1M 64k' '%s'", path, path), 0);
    if (with_snapshot) {
        assert_int_equal(run("qemu-img snapshot -c s1 '%s' && "
                             "qemu-io -c 'write -q -P 3 512k 128k' '%s'", path, path), 0);
    }
}

/* Both tools see the damage alike; both repairs leave the same result. */
static void judge(const char *path, bool expect_damage)
{
    struct blockdev_check_result res;
    struct counts ours, qemu;
    our_check(path, 0, &res);
    to_counts(&res, &ours);
    qemu_counts(path, &qemu);
    expect_same(&ours, &qemu, true);
    if (expect_damage) {
        assert_true(qemu.corruptions + qemu.leaks > 0);
    }
    char copy[600];
    snprintf(copy, sizeof(copy), "%s.qemu", path);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && qemu-img check -r all --output=json '%s' "
             "2>/dev/null", path, copy, copy);
    FILE *f = popen(cmd, "r");
    char json[8192] = { 0 };
    size_t jn = fread(json, 1, sizeof(json) - 1, f);
    pclose(f);
    assert_true(jn > 0);
    our_check(path, BDEV_FIX_LEAKS | BDEV_FIX_ERRORS, &res);
    struct counts after_ours, after_qemu;
    to_counts(&res, &after_ours);
    qemu_counts(copy, &after_qemu);
    expect_same(&after_ours, &after_qemu, false);
    qemu_counts(path, &after_ours);
    expect_same(&after_ours, &after_qemu, false);
    assert_int_equal(res.leaks_fixed, qemu.leaks - res.leaks);
    assert_int_equal(res.leaks_fixed, json_num(json, "leaks-fixed"));
    assert_int_equal(res.corruptions_fixed, json_num(json, "corruptions-fixed"));
    /* no guest data lost: the same disk as qemu-img's repair gives */
    assert_int_equal(run("qemu-img compare -q '%s' '%s'", path, copy), 0);
}

static void test_clean_image_counts(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/clean.qcow2", dir);
    make_base(path, true);
    judge(path, false);
    struct blockdev_check_result res;
    our_check(path, 0, &res);
    assert_int_equal(res.compressed_clusters, 1);
    assert_true(res.allocated_clusters >= 18);
}

static void test_leaked_cluster(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/leak.qcow2", dir);
    make_base(path, true);
    struct layout l;
    find_layout(path, &l);
    /* two clusters past everything, one marked used */
    uint64_t cluster = (l.file_size + 65535) / 65536 + 1;
    assert_int_equal(truncate(path, (off_t)((cluster + 1) * 65536)), 0);
    poke16(path, l.refblock0 + cluster * 2, 1);
    judge(path, true);
}

static void test_refcount_too_low(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/low.qcow2", dir);
    make_base(path, true);
    struct layout l;
    find_layout(path, &l);
    /* the first data cluster is shared with the snapshot: 2 -> 1 */
    uint64_t host = peek64(path, l.l2 + 8 * 12) & 0x00fffffffffffe00ULL;
    poke16(path, l.refblock0 + (host / 65536) * 2, 1);
    judge(path, true);
}

static void test_refcount_zero_rebuilds(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/zero.qcow2", dir);
    make_base(path, false);
    struct layout l;
    find_layout(path, &l);
    poke16(path, l.refblock0 + (l.l2 / 65536) * 2, 0);
    judge(path, true);
}

static void test_bad_copied_flag(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/copied.qcow2", dir);
    make_base(path, false);
    struct layout l;
    find_layout(path, &l);
    uint64_t e = peek64(path, l.l2);
    poke64(path, l.l2, e & ~(1ULL << 63));
    judge(path, true);
}

static void test_l2_entry_past_eof(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/eof.qcow2", dir);
    make_base(path, false);
    struct layout l;
    find_layout(path, &l);
    uint64_t far = ((l.file_size + 65535) / 65536 + 16) * 65536;
    poke64(path, l.l2 + 8 * 40, far | (1ULL << 63));
    judge(path, true);
}

static void test_snapshot_l1_unaligned(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/snapl1.qcow2", dir);
    make_base(path, true);
    uint64_t table = peek64(path, 64);
    poke64(path, table, peek64(path, table) + 512);
    judge(path, true);
}

/* An unreadable snapshot table: check says so and repair refuses to free
 * what only the snapshots reference. */
/* A table QEMU cannot read either: check fails as qemu-img's does ("Check
 * failed: File too large"), check -r all reads it as QEMU's repair does
 * (the extra data cut to 1 KiB) and writes it anew (iotest 261). */
static void test_unreadable_snapshot_table(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/unreadable.qcow2", dir);
    make_base(path, true);
    uint64_t table = peek64(path, 64);
    poke64(path, table + 32, 0x0000000000002000ULL);  /* extra data size 8192 > 1024 */
    assert_int_equal(run("qemu-img check -q '%s' 2>/dev/null", path), 1);
    struct blockdev *bd;
    struct blockdev_open_opts o = { .flags = BDEV_CHECK | BDEV_READ_ONLY };
    struct error err = { 0 };
    struct blockdev_check_result res;
    assert_int_equal(blockdev_open(&bd, path, &o, &err), 0);
    assert_int_equal(qcow2_check(bd, 0, &res, &err), -EFBIG);
    assert_string_equal(err.msg, "File too large");
    assert_true(res.check_errors > 0);
    blockdev_close(bd);
    o.flags = BDEV_CHECK;
    assert_int_equal(blockdev_open(&bd, path, &o, &err), 0);
    assert_int_equal(qcow2_check(bd, BDEV_FIX_LEAKS | BDEV_FIX_ERRORS, &res, &err), 0);
    assert_true(res.corruptions_fixed >= 1);
    assert_int_equal(res.corruptions, 0);
    blockdev_close(bd);
    /* (the entry's name was read from inside the old extra data: garbage, as with QEMU) */
    assert_int_equal(run("qemu-img check -q '%s' && qemu-img snapshot -l '%s' >/dev/null",
                         path, path), 0);
}

static void test_leak_from_qemu_kill_pattern(void **state)
{
    /* a cluster marked used that nothing references, inside the file */
    char path[512];
    snprintf(path, sizeof(path), "%s/inner.qcow2", dir);
    make_base(path, false);
    assert_int_equal(run("qemu-io -c 'discard -q 0 64k' '%s'", path), 0);
    struct layout l;
    find_layout(path, &l);
    struct blockdev_check_result res;
    our_check(path, 0, &res);
    uint64_t end = res.image_end_offset / 65536;
    /* find a free cluster below the end and mark it used */
    for (uint64_t c = 1; c < end; c++) {
        uint8_t b[2];
        int fd = open(path, O_RDONLY);
        assert_int_equal(pread(fd, b, 2, (off_t)(l.refblock0 + c * 2)), 2);
        close(fd);
        if (ld_be16(b) == 0) {
            poke16(path, l.refblock0 + c * 2, 3);
            judge(path, true);
            return;
        }
    }
    fail_msg("no free cluster to leak");
}

/* A child writes with lazy refcounts and dies: the image is dirty. Opening
 * it read-write repairs it; qemu-img check agrees and the data is there. */
static void test_repair_dirty(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/dirty.qcow2", dir);
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = 8 << 20;
    o.lazy_refcounts = true;
    assert_int_equal(qcow2_create(path, &o, &err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct blockdev *bd;
        struct blockdev_open_opts oo = { 0 };
        if (blockdev_open(&bd, path, &oo, &err) < 0) {
            _exit(1);
        }
        uint8_t *buf = malloc(1 << 20);
        memset(buf, 0x77, 1 << 20);
        if (blockdev_pwrite(bd, 0, buf, 1 << 20, &err) < 0 ||
            blockdev_pwrite(bd, 4 << 20, buf, 1 << 20, &err) < 0 ||
            blockdev_flush(bd, &err) < 0) {
            _exit(2);
        }
        /* No close: the flush wrote the mappings but, under lazy refcounts,
         * not the refcounts; the dirty bit is on the disk. */
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct counts q;
    qemu_counts(path, &q);
    assert_true(q.corruptions > 0);     /* the refcounts on disk are stale */
    struct blockdev *bd;
    struct blockdev_open_opts oo = { 0 };
    assert_int_equal(blockdev_open(&bd, path, &oo, &err), 0);
    blockdev_close(bd);
    assert_int_equal(run("qemu-img check -q '%s'", path), 0);
    assert_int_equal(run("qemu-io -c 'read -q -P 0x77 0 1M' -c 'read -q -P 0x77 4M 1M' '%s'",
                         path), 0);
}

static void amend(const char *path, int version, int lazy, int bits, bool ok)
{
    struct blockdev *bd;
    struct blockdev_open_opts o = { 0 };
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, path, &o, &err), 0);
    struct blockdev_amend_opts a = { .version = version, .lazy_refcounts = lazy, .refcount_bits = bits };
    int ret = qcow2_amend(bd, &a, &err);
    if (ok && ret < 0) {
        fail_msg("amend: %s", err.msg);
    }
    if (!ok && ret == 0) {
        fail_msg("amend succeeded where it should not");
    }
    blockdev_close(bd);
    assert_int_equal(run("qemu-img check -q '%s'", path), 0);
    assert_int_equal(run("qemu-io -c 'read -q -P 1 0 512k' -c 'read -q -P 3 512k 128k' "
                         "-c 'read -q -P 0 3M 64k' -c 'read -q -P 6 1M 64k' '%s'", path), 0);
}

static void test_amend(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/amend.qcow2", dir);
    make_base(path, true);
    /* a zero cluster (v3 only) in the active image */
    assert_int_equal(run("qemu-io -c 'write -q -z 3M 64k' '%s'", path), 0);
    amend(path, 0, -1, 64, true);
    assert_int_equal(run("qemu-img info '%s' | grep -q 'refcount bits: 64'", path), 0);
    /* one bit cannot count a cluster shared with the snapshot */
    amend(path, 0, -1, 1, false);
    assert_int_equal(run("qemu-img info '%s' | grep -q 'refcount bits: 64'", path), 0);
    amend(path, 0, 1, 0, true);
    assert_int_equal(run("qemu-img info '%s' | grep -q 'lazy refcounts: true'", path), 0);
    /* lazy refcounts do not exist in v2: the downgrade drops them, as qemu-img's */
    amend(path, 2, -1, 16, true);
    assert_int_equal(run("qemu-img info '%s' | grep -q 'lazy refcounts'", path), 1);
    amend(path, 2, 0, 16, true);
    assert_int_equal(run("qemu-img info '%s' | grep -q 'compat: 0.10'", path), 0);
    amend(path, 3, -1, 0, true);
    assert_int_equal(run("qemu-img info '%s' | grep -q 'compat: 1.1'", path), 0);
    assert_int_equal(run("qemu-img snapshot -a s1 '%s' && qemu-io -c 'read -q -P 1 0 1M' "
                         "-c 'read -q -P 5 3M 64k' '%s' && qemu-img check -q '%s'",
                         path, path, path), 0);
}

/* Random damage to the metadata: check and repair never crash (the
 * sanitizers watch); where the image opens, the counts match qemu-img's,
 * before and after both tools repaired it, and so does the repaired disk. */
static void test_random_damage(void **state)
{
    char base[512], path[512];
    snprintf(base, sizeof(base), "%s/fuzzbase.qcow2", dir);
    snprintf(path, sizeof(path), "%s/fuzz.qcow2", dir);
    make_base(base, true);
    struct layout l;
    find_layout(base, &l);
    uint64_t targets[] = { l.l1, l.l2, l.refblock0, peek64(base, 48), peek64(base, 64) };
    uint64_t seed = 0xda3a9eULL;
    int compared = 0, repaired = 0;
    for (int i = 0; i < 60; i++) {
        assert_int_equal(run("cp '%s' '%s'", base, path), 0);
        int fd = open(path, O_WRONLY);
        for (int k = 0; k < 3; k++) {
            uint64_t r = test_rand(&seed);
            uint64_t off = targets[r % 5] + ((r >> 8) % 256) * 8 + ((r >> 20) % 8);
            uint8_t v = (uint8_t)(r >> 40);
            assert_int_equal(pwrite(fd, &v, 1, (off_t)off), 1);
        }
        close(fd);
        struct blockdev *bd;
        struct blockdev_open_opts o = { .flags = BDEV_CHECK | BDEV_NO_BACKING };
        struct error err = { 0 };
        if (blockdev_open(&bd, path, &o, &err) < 0) {
            continue;   /* refused with a message: fine */
        }
        struct blockdev_check_result res;
        int ret = qcow2_check(bd, 0, &res, &err);
        blockdev_close(bd);
        struct counts qemu;
        if (ret == 0 && run("qemu-img check -q '%s' >/dev/null 2>&1; test $? -le 3", path) == 0) {
            struct counts ours;
            to_counts(&res, &ours);
            qemu_counts(path, &qemu);
            expect_same(&ours, &qemu, false);
            compared++;
        }
        /* both repairs leave the same counts and, where readable, the same disk */
        char copy[600];
        snprintf(copy, sizeof(copy), "%s.qemu", path);
        run("cp '%s' '%s' && qemu-img check -q -r all '%s' >/dev/null 2>&1", path, copy, copy);
        assert_int_equal(blockdev_open(&bd, path, &o, &err), 0);
        assert_int_equal(qcow2_check(bd, BDEV_FIX_LEAKS | BDEV_FIX_ERRORS, &res, &err), 0);
        blockdev_close(bd);
        struct counts a, b;
        qemu_counts(path, &a);
        qemu_counts(copy, &b);
        expect_same(&a, &b, false);
        if (b.corruptions == 0) {
            assert_int_equal(run("qemu-img compare -q '%s' '%s'", path, copy), 0);
            repaired++;
        }
    }
    assert_true(compared > 10);
    assert_true(repaired > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_image_counts),
        cmocka_unit_test(test_leaked_cluster),
        cmocka_unit_test(test_refcount_too_low),
        cmocka_unit_test(test_refcount_zero_rebuilds),
        cmocka_unit_test(test_bad_copied_flag),
        cmocka_unit_test(test_l2_entry_past_eof),
        cmocka_unit_test(test_snapshot_l1_unaligned),
        cmocka_unit_test(test_unreadable_snapshot_table),
        cmocka_unit_test(test_leak_from_qemu_kill_pattern),
        cmocka_unit_test(test_repair_dirty),
        cmocka_unit_test(test_amend),
        cmocka_unit_test(test_random_damage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
