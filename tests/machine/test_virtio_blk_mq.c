/* Multiqueue virtio-blk (VIRTIO_BLK_F_MQ) on virtio-pci, without a KVM VM:
 * the test is the driver, through the transport's BAR as a guest would
 * touch it. A disk with several queues offers F_MQ and says how many in its
 * config space; a request posted on queue 2 completes on queue 2 (its used
 * ring, nobody else's) with queue 2's MSI-X vector; queue indexes and queue
 * counts out of range are refused; and the state of all the queues survives
 * a save and load. Vectors stay masked (no VM to deliver them), so a fired
 * vector shows as its pending bit in the PBA. On virtio-mmio every queue
 * raises the device's one interrupt line. */
#include <errno.h>
#include <pthread.h>
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
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_pci.h"

#define MEM_SIZE (4u << 20)
#define QUEUES 4
#define QSIZE 16
#define RING_GPA(q) (0x10000u + 0x4000u * (q))     /* desc, then avail at +0x1000, used at +0x2000 */
#define HEADER_GPA 0x100000u
#define DATA_GPA 0x101000u
#define STATUS_GPA 0x102000u
#define DISK_SIZE (1u << 20)
#define VIRTIO_BLK_F_MQ 12

/* The common configuration structure (virtio 1.2 section 4.1.4.3). */
enum { DF_SELECT = 0, DF = 4, GF_SELECT = 8, GF = 12, NUM_QUEUES = 18, STATUS = 20, Q_SELECT = 22,
       Q_SIZE = 24, Q_MSIX = 26, Q_ENABLE = 28, Q_DESC = 32, Q_AVAIL = 40, Q_USED = 48 };
#define CONFIG_NUM_QUEUES 34    /* struct virtio_blk_config.num_queues */

struct rig {
    struct guest_memory mem;
    struct blockdev *bd;
    struct virtio_blk blk;
    struct virtio_pci pci;
    char path[64];
    uint16_t next_avail[QUEUES];
};

static void common_write(struct rig *r, unsigned off, unsigned size, uint64_t v)
{
    virtio_pci_bar_write(&r->pci, VIRTIO_PCI_COMMON + off, size, v);
}

static uint64_t common_read(struct rig *r, unsigned off, unsigned size)
{
    return virtio_pci_bar_read(&r->pci, VIRTIO_PCI_COMMON + off, size);
}

static void make_disk(struct rig *r)
{
    snprintf(r->path, sizeof(r->path), "/tmp/cowvisor-blkmq-XXXXXX");
    int fd = mkstemp(r->path);
    assert_true(fd >= 0);
    uint8_t *data = malloc(DISK_SIZE);
    assert_non_null(data);
    for (uint32_t i = 0; i < DISK_SIZE; i++) {
        data[i] = (uint8_t)(i % 251);
    }
    assert_int_equal(write(fd, data, DISK_SIZE), DISK_SIZE);
    close(fd);
    free(data);
}

/* A device with `queues` queues on virtio-pci, not yet driven. */
static struct rig *rig_create(int queues)
{
    struct rig *r = calloc(1, sizeof(*r));
    struct error err = { 0 };
    assert_non_null(r);
    make_disk(r);
    assert_int_equal(guest_memory_create(&r->mem, MEM_SIZE, &err), 0);
    assert_int_equal(blockdev_open(&r->bd, r->path, &(struct blockdev_open_opts){ .format = "raw" }, &err), 0);
    assert_int_equal(virtio_blk_init(&r->blk, &r->mem, r->bd, false, "", queues, &err), 0);
    assert_int_equal(virtio_pci_create(&r->pci, &r->blk.dev, NULL, NULL, &err), 0);
    return r;
}

static void rig_destroy(struct rig *r)
{
    virtio_pci_destroy(&r->pci);
    virtio_blk_destroy(&r->blk);
    blockdev_close(r->bd);
    guest_memory_destroy(&r->mem);
    unlink(r->path);
    free(r);
}

