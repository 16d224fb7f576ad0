/* Allocating qcow2 writes smaller than a cluster. Where the rest of the
 * new cluster reads as zeros (nothing allocated there, no backing data
 * under it, or zero clusters), the rest is zeroed on the host and only the
 * guest's bytes are written, as QEMU's handle_alloc_space does; where old
 * data shows through (a backing file, a snapshot's cluster) it is copied.
 * The whole clusters of a run of new ones are written in one host write.
 * Every case is judged by reading back, by qemu-img check, and by
 * qemu-img compare against a raw file written with the same data.
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
static char dir[] = "/tmp/cowvisor-allocw-XXXXXX";
static char img[128], base[128], ref[128];
static uint8_t model[DISK];     /* what the disk must read as */

static struct blockdev *open_image(void)
{
    struct blockdev *bd = NULL;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, img, &(struct blockdev_open_opts){ .format = "qcow2" }, &err), 0);
    return bd;
}

/* Writes len bytes of pattern seed at off (into the model too), logging the
 * image file's writes. */
static void write_logged(struct blockdev *bd, uint64_t off, size_t len, uint64_t seed)
{
    struct error err = { 0 };
    fill_pattern(model + off, len, seed);
    pwrite_calls = 0;
    pwrite_logging = true;
    assert_int_equal(blockdev_pwrite(bd, off, model + off, len, &err), 0);
    pwrite_logging = false;
}

/* The largest host write of the last write_logged. */
static size_t largest_write(void)
{
    size_t max = 0;
    for (int i = 0; i < pwrite_calls && i < PWRITE_LOG_MAX; i++) {
        max = pwrite_len[i] > max ? pwrite_len[i] : max;
    }
    return max;
}

/* The image reads as the model, through us and through QEMU, and is clean. */
static void assert_image_is_model(void)
{
    struct blockdev *bd = open_image();
    struct error err = { 0 };
    uint8_t *back = malloc(DISK);
    assert_non_null(back);
    assert_int_equal(blockdev_pread(bd, 0, back, DISK, &err), 0);
    assert_memory_equal(back, model, DISK);
    blockdev_close(bd);
    free(back);
    assert_int_equal(write_file(ref, model, DISK), 0);
    assert_int_equal(run("qemu-img check -q %s", img), 0);
    assert_int_equal(run("qemu-img compare -q -f qcow2 -F raw %s %s", img, ref), 0);
}

static void test_small_write_into_empty_cluster_writes_only_its_bytes(void **state)
{
    memset(model, 0, DISK);
    memset(model, 0x11, CLUSTER);
    /* Cluster 0 written first, so that the L2 table exists (a new table is
     * a cluster-sized write of its own). */
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 4M && qemu-io -f qcow2 -c 'write -P 0x11 0 64k' "
                         "%s >/dev/null", img, img), 0);
    struct blockdev *bd = open_image();
    write_logged(bd, 3 * CLUSTER + 8192, 4096, 1);
    assert_int_equal(largest_write(), 4096);    /* not the cluster with its zeros */
    write_logged(bd, 1u << 20, 4096, 2);        /* a cluster below the end of the file */
    assert_int_equal(largest_write(), 4096);
    blockdev_close(bd);
    assert_image_is_model();
}

/* A cluster freed (its data still in the file: the host keeps no hole for
 * it) and then allocated again reads as zeros around the new bytes. */
static void test_reused_cluster_reads_zero_around_new_bytes(void **state)
{
    memset(model, 0, DISK);
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 4M && qemu-io -f qcow2 -c 'write -P 0x55 0 1M' "
                         "-c 'write -P 0x66 1M 64k' %s >/dev/null", img, img), 0);
    memset(model + (1u << 20), 0x66, CLUSTER);
    /* Freed with QEMU's discard, which leaves the data in the file
     * (pass-discard-request off), so it is there when the cluster comes back. */
    assert_int_equal(run("qemu-io -c 'discard 0 1M' --image-opts "
                         "driver=qcow2,pass-discard-request=off,file.filename=%s >/dev/null", img), 0);
    struct blockdev *bd = open_image();
    write_logged(bd, 2u << 20, 4096, 3);
    write_logged(bd, (2u << 20) + CLUSTER + 60000, 5000, 4);   /* across two clusters */
    blockdev_close(bd);
    assert_image_is_model();
}

