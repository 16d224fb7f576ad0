/* Internal snapshots: create / list / apply / delete / rename and the VM
 * state, each way round with the real qemu-img and qemu-io, with
 * qemu-img check as the judge after every operation. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/commit.h"
#include "block/block_int.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"
#include "util/bswap.h"

#define DISK (8u << 20)

static char dir[] = "/tmp/cowvisor-snap-XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    return run("rm -rf %s", dir);
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static struct blockdev *open_rw(const char *path)
{
    struct blockdev *bd;
    struct blockdev_open_opts o = { 0 };
    struct error err = { 0 };
    if (blockdev_open(&bd, path, &o, &err) < 0) {
        fail_msg("open %s: %s", path, err.msg);
    }
    return bd;
}

static struct blockdev *create_open(const char *path, uint32_t cluster_size, int version,
                                    bool extended_l2)
{
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = DISK;
    o.cluster_size = cluster_size;
    o.version = version;
    o.extended_l2 = extended_l2;
    if (qcow2_create(path, &o, &err) < 0) {
        fail_msg("create %s: %s", path, err.msg);
    }
    return open_rw(path);
}

static void qemu_check_clean(const char *path)
{
    /* -U: we may hold the image open (flushed: see qemu_check_open) */
    if (run("qemu-img check -U -q '%s'", path) != 0) {
        run("qemu-img check -U '%s' >&2", path);
        fail_msg("qemu-img check is not clean for %s", path);
    }
}

/* qemu-img check finds nothing wrong but n leaked clusters (exit code 3). */
static void qemu_check_leaks(const char *path, int n)
{
    if (run("qemu-img check -U '%s' >/dev/null 2>&1; test $? -eq 3", path) != 0 ||
        run("qemu-img check -U '%s' 2>&1 | grep -q '^%d leaked clusters were found'", path, n) != 0) {
        run("qemu-img check -U '%s' >&2", path);
        fail_msg("qemu-img check does not find just %d leaked clusters in %s", n, path);
    }
}

/* An image we hold open is consistent on the disk after a flush, as QEMU's
 * is: until then its metadata may wait in the cache (qcow2_order.c). */
static void qemu_check_open(struct blockdev *bd, const char *path)
{
    struct error err = { 0 };
    assert_int_equal(blockdev_flush(bd, &err), 0);
    qemu_check_clean(path);
}

static void write_pattern(struct blockdev *bd, uint64_t off, uint64_t len, uint8_t v)
{
    struct error err = { 0 };
    uint8_t *buf = malloc(len);
    memset(buf, v, len);
    assert_int_equal(blockdev_pwrite(bd, off, buf, len, &err), 0);
    free(buf);
}

static void expect_pattern(struct blockdev *bd, uint64_t off, uint64_t len, uint8_t v)
{
    struct error err = { 0 };
    uint8_t *buf = malloc(len);
    assert_int_equal(blockdev_pread(bd, off, buf, len, &err), 0);
    for (uint64_t i = 0; i < len; i++) {
        if (buf[i] != v) {
            fail_msg("offset %llu: %02x, expected %02x", (unsigned long long)(off + i), buf[i], v);
        }
    }
    free(buf);
}

static void snap(struct blockdev *bd, const char *op, const char *name)
{
    struct error err = { 0 };
    int ret;
    if (!strcmp(op, "create")) {
        ret = qcow2_snapshot_create(bd, name, NULL, &err);
    } else if (!strcmp(op, "apply")) {
        ret = qcow2_snapshot_apply(bd, name, &err);
    } else {
        ret = qcow2_snapshot_delete(bd, name, &err);
    }
    if (ret < 0) {
        fail_msg("snapshot %s %s: %s", op, name, err.msg);
    }
}