/* What a driver does: features (all offered, with VERSION_1), every queue
 * with vector q + 1, MSI-X on, DRIVER_OK. */
static void drive(struct rig *r)
{
    common_write(r, STATUS, 1, 3);                      /* ACKNOWLEDGE | DRIVER */
    for (unsigned word = 0; word < 2; word++) {
        common_write(r, DF_SELECT, 4, word);
        uint64_t offered = common_read(r, DF, 4);
        common_write(r, GF_SELECT, 4, word);
        common_write(r, GF, 4, offered);
    }
    common_write(r, STATUS, 1, 11);                     /* | FEATURES_OK */
    assert_int_equal(common_read(r, STATUS, 1), 11);
    for (int q = 0; q < r->blk.dev.nqueues; q++) {
        common_write(r, Q_SELECT, 2, (uint64_t)q);
        common_write(r, Q_SIZE, 2, QSIZE);
        common_write(r, Q_DESC, 8, RING_GPA(q));
        common_write(r, Q_AVAIL, 8, RING_GPA(q) + 0x1000);
        common_write(r, Q_USED, 8, RING_GPA(q) + 0x2000);
        common_write(r, Q_MSIX, 2, (uint64_t)q + 1);
        common_write(r, Q_ENABLE, 2, 1);
        assert_int_equal(common_read(r, Q_ENABLE, 2), 1);
    }
    pci_config_write(&r->pci.pci, r->pci.msix_cap + 2u, 2, 0x8000);     /* MSI-X enable */
    common_write(r, STATUS, 1, 15);                     /* | DRIVER_OK */
}

/* A 4 KiB read of disk byte offset off made available on queue q. */
static void post_read(struct rig *r, int q, uint64_t off)
{
    struct virtq_desc *d = guest_memory_ptr(&r->mem, RING_GPA(q), 3 * sizeof(*d));
    struct virtq_avail *a = guest_memory_ptr(&r->mem, RING_GPA(q) + 0x1000, 4 + 2 * QSIZE);
    uint32_t header[4] = { 0 /* IN */, 0, (uint32_t)(off / 512), 0 };
    memcpy(guest_memory_ptr(&r->mem, HEADER_GPA, sizeof(header)), header, sizeof(header));
    memset(guest_memory_ptr(&r->mem, DATA_GPA, 4096), 0xee, 4096);
    *(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1) = 0xff;
    d[0] = (struct virtq_desc){ HEADER_GPA, 16, VIRTQ_DESC_F_NEXT, 1 };
    d[1] = (struct virtq_desc){ DATA_GPA, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2 };
    d[2] = (struct virtq_desc){ STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0 };
    a->ring[r->next_avail[q] % QSIZE] = 0;
    __atomic_store_n(&a->idx, ++r->next_avail[q], __ATOMIC_RELEASE);
}

static void drain(struct rig *r)
{
    pthread_mutex_lock(&r->blk.dev.lock);
    virtio_blk_drain_locked(&r->blk);
    pthread_mutex_unlock(&r->blk.dev.lock);
}

/* The read, notified on the PCI notify structure, and waited for. */
static void read_on_queue(struct rig *r, int q, uint64_t off)
{
    post_read(r, q, off);
    virtio_pci_bar_write(&r->pci, VIRTIO_PCI_NOTIFY + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULTIPLIER, 2,
                         (uint64_t)q);
    drain(r);
}

/* The same through virtio-mmio's QueueNotify register. */
static void read_on_queue_mmio(struct rig *r, struct virtio_mmio *t, int q, uint64_t off)
{
    post_read(r, q, off);
    virtio_mmio_write(t, 0x050, 4, (uint64_t)q);
    drain(r);
}

static uint16_t used_idx(struct rig *r, int q)
{
    struct virtq_used *u = guest_memory_ptr(&r->mem, RING_GPA(q) + 0x2000, 4);
    return __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
}

