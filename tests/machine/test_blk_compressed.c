/* virtio-blk on a compressed qcow2 image, without a KVM VM: guest memory, a
 * queue laid out in it by hand, the device on a fake transport. The first
 * read of a compressed cluster goes to a worker (it must decompress); once
 * the decompressed-cluster cache holds the cluster, a read of it is served
 * on the notifying thread itself, before handle_notify returns, with the
 * same data. */
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
#include "virtio/virtio_blk.h"

#define MEM_SIZE (4u << 20)
#define QSIZE 8
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA 0x3000
#define HEADER_GPA 0x10000
#define DATA_GPA 0x20000
#define STATUS_GPA 0x30000
#define CLUSTER (64u << 10)

static void fake_notify_queue(void *t, int q) {}
static void fake_notify_config(void *t) {}
static const struct virtio_transport_ops fake_transport = { fake_notify_queue, fake_notify_config };

struct rig {
    struct guest_memory mem;
    struct virtio_blk blk;
    struct blockdev *bd;
    char dir[64], path[96];
    uint8_t cluster[CLUSTER];   /* what guest cluster 1 holds */
};

static void make_image(struct rig *r)
{
    struct error err = { 0 };
    snprintf(r->dir, sizeof(r->dir), "/tmp/cowvisor-blkz-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->path, sizeof(r->path), "%s/z.qcow2", r->dir);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 4 * CLUSTER;
    assert_int_equal(blockdev_create(r->path, &o, &err), 0);
    struct blockdev *bd = NULL;
    assert_int_equal(blockdev_open(&bd, r->path, &(struct blockdev_open_opts){ .format = "qcow2" }, &err), 0);
    for (uint32_t i = 0; i < CLUSTER; i++) {
        r->cluster[i] = (uint8_t)(i / 100 + 3);    /* compressible */
    }
    assert_int_equal(blockdev_pwrite_compressed(bd, CLUSTER, r->cluster, CLUSTER, &err), 0);
    blockdev_close(bd);
}

static struct rig *rig_create(void)
{
    struct rig *r = calloc(1, sizeof(*r));
    struct error err = { 0 };
    assert_non_null(r);
    make_image(r);
    assert_int_equal(guest_memory_create(&r->mem, MEM_SIZE, &err), 0);
    struct blockdev_open_opts opts = { .format = "qcow2", .flags = BDEV_READ_ONLY };
    assert_int_equal(blockdev_open(&r->bd, r->path, &opts, &err), 0);
    assert_int_equal(virtio_blk_init(&r->blk, &r->mem, r->bd, true, "", &err), 0);
    r->blk.dev.transport = &fake_transport;
    r->blk.dev.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                        VIRTIO_STATUS_DRIVER_OK;
    struct virtqueue *vq = &r->blk.dev.vqs[0];
    vq->size = QSIZE;
    vq->desc_addr = DESC_GPA;
    vq->avail_addr = AVAIL_GPA;
    vq->used_addr = USED_GPA;
    vq->ready = true;
    assert_int_equal(virtqueue_enable(vq, &r->mem, false, &err), 0);
    return r;
}

static void rig_destroy(struct rig *r)
{
    virtio_blk_destroy(&r->blk);
    blockdev_close(r->bd);
    guest_memory_destroy(&r->mem);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
    assert_int_equal(system(cmd), 0);
    free(r);
}

/* A 4 KiB read of byte offset off: header, data and status descriptors. */
static void post_read(struct rig *r, uint64_t off)
{
    struct virtq_desc *d = guest_memory_ptr(&r->mem, DESC_GPA, 3 * sizeof(*d));
    struct virtq_avail *a = guest_memory_ptr(&r->mem, AVAIL_GPA, 4 + 2 * QSIZE);
    uint32_t header[4] = { 0 /* IN */, 0, (uint32_t)(off / 512), (uint32_t)(off / 512 >> 32) };
    memcpy(guest_memory_ptr(&r->mem, HEADER_GPA, sizeof(header)), header, sizeof(header));
    memset(guest_memory_ptr(&r->mem, DATA_GPA, 4096), 0xee, 4096);
    *(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1) = 0xff;
    d[0] = (struct virtq_desc){ HEADER_GPA, 16, VIRTQ_DESC_F_NEXT, 1 };
    d[1] = (struct virtq_desc){ DATA_GPA, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2 };
    d[2] = (struct virtq_desc){ STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0 };
    a->ring[a->idx % QSIZE] = 0;
    __atomic_store_n(&a->idx, (uint16_t)(a->idx + 1), __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct rig *r)
{
    struct virtq_used *u = guest_memory_ptr(&r->mem, USED_GPA, 4);
    return __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
}

static void assert_read_ok(struct rig *r, uint32_t in_cluster)
{
    assert_int_equal(*(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1), 0);
    assert_memory_equal(guest_memory_ptr(&r->mem, DATA_GPA, 4096), r->cluster + in_cluster, 4096);
}

static void test_cached_compressed_read_served_inline(void **state)
{
    struct rig *r = rig_create();
    /* Not cached yet: a worker decompresses it. */
    post_read(r, CLUSTER + 8192);
    virtio_device_handle_notify(&r->blk.dev, 0);
    pthread_mutex_lock(&r->blk.dev.lock);
    virtio_blk_drain_locked(&r->blk);
    pthread_mutex_unlock(&r->blk.dev.lock);
    assert_int_equal(used_idx(r), 1);
    assert_read_ok(r, 8192);
    uint64_t inline_before = r->blk.cached_reads;
    /* Cached now: served before handle_notify returns, without a worker. */
    post_read(r, CLUSTER + 40960);
    virtio_device_handle_notify(&r->blk.dev, 0);
    assert_int_equal(used_idx(r), 2);
    assert_int_equal(r->blk.cached_reads, inline_before + 1);
    assert_read_ok(r, 40960);
    rig_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_compressed_read_served_inline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