/* Our operations, judged by qemu-img after each, across layouts. */
static void roundtrip(uint32_t cluster_size, int version, bool extended_l2, const char *name)
{
    char path[512];
    path_of(path, sizeof(path), name);
    struct blockdev *bd = create_open(path, cluster_size, version, extended_l2);
    struct error err = { 0 };
    write_pattern(bd, 0, 1 << 20, 0x11);
    write_pattern(bd, 5 << 20, 300000, 0x12);
    /* a compressed cluster too */
    uint8_t *c = calloc(1, cluster_size);
    memset(c, 0x13, cluster_size / 2);
    assert_int_equal(blockdev_pwrite_compressed(bd, 7u << 20, c, cluster_size, &err), 0);
    free(c);
    snap(bd, "create", "first");
    qemu_check_open(bd, path);
    write_pattern(bd, 0, 512 << 10, 0x21);
    write_pattern(bd, 7u << 20, 4096, 0x22);
    snap(bd, "create", "second");
    qemu_check_open(bd, path);
    write_pattern(bd, 100000, 200000, 0x31);
    qemu_check_open(bd, path);

    struct blockdev_snapshot_info *list;
    int n;
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, "1");
    assert_string_equal(list[0].name, "first");
    assert_string_equal(list[1].id, "2");
    assert_string_equal(list[1].name, "second");
    assert_int_equal(list[0].disk_size, DISK);
    blockdev_snapshot_list_free(list, n);
    assert_int_equal(run("qemu-img snapshot -U -l '%s' | grep -q ' second '", path), 0);

    snap(bd, "apply", "first");
    qemu_check_open(bd, path);
    expect_pattern(bd, 0, 1 << 20, 0x11);
    expect_pattern(bd, 5 << 20, 300000, 0x12);
    expect_pattern(bd, (7u << 20), cluster_size / 2, 0x13);
    /* writes after apply must not reach the snapshot */
    write_pattern(bd, 0, 4096, 0x41);
    qemu_check_open(bd, path);
    snap(bd, "apply", "2");
    expect_pattern(bd, 0, 512 << 10, 0x21);
    expect_pattern(bd, 512 << 10, 512 << 10, 0x11);
    expect_pattern(bd, 7u << 20, 4096, 0x22);
    snap(bd, "delete", "first");
    qemu_check_open(bd, path);
    expect_pattern(bd, 0, 512 << 10, 0x21);
    snap(bd, "delete", "second");
    qemu_check_open(bd, path);
    expect_pattern(bd, 7u << 20, 4096, 0x22);
    /* with no snapshot left, everything is owned again: in-place writes */
    write_pattern(bd, 0, 4096, 0x51);
    blockdev_close(bd);
    qemu_check_clean(path);
    assert_int_equal(run("qemu-io -c 'read -q -P 0x51 0 4096' -c 'read -q -P 0x21 4096 4096' '%s'",
                         path), 0);
}

static void test_roundtrip_default(void **state)
{
    roundtrip(65536, 3, false, "default.qcow2");
}

static void test_roundtrip_small_clusters_v2(void **state)
{
    roundtrip(4096, 2, false, "v2.qcow2");
}

static void test_roundtrip_extended_l2(void **state)
{
    roundtrip(65536, 3, true, "extl2.qcow2");
}