static void assert_read_ok(struct rig *r, uint64_t off)
{
    assert_int_equal(*(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1), 0);
    const uint8_t *data = guest_memory_ptr(&r->mem, DATA_GPA, 4096);
    for (uint32_t i = 0; i < 4096; i++) {
        if (data[i] != (uint8_t)((off + i) % 251)) {
            fail_msg("byte %u of the read at %llu is %u", i, (unsigned long long)off, data[i]);
        }
    }
}

static uint32_t pending_vectors(struct rig *r)
{
    return (uint32_t)virtio_pci_bar_read(&r->pci, VIRTIO_PCI_MSIX_PBA, 4);
}

static void test_features_and_config(void **state)
{
    struct rig *r = rig_create(QUEUES);
    common_write(r, DF_SELECT, 4, 0);
    assert_true(common_read(r, DF, 4) & (1u << VIRTIO_BLK_F_MQ));
    assert_int_equal(common_read(r, NUM_QUEUES, 2), QUEUES);
    assert_int_equal(virtio_pci_bar_read(&r->pci, VIRTIO_PCI_DEVICE + CONFIG_NUM_QUEUES, 2), QUEUES);
    rig_destroy(r);

    r = rig_create(1);     /* as QEMU: one queue, no F_MQ */
    common_write(r, DF_SELECT, 4, 0);
    assert_false(common_read(r, DF, 4) & (1u << VIRTIO_BLK_F_MQ));
    assert_int_equal(virtio_pci_bar_read(&r->pci, VIRTIO_PCI_DEVICE + CONFIG_NUM_QUEUES, 2), 1);
    rig_destroy(r);
}

static void test_request_completes_on_its_queue(void **state)
{
    struct rig *r = rig_create(QUEUES);
    drive(r);
    read_on_queue(r, 2, 8192);
    assert_read_ok(r, 8192);
    for (int q = 0; q < QUEUES; q++) {
        assert_int_equal(used_idx(r, q), q == 2 ? 1 : 0);
    }
    assert_int_equal(pending_vectors(r), 1u << 3);      /* queue 2's vector, no other */
    read_on_queue(r, 0, 4096);
    assert_read_ok(r, 4096);
    assert_int_equal(used_idx(r, 0), 1);
    assert_int_equal(used_idx(r, 2), 1);
    assert_int_equal(pending_vectors(r), (1u << 3) | (1u << 1));
    rig_destroy(r);
}

/* A paused machine's device takes no request: one notified while it is
 * quiesced stays in the ring (a migration sends it as it is, and the
 * saved last_avail_idx does not count it) and is served at resume. It
 * used to be served at once, after the migration had sent the RAM it
 * writes to. */
static void test_quiesced_device_leaves_requests(void **state)
{
    struct rig *r = rig_create(2);
    drive(r);
    virtio_device_quiesce(&r->blk.dev);
    post_read(r, 1, 12288);
    virtio_pci_bar_write(&r->pci, VIRTIO_PCI_NOTIFY + 1u * VIRTIO_PCI_NOTIFY_MULTIPLIER, 2, 1);
    drain(r);
    assert_int_equal(used_idx(r, 1), 0);
    assert_int_equal(r->blk.dev.vqs[1].last_avail_idx, 0);
    assert_int_equal(*(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1), 0xff);
    virtio_device_resume(&r->blk.dev);
    drain(r);
    assert_int_equal(used_idx(r, 1), 1);
    assert_int_equal(used_idx(r, 0), 0);
    assert_read_ok(r, 12288);
    rig_destroy(r);
}

