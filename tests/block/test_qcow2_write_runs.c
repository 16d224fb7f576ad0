/* A qcow2 write over clusters it may write in place (owned plain data)
 * that lie one after another in the file goes out as one host write, as a
 * read over them does; the run stops at a cluster that is not allocated, not
 * next on the host, or shared with a snapshot (even one next on the host),
 * and what is written is what
 * is read back, with qemu-img check clean and the snapshot's data intact.
 * The image file's pwrite calls are logged through the linker's --wrap. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "pwrite_log.h"
#include "qcow2_test_util.h"

#define CLUSTER (64u << 10)
#define DISK (4u << 20)
static char dir[] = "/tmp/cowvisor-wruns-XXXXXX";
static char img[128];

/* A fresh image; qemu-io writes `script`'s clusters in its order (so that
 * their host clusters follow that order). */
static void make_image(const char *script)
{
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 4M && qemu-io -f qcow2 %s %s >/dev/null", img, img, script), 0);
}

/* Writes len bytes of pattern `seed` at off, logging the host writes, and
 * reads them back. */
static void write_logged(uint64_t off, size_t len, uint64_t seed)
{
    struct blockdev *bd = NULL;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, img, &(struct blockdev_open_opts){ .format = "qcow2" }, &err), 0);
    uint8_t *buf = malloc(len), *back = malloc(len);
    assert_non_null(buf);
    assert_non_null(back);
    fill_pattern(buf, len, seed);
    pwrite_calls = 0;
    pwrite_logging = true;
    assert_int_equal(blockdev_pwrite(bd, off, buf, len, &err), 0);
    pwrite_logging = false;
    assert_int_equal(blockdev_pread(bd, off, back, len, &err), 0);
    assert_memory_equal(buf, back, len);
    blockdev_close(bd);
    free(buf);
    free(back);
    assert_int_equal(run("qemu-img check -q %s", img), 0);
}

static void test_contiguous_owned_clusters_one_write(void **state)
{
    make_image("-c 'write -P 0x11 0 4M'");
    write_logged(CLUSTER / 2, 1u << 20, 1);     /* 17 clusters, the first and last in part */
    assert_int_equal(pwrite_calls, 1);
    assert_int_equal(pwrite_len[0], 1u << 20);
}

/* Clusters 0-3 and 5-7 allocated in that order (5 right after 3 on the
 * host), 4 not; 9 written before 8. A write over 0-9: 0-3 in one write, 4
 * allocated (its own write, then metadata), 5-7 in one, 8 and 9 apart. */
static void test_run_stops_where_clusters_do_not_follow(void **state)
{
    make_image("-c 'write -P 0x11 0 256k' -c 'write -P 0x22 320k 192k' -c 'write -P 0x33 576k 64k' "
               "-c 'write -P 0x44 512k 64k'");
    write_logged(0, 10 * CLUSTER, 2);
    int big = 0;
    for (int i = 0; i < pwrite_calls && i < PWRITE_LOG_MAX; i++) {
        big += pwrite_len[i] == 4 * CLUSTER || pwrite_len[i] == 3 * CLUSTER;
    }
    assert_int_equal(big, 2);
    for (int i = 0; i < pwrite_calls && i < PWRITE_LOG_MAX; i++) {
        assert_true(pwrite_len[i] <= 4 * CLUSTER);
    }
}

/* Every cluster shared with a snapshot: the write goes to new clusters,
 * none to the shared ones (one host extent, as qemu-img map shows), and
 * the snapshot keeps its data. */
static void test_shared_clusters_not_written_in_place(void **state)
{
    make_image("-c 'write -P 0x11 0 4M'");
    assert_int_equal(run("qemu-img snapshot -c s1 %s", img), 0);
    char map[160];
    snprintf(map, sizeof(map), "%s.map", img);
    assert_int_equal(run("qemu-img map --output=json %s | python3 -c 'import json, sys; e = json.load(sys.stdin)[0]; "
                         "assert e[\"start\"] == 0 and e[\"length\"] >= 1048576; print(e[\"offset\"])' >%s",
                         img, map), 0);
    FILE *f = fopen(map, "r");
    assert_non_null(f);
    long long shared = -1;
    assert_int_equal(fscanf(f, "%lld", &shared), 1);
    fclose(f);
    write_logged(0, 1u << 20, 3);
    for (int i = 0; i < pwrite_calls && i < PWRITE_LOG_MAX; i++) {
        assert_true(pwrite_off[i] + (off_t)pwrite_len[i] <= shared || pwrite_off[i] >= shared + (1 << 20));
    }
    assert_int_equal(run("qemu-img snapshot -a s1 %s && qemu-io -f qcow2 -c 'read -P 0x11 0 4M' %s >/dev/null",
                         img, img), 0);
}

/* Guest cluster 6 owned, right before guest cluster 7 on the host, which is
 * shared with a snapshot (made so: a hole the snapshot's metadata and three
 * other clusters fill first). A write over both must not write 7 in place. */
static void test_run_stops_at_shared_cluster(void **state)
{
    make_image("-c 'write -P 0x11 0 512k' -c 'discard 0 448k'");
    assert_int_equal(run("qemu-img snapshot -c s1 %s && qemu-io -f qcow2 -c 'write -P 0x22 640k 192k' "
                         "-c 'write -P 0x33 384k 64k' %s >/dev/null", img, img), 0);
    /* The layout wanted, as qemu-img map shows it: 6 and 7 one host extent. */
    if (run("qemu-img map --output=json %s | python3 -c 'import json, sys; m = json.load(sys.stdin); "
            "sys.exit(not any(e[\"start\"] == 393216 and e[\"length\"] == 131072 and e[\"data\"] for e in m))'",
            img) != 0) {
        skip();     /* QEMU placed the clusters otherwise: nothing to test */
    }
    write_logged(6 * CLUSTER, 2 * CLUSTER, 4);
    for (int i = 0; i < pwrite_calls && i < PWRITE_LOG_MAX; i++) {
        assert_true(pwrite_len[i] <= CLUSTER);
    }
    assert_int_equal(run("qemu-img snapshot -a s1 %s && qemu-io -f qcow2 -c 'read -P 0x11 448k 64k' %s >/dev/null",
                         img, img), 0);
}

static int setup(void **state)
{
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(img, sizeof(img), "%s/w.qcow2", dir);
    return 0;
}

static int teardown(void **state)
{
    run("rm -rf %s", dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contiguous_owned_clusters_one_write),
        cmocka_unit_test(test_run_stops_where_clusters_do_not_follow),
        cmocka_unit_test(test_shared_clusters_not_written_in_place),
        cmocka_unit_test(test_run_stops_at_shared_cluster),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