/* Snapshots made by qemu-img are listed, applied and deleted by us. */
static void test_qemu_snapshots_used_by_us(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "qemu-made.qcow2");
    assert_int_equal(run("qemu-img create -q -f qcow2 '%s' 8M && "
                         "qemu-io -c 'write -q -P 0x61 0 2M' '%s' && "
                         "qemu-img snapshot -c alpha '%s' && "
                         "qemu-io -c 'write -q -P 0x62 1M 2M' '%s' && "
                         "qemu-img snapshot -c beta '%s' && "
                         "qemu-io -c 'write -q -P 0x63 0 64k' '%s'",
                         path, path, path, path, path, path), 0);
    struct blockdev *bd = open_rw(path);
    struct error err = { 0 };
    struct blockdev_snapshot_info *list;
    int n;
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "alpha");
    assert_string_equal(list[1].id, "2");
    assert_int_equal(list[1].disk_size, 8 << 20);
    assert_true(list[0].date_sec > 1600000000u);
    blockdev_snapshot_list_free(list, n);
    snap(bd, "apply", "alpha");
    expect_pattern(bd, 0, 2 << 20, 0x61);
    expect_pattern(bd, 2 << 20, 1 << 20, 0);
    qemu_check_open(bd, path);
    snap(bd, "delete", "1");
    qemu_check_open(bd, path);
    /* new id: the largest + 1 */
    snap(bd, "create", "gamma");
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].id, "3");
    blockdev_snapshot_list_free(list, n);
    assert_int_equal(qcow2_snapshot_rename(bd, "beta", "delta", &err), 0);
    blockdev_close(bd);
    qemu_check_clean(path);
    assert_int_equal(run("qemu-img snapshot -l '%s' | grep -q ' delta '", path), 0);
    assert_int_equal(run("qemu-img snapshot -a delta '%s' && "
                         "qemu-io -c 'read -q -P 0x61 0 1M' -c 'read -q -P 0x62 1M 2M' '%s'",
                         path, path), 0);
    assert_int_equal(run("qemu-img snapshot -a gamma '%s' && "
                         "qemu-io -c 'read -q -P 0x61 0 2M' '%s'", path, path), 0);
    qemu_check_clean(path);
}

/* Snapshots we make are applied and deleted by qemu-img. */
static void test_our_snapshots_used_by_qemu(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "ours.qcow2");
    struct blockdev *bd = create_open(path, 65536, 3, false);
    write_pattern(bd, 0, 3 << 20, 0x71);
    snap(bd, "create", "one");
    write_pattern(bd, 1 << 20, 1 << 20, 0x72);
    snap(bd, "create", "two");
    write_pattern(bd, 0, 4 << 20, 0x73);
    blockdev_close(bd);
    qemu_check_clean(path);
    assert_int_equal(run("qemu-img snapshot -a one '%s' && qemu-img check -q '%s' && "
                         "qemu-io -c 'read -q -P 0x71 0 3M' -c 'read -q -P 0 3M 1M' '%s'",
                         path, path, path), 0);
    assert_int_equal(run("qemu-img snapshot -d one '%s' && qemu-img check -q '%s' && "
                         "qemu-img snapshot -a two '%s' && qemu-img check -q '%s' && "
                         "qemu-io -c 'read -q -P 0x71 0 1M' -c 'read -q -P 0x72 1M 1M' '%s'",
                         path, path, path, path, path), 0);
    assert_int_equal(run("qemu-img snapshot -d two '%s' && qemu-img check -q '%s'", path, path), 0);
}