static void test_hostile_queues_refused(void **state)
{
    struct virtio_blk b;
    struct guest_memory mem;
    struct error err = { 0 };
    assert_int_equal(guest_memory_create(&mem, 1u << 20, &err), 0);
    int counts[] = { 0, -1, VIRTIO_BLK_MAX_QUEUES + 1, 65535 };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        err = (struct error){ 0 };
        assert_int_equal(virtio_blk_init(&b, &mem, NULL, false, "", counts[i], &err), -EINVAL);
        assert_non_null(strstr(err.msg, "num-queues must be 1 to"));
        virtio_blk_destroy(&b);     /* a refused init leaves nothing to undo */
    }
    guest_memory_destroy(&mem);

    struct rig *r = rig_create(QUEUES);
    drive(r);
    /* A queue past the last: reads as absent, cannot be set up, notifies are ignored. */
    common_write(r, Q_SELECT, 2, QUEUES);
    assert_int_equal(common_read(r, Q_SIZE, 2), 0);
    common_write(r, Q_SIZE, 2, QSIZE);
    common_write(r, Q_ENABLE, 2, 1);
    assert_int_equal(common_read(r, Q_ENABLE, 2), 0);
    common_write(r, Q_SELECT, 2, 0xffff);
    common_write(r, Q_MSIX, 2, 1);
    assert_int_equal(common_read(r, Q_MSIX, 2), 0xffff);
    virtio_pci_bar_write(&r->pci, VIRTIO_PCI_NOTIFY + QUEUES * VIRTIO_PCI_NOTIFY_MULTIPLIER, 2, QUEUES);
    virtio_pci_bar_write(&r->pci, VIRTIO_PCI_MSIX_TABLE - 2, 2, 0xffff);
    virtio_device_handle_notify(&r->blk.dev, -1);
    virtio_device_handle_notify(&r->blk.dev, VIRTIO_MAX_QUEUES);
    /* A vector past the table is no vector. */
    common_write(r, Q_SELECT, 2, 1);
    common_write(r, Q_MSIX, 2, VIRTIO_PCI_VECTORS);
    assert_int_equal(common_read(r, Q_MSIX, 2), 0xffff);
    for (int q = 0; q < QUEUES; q++) {
        assert_int_equal(used_idx(r, q), 0);
    }
    assert_int_equal(pending_vectors(r), 0);
    assert_true(virtio_device_running(&r->blk.dev));
    /* And the device still works. */
    read_on_queue(r, 3, 0);
    assert_read_ok(r, 0);
    assert_int_equal(used_idx(r, 3), 1);
    rig_destroy(r);
}

/* a's device state saved, and loaded into a new device with `queues`
 * queues that has a's guest memory too, as in a migration. */
static struct rig *moved_rig(struct rig *a, int queues)
{
    struct state_buf w, rd;
    struct error err = { 0 };
    state_buf_init(&w);
    virtio_pci_save(&a->pci, &w);
    struct rig *b = rig_create(queues);
    memcpy(guest_memory_ptr(&b->mem, 0, MEM_SIZE), guest_memory_ptr(&a->mem, 0, MEM_SIZE), MEM_SIZE);
    state_buf_init_reader(&rd, w.data, w.len);
    if (virtio_pci_load(&b->pci, &rd, &err) < 0) {
        fail_msg("virtio_pci_load: %s", err.msg);
    }
    state_buf_free(&w);
    memcpy(b->next_avail, a->next_avail, sizeof(b->next_avail));
    return b;
}