/* Data under the new cluster: a backing file's, or a zero cluster's. */
static void test_backing_data_is_copied_zero_clusters_are_not(void **state)
{
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 4M && qemu-io -f qcow2 -c 'write -P 0x77 0 2M' "
                         "%s >/dev/null && qemu-img create -q -f qcow2 -b %s -F qcow2 %s 4M && "
                         "qemu-io -f qcow2 -c 'write -z 64k 64k' %s >/dev/null", base, base, base, img, img), 0);
    memset(model, 0, DISK);
    memset(model, 0x77, 2u << 20);
    memset(model + CLUSTER, 0, CLUSTER);
    struct blockdev *bd = open_image();
    write_logged(bd, 4096, 4096, 5);                /* over backing data */
    assert_int_equal(largest_write(), CLUSTER);     /* copied with it */
    write_logged(bd, CLUSTER + 4096, 4096, 6);      /* into the zero cluster */
    assert_int_equal(largest_write(), 4096);
    write_logged(bd, (2u << 20) + 100, 300, 7);     /* past the backing data */
    assert_true(largest_write() <= 4096);        /* its bytes, or a refcount sector */
    blockdev_close(bd);
    assert_image_is_model();
}

/* A write over several clusters that need new ones (empty, compressed)
 * sends the whole clusters' data in one host write; one starting inside a
 * cluster, cluster by cluster. */
static void test_run_of_new_clusters_is_one_write(void **state)
{
    memset(model, 0, DISK);
    memset(model, 0x11, CLUSTER);
    memset(model + (3u << 20), 0x22, CLUSTER);
    assert_int_equal(run("qemu-img create -q -f qcow2 %s 4M && qemu-io -f qcow2 -c 'write -P 0x11 0 64k' "
                         "-c 'write -c -P 0x22 3M 64k' %s >/dev/null", img, img), 0);
    struct blockdev *bd = open_image();
    write_logged(bd, 1u << 20, 1u << 20, 10);
    assert_int_equal(largest_write(), 1u << 20);
    write_logged(bd, 3u << 20, 8 * CLUSTER, 11);            /* over the compressed cluster */
    assert_int_equal(largest_write(), 8 * CLUSTER);
    write_logged(bd, (2u << 20) + 4096, 4 * CLUSTER, 12);  /* inside a cluster: piece by piece */
    assert_true(largest_write() <= CLUSTER);
    blockdev_close(bd);
    assert_image_is_model();
}

/* Extended L2 entries: only the written subclusters get data; the others
 * of the cluster stay unallocated (or zero), as QEMU leaves them. */
static void test_subclusters(void **state)
{
    memset(model, 0, DISK);
    assert_int_equal(run("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k %s 4M", img), 0);
    struct blockdev *bd = open_image();
    write_logged(bd, 4096 + 512, 1024, 8);
    write_logged(bd, (1u << 20) + 7000, 20000, 9);
    blockdev_close(bd);
    assert_image_is_model();
}

static int setup(void **state)
{
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(img, sizeof(img), "%s/w.qcow2", dir);
    snprintf(base, sizeof(base), "%s/base.qcow2", dir);
    snprintf(ref, sizeof(ref), "%s/ref.raw", dir);
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
        cmocka_unit_test(test_small_write_into_empty_cluster_writes_only_its_bytes),
        cmocka_unit_test(test_reused_cluster_reads_zero_around_new_bytes),
        cmocka_unit_test(test_backing_data_is_copied_zero_clusters_are_not),
        cmocka_unit_test(test_run_of_new_clusters_is_one_write),
        cmocka_unit_test(test_subclusters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