/* VM state: ours read by qemu-io and the other way round; snapshots carry it. */
static void test_vmstate(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "vm.qcow2");
    struct blockdev *bd = create_open(path, 65536, 3, false);
    struct error err = { 0 };
    size_t len = 200704;
    uint8_t *buf = malloc(len);
    memset(buf, 0x5a, len);
    write_pattern(bd, 0, 65536, 0x01);
    assert_int_equal(blockdev_vmstate_write(bd, 0, buf, len, &err), 0);
    struct blockdev_snapshot_vm vm = { .vm_state_size = len, .vm_clock_nsec = 123456789, .icount = -1 };
    assert_int_equal(qcow2_snapshot_create(bd, "withvm", &vm, &err), 0);
    /* the active VM state went with the snapshot */
    memset(buf, 0xff, len);
    assert_int_equal(blockdev_vmstate_read(bd, 0, buf, 4096, &err), 0);
    for (int i = 0; i < 4096; i++) {
        assert_int_equal(buf[i], 0);
    }
    assert_int_equal(qcow2_snapshot_vmstate_read(bd, "withvm", 0, buf, len, &err), 0);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(buf[i], 0x5a);
    }
    blockdev_close(bd);
    qemu_check_clean(path);
    /* qemu-img shows the VM size */
    assert_int_equal(run("qemu-img snapshot -l '%s' | grep withvm | grep -q '196 KiB'", path), 0);
    /* applied by qemu-img, the VM state is the active one: read it with qemu-io */
    assert_int_equal(run("qemu-img snapshot -a withvm '%s' && "
                         "qemu-io -c 'read -q -b -P 0x5a 0 200704' '%s'", path, path), 0);
    /* qemu-io writes VM state; we read it, snapshot it, read it from the snapshot */
    assert_int_equal(run("qemu-io -c 'write -q -b -P 0x3c 65536 65536' '%s'", path), 0);
    bd = open_rw(path);
    assert_int_equal(blockdev_vmstate_read(bd, 65536, buf, 65536, &err), 0);
    for (int i = 0; i < 65536; i++) {
        assert_int_equal(buf[i], 0x3c);
    }
    vm.vm_state_size = 131072;
    assert_int_equal(qcow2_snapshot_create(bd, "second", &vm, &err), 0);
    assert_int_equal(qcow2_snapshot_vmstate_read(bd, "second", 0, buf, 131072, &err), 0);
    for (int i = 0; i < 65536; i++) {
        assert_int_equal(buf[i], 0x5a);
        assert_int_equal(buf[65536 + i], 0x3c);
    }
    struct blockdev_snapshot_info *list;
    int n;
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].vm_state_size, 200704);
    assert_int_equal(list[0].vm_clock_nsec, 123456789);
    assert_int_equal(list[0].icount, -1);
    blockdev_snapshot_list_free(list, n);
    /* apply restores the VM state with the disk */
    assert_int_equal(qcow2_snapshot_apply(bd, "withvm", &err), 0);
    assert_int_equal(blockdev_vmstate_read(bd, 0, buf, len, &err), 0);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(buf[i], 0x5a);
    }
    blockdev_close(bd);
    qemu_check_clean(path);
    free(buf);
}