static void test_queues_survive_save_and_load(void **state)
{
    struct rig *a = rig_create(QUEUES);
    drive(a);
    read_on_queue(a, 2, 8192);
    read_on_queue(a, 2, 12288);
    struct rig *b = moved_rig(a, QUEUES);
    for (int q = 0; q < QUEUES; q++) {
        common_write(b, Q_SELECT, 2, (uint64_t)q);
        assert_int_equal(common_read(b, Q_MSIX, 2), q + 1);
        assert_int_equal(common_read(b, Q_ENABLE, 2), 1);
        assert_int_equal(common_read(b, Q_DESC, 4), RING_GPA(q));
    }
    read_on_queue(b, 2, 16384);     /* queue 2 carries on where it was */
    assert_read_ok(b, 16384);
    assert_int_equal(used_idx(b, 2), 3);

    /* A device with another number of queues refuses the state. */
    struct state_buf w, rd;
    struct error err = { 0 };
    state_buf_init(&w);
    virtio_pci_save(&a->pci, &w);
    struct rig *c = rig_create(2);
    state_buf_init_reader(&rd, w.data, w.len);
    assert_true(virtio_pci_load(&c->pci, &rd, &err) < 0);
    assert_non_null(strstr(err.msg, "queues"));
    rig_destroy(c);

    state_buf_free(&w);
    rig_destroy(b);
    rig_destroy(a);
}

/* A snapshot of a one-queue disk (taken before MQ was the default, or with
 * num-queues=1) loads into a disk with more queues: its driver never saw
 * MQ, so it uses queue 0 only. State of a driver that negotiated MQ with
 * fewer queues than ours is still refused: it may use queues we lack
 * the state of. */
static void test_one_queue_state_loads_into_more(void **state)
{
    struct rig *a = rig_create(1);
    drive(a);
    read_on_queue(a, 0, 4096);
    struct rig *b = moved_rig(a, QUEUES);
    common_write(b, Q_SELECT, 2, 0);
    assert_int_equal(common_read(b, Q_ENABLE, 2), 1);
    common_write(b, Q_SELECT, 2, 1);
    assert_int_equal(common_read(b, Q_ENABLE, 2), 0);   /* a queue the saved disk did not have */
    read_on_queue(b, 0, 8192);
    assert_read_ok(b, 8192);
    assert_int_equal(used_idx(b, 0), 2);

    struct rig *two = rig_create(2);
    drive(two);                                         /* negotiates MQ */
    struct state_buf w, rd;
    struct error err = { 0 };
    state_buf_init(&w);
    virtio_pci_save(&two->pci, &w);
    struct rig *c = rig_create(QUEUES);
    state_buf_init_reader(&rd, w.data, w.len);
    assert_true(virtio_pci_load(&c->pci, &rd, &err) < 0);
    assert_non_null(strstr(err.msg, "2 queues"));
    state_buf_free(&w);
    rig_destroy(c);
    rig_destroy(two);
    rig_destroy(b);
    rig_destroy(a);
}

static int line_pulses;

static void count_pulse(void *opaque, unsigned gsi, int level)
{
    line_pulses += level;
}

/* Queue q laid out and enabled, the driver up, as a virtio-mmio driver
 * would leave it (set directly: the transport's registers are not what
 * these tests are about). */
static struct virtqueue *enable_queue_directly(struct rig *r, int q)
{
    struct error err = { 0 };
    r->blk.dev.status = 15;
    struct virtqueue *vq = &r->blk.dev.vqs[q];
    vq->size = QSIZE;
    vq->desc_addr = RING_GPA(q);
    vq->avail_addr = RING_GPA(q) + 0x1000;
    vq->used_addr = RING_GPA(q) + 0x2000;
    assert_int_equal(virtqueue_enable(vq, &r->mem, false, &err), 0);
    vq->ready = true;
    return vq;
}

static void test_mmio_one_line(void **state)
{
    struct rig *r = rig_create(QUEUES);
    struct virtio_mmio t;
    struct error err = { 0 };
    /* The device moves to virtio-mmio (its PCI function stays, unused). */
    assert_int_equal(virtio_mmio_create(&t, &r->blk.dev, NULL, NULL, VIRTIO_MMIO_BASE,
                                        (struct irq_line){ count_pulse, NULL, 5 }, &err), 0);
    assert_int_equal(virtio_mmio_read(&t, 0x100 + CONFIG_NUM_QUEUES, 2), QUEUES);
    virtio_mmio_write(&t, 0x030, 4, QUEUES);                /* QueueSel past the last */
    assert_int_equal(virtio_mmio_read(&t, 0x034, 4), 0);    /* QueueNumMax: no such queue */
    enable_queue_directly(r, 2);
    line_pulses = 0;
    read_on_queue_mmio(r, &t, 2, 8192);
    assert_read_ok(r, 8192);
    assert_int_equal(used_idx(r, 2), 1);
    assert_int_equal(line_pulses, 1);
    assert_int_equal(virtio_mmio_read(&t, 0x060, 4), 1);    /* InterruptStatus: used buffer */
    virtio_mmio_destroy(&t);
    rig_destroy(r);
}