/* Patches bytes of a file in place. */
static void poke(const char *path, uint64_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void peek(const char *path, uint64_t off, void *data, size_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void expect_open_error(const char *path, const char *needle)
{
    struct blockdev *bd;
    struct blockdev_open_opts o = { 0 };
    struct error err = { 0 };
    assert_true(blockdev_open(&bd, path, &o, &err) < 0);
    if (!strstr(err.msg, needle)) {
        fail_msg("error '%s' does not mention '%s'", err.msg, needle);
    }
}

/* Unknown extra data written by a newer QEMU survives our table rewrites. */
static void test_unknown_extra_data_kept(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "extra.qcow2");
    assert_int_equal(run("qemu-img create -q -f qcow2 '%s' 8M && qemu-img snapshot -c a '%s'",
                         path, path), 0);
    uint8_t h[72];
    peek(path, 0, h, sizeof(h));
    uint64_t table = ld_be64(h + 64);
    uint8_t e[64];
    peek(path, table, e, sizeof(e));
    uint32_t extra = ld_be32(e + 36);
    assert_int_equal(extra, 24);
    /* one entry: grow its extra data by 8 bytes, id and name move along */
    uint8_t grown[64 + 8] = { 0 };
    memcpy(grown, e, 40 + 24);
    st_be32(grown + 36, 32);
    memcpy(grown + 64, "\xde\xad\xbe\xef\x01\x02\x03\x04", 8);
    uint8_t idname[2];
    peek(path, table + 64, idname, 2);  /* id "1", name "a" */
    uint8_t out[74];
    memcpy(out, grown, 72);
    memcpy(out + 72, idname, 2);
    poke(path, table, out, sizeof(out));
    assert_int_equal(run("qemu-img check -q '%s'", path), 0);

    struct blockdev *bd = open_rw(path);
    snap(bd, "create", "b");
    blockdev_close(bd);
    qemu_check_clean(path);
    peek(path, 0, h, sizeof(h));
    table = ld_be64(h + 64);
    uint8_t now[74];
    peek(path, table, now, sizeof(now));
    assert_int_equal(ld_be32(now + 36), 32);
    assert_memory_equal(now + 64, "\xde\xad\xbe\xef\x01\x02\x03\x04", 8);
    assert_memory_equal(now + 72, "1a", 2);
    assert_int_equal(run("qemu-img snapshot -l '%s' | grep -q ' b '", path), 0);
}

/* How many snapshots we list in the image at path. */
static int our_count(const char *path)
{
    struct blockdev *bd = open_rw(path);
    struct blockdev_snapshot_info *list;
    struct error err = { 0 };
    int n = -1;
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    blockdev_snapshot_list_free(list, n);
    blockdev_close(bd);
    return n;
}

/* Hostile snapshot tables are refused with a clear error; what QEMU reads
 * (a table past the end of the file reads as zeros; a bad L1 table matters
 * only once the snapshot is used: iotest 080) we read alike. */
static void test_bad_tables(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "bad.qcow2");
    assert_int_equal(run("qemu-img create -q -f qcow2 '%s' 8M && qemu-img snapshot -c a '%s'",
                         path, path), 0);
    uint8_t h[72];
    peek(path, 0, h, sizeof(h));
    uint64_t table = ld_be64(h + 64);
    uint8_t e[40];
    peek(path, table, e, sizeof(e));

    uint8_t b[8];
    st_be64(b, ld_be64(e) + 512);       /* snapshot L1 table unaligned: used, it fails */
    poke(path, table, b, 8);
    struct blockdev *bd = open_rw(path);
    struct error err = { 0 };
    assert_int_equal(qcow2_snapshot_delete(bd, "a", &err), -EINVAL);
    assert_string_equal(err.msg, "Snapshot L1 table offset invalid");
    blockdev_close(bd);
    assert_int_equal(run("qemu-img snapshot -d a '%s' 2>&1 | grep -q "
                         "\"delete snapshot 'a': Snapshot L1 table offset invalid\"", path), 0);
    st_be32(b, 1u << 28);               /* too large */
    poke(path, table + 8, b, 4);
    bd = open_rw(path);
    assert_int_equal(qcow2_snapshot_delete(bd, "a", &err), -EFBIG);
    assert_string_equal(err.msg, "Snapshot L1 table too large");
    blockdev_close(bd);
    poke(path, table, e, 12);

    st_be32(b, 5000);                   /* extra data beyond QEMU's limit */
    poke(path, table + 36, b, 4);
    expect_open_error(path, "extra metadata");
    poke(path, table + 36, e + 36, 4);

    st_be32(b, 40000);                  /* more entries than the file holds: zeros */
    poke(path, 60, b, 4);
    assert_int_equal(our_count(path), 40000);
    assert_int_equal(run("test $(qemu-img snapshot -l '%s' | wc -l) -eq 40002", path), 0);
    st_be32(b, 70000);                  /* more than QEMU allows */
    poke(path, 60, b, 4);
    expect_open_error(path, "Snapshot table too large");
    st_be32(b, 1);
    poke(path, 60, b, 4);

    st_be64(b, 1ULL << 40);             /* table beyond the end of the file: one empty entry */
    poke(path, 64, b, 8);
    assert_int_equal(our_count(path), 1);
    assert_int_equal(run("test $(qemu-img snapshot -l '%s' | wc -l) -eq 3", path), 0);
    st_be64(b, table);
    poke(path, 64, b, 8);
    assert_int_equal(run("qemu-img check -q '%s'", path), 0);
    bd = open_rw(path);
    blockdev_close(bd);

    /* A table over QEMU's 64 MiB limit: 1100 entries with 65535-byte names
     * (a sparse file; only the entry headers are written). */
    st_be32(b, 1100);
    poke(path, 60, b, 4);
    uint64_t pos = table;
    for (int i = 0; i < 1100; i++) {
        uint8_t hdr[40] = { 0 };
        st_be16(hdr + 14, 65535);
        poke(path, pos, hdr, sizeof(hdr));
        pos = (pos + 40 + 65535 + 7) & ~7ULL;
    }
    expect_open_error(path, "too big");
}

/* A snapshot table over many clusters, and apply restoring the disk size. */
static void test_many_snapshots_and_resize(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "many.qcow2");
    struct blockdev *bd = create_open(path, 512, 3, false);
    struct error err = { 0 };
    char name[160];
    for (int i = 0; i < 30; i++) {
        write_pattern(bd, (uint64_t)i * 4096, 4096, (uint8_t)(i + 1));
        snprintf(name, sizeof(name), "%03d-%0120d", i, i);
        snap(bd, "create", name);
    }
    qemu_check_open(bd, path);
    assert_int_equal(run("test $(qemu-img snapshot -U -l '%s' | grep -c '^[0-9]') -eq 30", path), 0);
    /* grow the disk, write past the old end, then go back */
    assert_int_equal(blockdev_truncate(bd, 12 << 20, false, PREALLOC_OFF, &err), 0);
    write_pattern(bd, 10 << 20, 65536, 0xee);
    snap(bd, "create", "big");
    snprintf(name, sizeof(name), "%03d-%0120d", 5, 5);
    snap(bd, "apply", name);
    assert_int_equal(bd->size, DISK);
    expect_pattern(bd, 5 * 4096, 4096, 6);
    expect_pattern(bd, 6 * 4096, 4096, 0);
    qemu_check_open(bd, path);
    assert_int_equal(run("qemu-img info -U '%s' | grep -q 'virtual size: 8 MiB'", path), 0);
    snap(bd, "apply", "big");
    assert_int_equal(bd->size, 12 << 20);
    expect_pattern(bd, 10 << 20, 65536, 0xee);
    for (int i = 0; i < 30; i += 2) {
        snprintf(name, sizeof(name), "%03d-%0120d", i, i);
        snap(bd, "delete", name);
    }
    blockdev_close(bd);
    qemu_check_clean(path);
    snprintf(name, sizeof(name), "%03d-%0120d", 7, 7);
    assert_int_equal(run("qemu-img snapshot -a '%s' '%s' && qemu-img check -q '%s' && "
                         "qemu-io -c 'read -q -P 8 28672 4096' -c 'read -q -P 0 32768 4096' '%s' && "
                         "qemu-img info '%s' | grep -q 'virtual size: 8 MiB'",
                         name, path, path, path, path), 0);
}

/* Narrow refcounts: the snapshot that would overflow one is refused; as with
 * QEMU, only its L1 copy is left behind, leaked (iotest 112). */
static void test_refcount_overflow_refused(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "narrow.qcow2");
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = DISK;
    o.refcount_bits = 2;
    assert_int_equal(qcow2_create(path, &o, &err), 0);
    struct blockdev *bd = open_rw(path);
    write_pattern(bd, 0, 1 << 20, 0x42);
    snap(bd, "create", "a");
    snap(bd, "create", "b");
    assert_true(qcow2_snapshot_create(bd, "c", NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "bits"));
    assert_int_equal(blockdev_flush(bd, &err), 0);
    qemu_check_leaks(path, 1);
    write_pattern(bd, 0, 4096, 0x43);
    expect_pattern(bd, 4096, (1 << 20) - 4096, 0x42);
    blockdev_close(bd);
    qemu_check_leaks(path, 1);
    assert_int_equal(run("test $(qemu-img snapshot -l '%s' | grep -c '^[0-9]') -eq 2", path), 0);
}

/* A backing file showing an internal snapshot (a replay's travel: a new
 * top over the recording's overlay viewed at "exit-1"): a commit into it
 * would reopen the file for writing and write its active disk (the
 * recording's), then re-read it and lose the view. Both are refused, the
 * file is not written and the view stays. */