/* The completing worker, held back a while as a slow disk would. */
static void *hold_queue_lock(void *lock)
{
    pthread_mutex_lock(lock);
    usleep(300 * 1000);
    pthread_mutex_unlock(lock);
    return NULL;
}

/* The guest turns a queue off (QueueReady = 0) and shrinks it to nothing
 * while a worker still has a request of it: the queue goes off only once the
 * request has completed onto the ring it was taken from (the worker divided
 * by the new size 0, or wrote past a ring checked for another size). Found
 * by review. */
static void test_mmio_queue_off_waits_for_requests(void **state)
{
    struct rig *r = rig_create(1);
    struct virtio_mmio t;
    struct error err = { 0 };
    assert_int_equal(virtio_mmio_create(&t, &r->blk.dev, NULL, NULL, VIRTIO_MMIO_BASE,
                                        (struct irq_line){ count_pulse, NULL, 5 }, &err), 0);
    struct virtqueue *vq = enable_queue_directly(r, 0);
    struct virtq_desc *d = guest_memory_ptr(&r->mem, RING_GPA(0), 2 * sizeof(*d));
    struct virtq_avail *a = guest_memory_ptr(&r->mem, RING_GPA(0) + 0x1000, 4 + 2 * QSIZE);
    uint32_t header[4] = { 4 /* FLUSH: always a worker's */, 0, 0, 0 };
    memcpy(guest_memory_ptr(&r->mem, HEADER_GPA, sizeof(header)), header, sizeof(header));
    *(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1) = 0xff;
    d[0] = (struct virtq_desc){ HEADER_GPA, 16, VIRTQ_DESC_F_NEXT, 1 };
    d[1] = (struct virtq_desc){ STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0 };
    a->ring[0] = 0;
    __atomic_store_n(&a->idx, 1, __ATOMIC_RELEASE);
    pthread_t slow;
    assert_int_equal(pthread_create(&slow, NULL, hold_queue_lock, &r->blk.queue_lock[0]), 0);
    usleep(50 * 1000);
    virtio_mmio_write(&t, 0x050, 4, 0);             /* QueueNotify */
    virtio_mmio_write(&t, 0x030, 4, 0);             /* QueueSel 0 */
    virtio_mmio_write(&t, 0x044, 4, 0);             /* QueueReady 0 */
    assert_int_equal(used_idx(r, 0), 1);            /* the flush completed first */
    assert_int_equal(*(uint8_t *)guest_memory_ptr(&r->mem, STATUS_GPA, 1), 0);
    virtio_mmio_write(&t, 0x038, 4, 0x10000);       /* QueueNum: too big, so 0 */
    assert_int_equal(vq->size, 0);
    pthread_join(slow, NULL);
    drain(r);
    virtio_mmio_destroy(&t);
    rig_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features_and_config),
        cmocka_unit_test(test_request_completes_on_its_queue),
        cmocka_unit_test(test_quiesced_device_leaves_requests),
        cmocka_unit_test(test_hostile_queues_refused),
        cmocka_unit_test(test_queues_survive_save_and_load),
        cmocka_unit_test(test_one_queue_state_loads_into_more),
        cmocka_unit_test(test_mmio_one_line),
        cmocka_unit_test(test_mmio_queue_off_waits_for_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