static void test_snapshot_view_not_written(void **state)
{
    char path[512], top[512];
    path_of(path, sizeof(path), "viewed.qcow2");
    path_of(top, sizeof(top), "viewed-top.qcow2");
    struct blockdev *bd = create_open(path, 65536, 3, false);
    write_pattern(bd, 0, 65536, 0x11);
    snap(bd, "create", "exit-1");
    write_pattern(bd, 0, 65536, 0x22);
    blockdev_close(bd);
    assert_int_equal(run("cp '%s' '%s.orig' && qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'",
                         path, path, path, top), 0);
    struct blockdev *t = open_rw(top);
    struct blockdev *below = blockdev_backing(t);
    struct error err = { 0 };
    assert_non_null(below);
    assert_int_equal(blockdev_snapshot_load_tmp(below, "exit-1", &err), 0);
    expect_pattern(t, 0, 65536, 0x11);
    write_pattern(t, 65536, 4096, 0x33);
    assert_int_equal(block_commit(t, below, NULL, &err), -EPERM);
    assert_non_null(strstr(err.msg, "read only"));
    struct blockdev *rw = NULL;
    assert_int_equal(blockdev_reopen_layer_rw(below, &rw, &err), -EPERM);
    assert_null(rw);
    assert_int_equal(blockdev_invalidate_cache(below, &err), -EPERM);
    expect_pattern(t, 0, 65536, 0x11);
    blockdev_close(t);
    assert_int_equal(run("cmp -s '%s' '%s.orig'", path, path), 0);
}

/* Two compressed clusters packed into one host cluster count it twice: a
 * snapshot adds two references at once, which 2-bit refcounts cannot hold.
 * Refused before any refcount rises; QEMU fails with -EINVAL too, but checks
 * one reference at a time: the first went in and the second failed, leaking
 * a reference besides the snapshot's L1 copy, which alone is leaked here. */
static void test_packed_compressed_overflow_refused(void **state)
{
    char path[512], copy[512];
    path_of(path, sizeof(path), "packed.qcow2");
    path_of(copy, sizeof(copy), "packed-qemu.qcow2");
    assert_int_equal(run("qemu-img create -q -f qcow2 -o refcount_bits=2 '%s' 1M && "
                         "qemu-io -c 'write -q -c -P 1 0 64k' -c 'write -q -c -P 2 64k 64k' '%s' && "
                         "cp '%s' '%s'", path, path, path, copy), 0);
    assert_int_equal(run("qemu-img snapshot -c s '%s' 2>&1 | grep -q -- '-22 (Invalid argument)'",
                         copy), 0);
    struct blockdev *bd = open_rw(path);
    struct error err = { 0 };
    int ret = qcow2_snapshot_create(bd, "s", NULL, &err);
    blockdev_close(bd);
    qemu_check_leaks(path, 1);
    assert_int_equal(ret, -EINVAL);
    assert_non_null(strstr(err.msg, "bits"));
    assert_int_equal(run("qemu-io -c 'read -q -P 1 0 64k' -c 'read -q -P 2 64k 64k' '%s'", path), 0);
}

/* An L2 entry naming a cluster no refcount block counts (iotest 080): QEMU
 * fails with -EFBIG when the refcount table could not reach it, else -EAGAIN
 * (having added the block); we fail alike, before changing anything. */
static void test_uncounted_cluster_refused(void **state)
{
    static const struct { uint64_t entry; int code; } cases[] = {
        { 0xbfffffffffff0000ULL, -EFBIG },      /* 72 PB: beyond any refcount table */
        { 0x800000ffffff0000ULL, -EAGAIN },     /* 1 TB: the table could grow */
    };
    char path[512], copy[512];
    path_of(path, sizeof(path), "uncounted.qcow2");
    path_of(copy, sizeof(copy), "uncounted-qemu.qcow2");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(run("qemu-img create -q -f qcow2 '%s' 64M && "
                             "qemu-io -c 'write -q 0 512' '%s'", path, path), 0);
        uint8_t e[8];
        st_be64(e, cases[i].entry);
        poke(path, 0x40000, e, sizeof(e));      /* the first L2 table's first entry */
        assert_int_equal(run("cp '%s' '%s' && qemu-img snapshot -c s '%s' 2>&1 | "
                             "grep -q -- ': %d ('", path, copy, copy, cases[i].code), 0);
        struct blockdev *bd = open_rw(path);
        struct error err = { 0 };
        assert_int_equal(qcow2_snapshot_create(bd, "s", NULL, &err), cases[i].code);
        assert_non_null(strstr(err.msg, "no refcount block"));
        blockdev_close(bd);
        assert_int_equal(run("test -z \"$(qemu-img snapshot -l '%s')\"", path), 0);
    }
}

#define QEMU_VM "qemu-system-x86_64 -nodefaults -display none -machine pc,accel=tcg -m 16 " \
                "-drive file='%s',if=ide,format=qcow2 -monitor stdio -S"

/* A real savevm by QEMU is read by us; QEMU loads a VM state we stored. */
static void test_qemu_savevm_interop(void **state)
{
    char path[512];
    path_of(path, sizeof(path), "savevm.qcow2");
    assert_int_equal(run("qemu-img create -q -f qcow2 '%s' 8M", path), 0);
    assert_int_equal(run("printf 'savevm vm1\\nquit\\n' | " QEMU_VM " >/dev/null 2>&1", path), 0);
    struct blockdev *bd = open_rw(path);
    struct error err = { 0 };
    struct blockdev_snapshot_info *list;
    int n;
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "vm1");
    uint64_t size = list[0].vm_state_size;
    uint64_t clock = list[0].vm_clock_nsec;
    assert_true(size > 4096);
    assert_int_equal(list[0].icount, -1);
    blockdev_snapshot_list_free(list, n);
    uint8_t *vm = malloc(size), *again = malloc(size);
    assert_int_equal(qcow2_snapshot_vmstate_read(bd, "vm1", 0, vm, size, &err), 0);
    assert_memory_equal(vm, "QEVM", 4);     /* QEMU's migration stream magic */
    /* applied, the state is the active one */
    snap(bd, "apply", "vm1");
    assert_int_equal(blockdev_vmstate_read(bd, 0, again, size, &err), 0);
    assert_memory_equal(vm, again, size);
    /* store the same state under a snapshot of ours; QEMU must load it */
    struct blockdev_snapshot_vm info = { .vm_state_size = size, .vm_clock_nsec = clock, .icount = -1 };
    assert_int_equal(qcow2_snapshot_create(bd, "ours", &info, &err), 0);
    snap(bd, "delete", "vm1");
    blockdev_close(bd);
    qemu_check_clean(path);
    /* QEMU fails (exit status, message) when it cannot load the state */
    assert_int_equal(run("out=$(printf 'quit\\n' | " QEMU_VM " -loadvm ours 2>&1); st=$?; "
                         "if echo \"$out\" | grep -q 'qemu-system-x86_64:'; then "
                         "echo \"$out\" >&2; exit 1; fi; exit $st", path), 0);
    assert_int_equal(run("qemu-img snapshot -l '%s' | grep ours | grep -q KiB", path), 0);
    free(vm);
    free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_default),
        cmocka_unit_test(test_roundtrip_small_clusters_v2),
        cmocka_unit_test(test_roundtrip_extended_l2),
        cmocka_unit_test(test_qemu_snapshots_used_by_us),
        cmocka_unit_test(test_our_snapshots_used_by_qemu),
        cmocka_unit_test(test_vmstate),
        cmocka_unit_test(test_unknown_extra_data_kept),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_qemu_savevm_interop),
        cmocka_unit_test(test_many_snapshots_and_resize),
        cmocka_unit_test(test_refcount_overflow_refused),
        cmocka_unit_test(test_packed_compressed_overflow_refused),
        cmocka_unit_test(test_snapshot_view_not_written),
        cmocka_unit_test(test_uncounted_cluster_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
