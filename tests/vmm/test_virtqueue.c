/* Hostile guests: rings with loops, addresses outside guest memory, oversized
 * lengths and bad indices must be refused by the virtqueue code, and a device
 * fed such a ring must enter NEEDS_RESET while other devices keep working. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "virtio/virtio_mmio.h"
#include "virtio/virtio_rng.h"
#include "virtio/virtqueue.h"
#include "vmm/guest_memory.h"

#define MEM_SIZE (2u << 20)
#define QSIZE 8
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA 0x3000
#define DATA_GPA 0x10000

struct fixture {
    struct guest_memory mem;
    struct virtqueue vq;
    struct virtq_chain chain;
};

static struct virtq_desc *desc(struct fixture *f) { return guest_memory_ptr(&f->mem, DESC_GPA, 16 * QSIZE); }
static struct virtq_avail *avail(struct fixture *f) { return guest_memory_ptr(&f->mem, AVAIL_GPA, 4 + 2 * QSIZE + 2); }
static struct virtq_used *used(struct fixture *f) { return guest_memory_ptr(&f->mem, USED_GPA, 4 + 8 * QSIZE + 2); }

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    struct error err = { 0 };
    if (guest_memory_create(&f.mem, MEM_SIZE, &err) < 0) {
        return -1;
    }
    virtqueue_init(&f.vq, QSIZE);
    f.vq.desc_addr = DESC_GPA;
    f.vq.avail_addr = AVAIL_GPA;
    f.vq.used_addr = USED_GPA;
    if (virtqueue_enable(&f.vq, &f.mem, true, &err) < 0) {
        return -1;
    }
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    guest_memory_destroy(&f->mem);
    return 0;
}

static void make_avail(struct fixture *f, uint16_t head)
{
    struct virtq_avail *a = avail(f);
    a->ring[a->idx % QSIZE] = head;
    a->idx++;
}

static void test_good_chain(void **state)
{
    struct fixture *f = *state;
    struct error err = { 0 };
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 1 };
    desc(f)[1] = (struct virtq_desc){ DATA_GPA + 100, 512, VIRTQ_DESC_F_WRITE, 0 };
    assert_int_equal(virtqueue_pop(&f->vq, &f->chain, &err), 0);   /* empty ring */
    make_avail(f, 0);
    assert_int_equal(virtqueue_pop(&f->vq, &f->chain, &err), 1);
    assert_int_equal(f->chain.nout, 1);
    assert_int_equal(f->chain.nin, 1);
    assert_int_equal(f->chain.out_len, 16);
    assert_int_equal(f->chain.in_len, 512);
    assert_ptr_equal(f->chain.bufs[1].ptr, guest_memory_ptr(&f->mem, DATA_GPA + 100, 1));
    virtqueue_push(&f->vq, f->chain.head, 7);
    assert_int_equal(used(f)->idx, 1);
    assert_int_equal(used(f)->ring[0].len, 7);
    assert_int_equal(virtqueue_pop(&f->vq, &f->chain, &err), 0);
}

static void expect_error(struct fixture *f, int code, const char *words)
{
    struct error err = { 0 };
    int ret = virtqueue_pop(&f->vq, &f->chain, &err);
    assert_int_equal(ret, code);
    assert_non_null(strstr(err.msg, words));
}

static void test_descriptor_loop(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 1 };
    desc(f)[1] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 0 };
    make_avail(f, 0);
    expect_error(f, -ELOOP, "loop");
}

static void test_self_loop(void **state)
{
    struct fixture *f = *state;
    desc(f)[3] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 3 };
    make_avail(f, 3);
    expect_error(f, -ELOOP, "loop");
}

static void test_address_outside_memory(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ MEM_SIZE + 4096, 16, 0, 0 };
    make_avail(f, 0);
    expect_error(f, -EFAULT, "outside guest memory");
}

static void test_address_wraps(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ UINT64_MAX - 8, 16, VIRTQ_DESC_F_WRITE, 0 };
    make_avail(f, 0);
    expect_error(f, -EFAULT, "outside guest memory");
}

static void test_oversized_length(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, UINT32_MAX, VIRTQ_DESC_F_WRITE, 0 };
    make_avail(f, 0);
    expect_error(f, -EFAULT, "outside guest memory");
}

static void test_avail_index_too_far(void **state)
{
    struct fixture *f = *state;
    avail(f)->idx = QSIZE + 1;
    expect_error(f, -EINVAL, "ahead");
}

static void test_head_out_of_range(void **state)
{
    struct fixture *f = *state;
    make_avail(f, QSIZE);
    expect_error(f, -EINVAL, "names descriptor");
}

static void test_next_out_of_range(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 200 };
    make_avail(f, 0);
    expect_error(f, -EINVAL, "chains to");
}

static void test_indirect_refused(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0 };
    make_avail(f, 0);
    expect_error(f, -EINVAL, "indirect");
}

static void test_readable_after_writable(void **state)
{
    struct fixture *f = *state;
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 };
    desc(f)[1] = (struct virtq_desc){ DATA_GPA, 16, 0, 0 };
    make_avail(f, 0);
    expect_error(f, -EINVAL, "read-only descriptor");
}

static void test_ring_outside_memory(void **state)
{
    struct fixture *f = *state;
    struct virtqueue vq;
    struct error err = { 0 };
    virtqueue_init(&vq, QSIZE);
    vq.desc_addr = MEM_SIZE - 16;   /* the table runs past the end */
    vq.avail_addr = AVAIL_GPA;
    vq.used_addr = USED_GPA;
    assert_int_equal(virtqueue_enable(&vq, &f->mem, false, &err), -EINVAL);
    assert_false(vq.ready);
    vq.desc_addr = DESC_GPA;
    vq.size = 3;                    /* not a power of two */
    assert_int_equal(virtqueue_enable(&vq, &f->mem, false, &err), -EINVAL);
    vq.size = QSIZE;
    vq.used_addr = USED_GPA + 2;    /* misaligned */
    assert_int_equal(virtqueue_enable(&vq, &f->mem, false, &err), -EINVAL);
}

static void test_event_index(void **state)
{
    struct fixture *f = *state;
    struct error err = { 0 };
    desc(f)[0] = (struct virtq_desc){ DATA_GPA, 16, 0, 0 };
    uint16_t *used_event = &avail(f)->ring[QSIZE];
    *used_event = 0;
    make_avail(f, 0);
    assert_int_equal(virtqueue_pop(&f->vq, &f->chain, &err), 1);
    /* The device publishes how far it has read (avail_event). */
    uint16_t avail_event;
    memcpy(&avail_event, (uint8_t *)used(f) + 4 + 8 * QSIZE, 2);
    assert_int_equal(avail_event, 1);
    virtqueue_push(&f->vq, 0, 0);
    assert_true(virtqueue_should_notify(&f->vq));       /* first signal */
    *used_event = 5;                                     /* driver: wake me after entry 5 */
    make_avail(f, 0);
    assert_int_equal(virtqueue_pop(&f->vq, &f->chain, &err), 1);
    virtqueue_push(&f->vq, 0, 0);
    assert_false(virtqueue_should_notify(&f->vq));      /* used idx 2 has not passed 5 */
    for (int i = 0; i < 4; i++) {
        make_avail(f, 0);
        assert_int_equal(virtqueue_pop(&f->vq, &f->chain, &err), 1);
        virtqueue_push(&f->vq, 0, 0);
    }
    assert_true(virtqueue_should_notify(&f->vq));       /* used idx 6 crossed 5 */
}

/* --- device level, through the virtio-mmio registers --- */

enum { M_QSEL = 0x30, M_QNUM = 0x38, M_QREADY = 0x44, M_QNOTIFY = 0x50, M_STATUS = 0x70, M_GF = 0x20,
       M_GFSEL = 0x24, M_QDESC = 0x80, M_QDRIVER = 0x90, M_QDEVICE = 0xa0 };

static int interrupts;
static void count_irq(void *opaque, unsigned gsi, int level)
{
    interrupts += level;
}

static void driver_setup(struct virtio_mmio *t, uint64_t base_gpa)
{
    virtio_mmio_write(t, M_STATUS, 4, 0);
    virtio_mmio_write(t, M_STATUS, 4, 3);
    virtio_mmio_write(t, M_GFSEL, 4, 1);
    virtio_mmio_write(t, M_GF, 4, 1);       /* VERSION_1 */
    virtio_mmio_write(t, M_STATUS, 4, 0xb);
    virtio_mmio_write(t, M_QSEL, 4, 0);
    virtio_mmio_write(t, M_QNUM, 4, QSIZE);
    virtio_mmio_write(t, M_QDESC, 4, base_gpa);
    virtio_mmio_write(t, M_QDRIVER, 4, base_gpa + 0x1000);
    virtio_mmio_write(t, M_QDEVICE, 4, base_gpa + 0x2000);
    virtio_mmio_write(t, M_QREADY, 4, 1);
    virtio_mmio_write(t, M_STATUS, 4, 0xf);
}

static void test_device_needs_reset(void **state)
{
    struct fixture *f = *state;
    struct error err = { 0 };
    struct virtio_rng bad, good;
    struct virtio_mmio tbad, tgood;
    struct irq_line irq = { count_irq, NULL, 5 };
    assert_int_equal(virtio_rng_init(&bad, &f->mem, &err), 0);
    assert_int_equal(virtio_rng_init(&good, &f->mem, &err), 0);
    assert_int_equal(virtio_mmio_create(&tbad, &bad.dev, NULL, NULL, 0, irq, &err), 0);
    assert_int_equal(virtio_mmio_create(&tgood, &good.dev, NULL, NULL, 0, irq, &err), 0);
    driver_setup(&tbad, 0x40000);
    driver_setup(&tgood, 0x50000);
    assert_int_equal(virtio_mmio_read(&tbad, M_STATUS, 4), 0xf);

    /* The hostile driver makes a descriptor loop. */
    struct virtq_desc *bd = guest_memory_ptr(&f->mem, 0x40000, 32);
    struct virtq_avail *ba = guest_memory_ptr(&f->mem, 0x41000, 8);
    bd[0] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 };
    bd[1] = (struct virtq_desc){ DATA_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0 };
    ba->ring[0] = 0;
    ba->idx = 1;
    virtio_mmio_write(&tbad, M_QNOTIFY, 4, 0);
    assert_true(virtio_mmio_read(&tbad, M_STATUS, 4) & VIRTIO_STATUS_NEEDS_RESET);

    /* The well-behaved device next to it still serves requests. */
    struct virtq_desc *gd = guest_memory_ptr(&f->mem, 0x50000, 16);
    struct virtq_avail *ga = guest_memory_ptr(&f->mem, 0x51000, 8);
    struct virtq_used *gu = guest_memory_ptr(&f->mem, 0x52000, 16);
    uint8_t *buf = guest_memory_ptr(&f->mem, DATA_GPA + 4096, 64);
    memset(buf, 0, 64);
    gd[0] = (struct virtq_desc){ DATA_GPA + 4096, 64, VIRTQ_DESC_F_WRITE, 0 };
    ga->ring[0] = 0;
    ga->idx = 1;
    interrupts = 0;
    virtio_mmio_write(&tgood, M_QNOTIFY, 4, 0);
    assert_int_equal(gu->idx, 1);
    assert_int_equal(gu->ring[0].len, 64);
    assert_int_equal(interrupts, 1);
    assert_false(virtio_mmio_read(&tgood, M_STATUS, 4) & VIRTIO_STATUS_NEEDS_RESET);

    /* Reset brings the broken device back; the request already in the
     * ring is served as soon as the driver sets DRIVER_OK. */
    bd[0] = (struct virtq_desc){ DATA_GPA, 32, VIRTQ_DESC_F_WRITE, 0 };
    driver_setup(&tbad, 0x40000);
    assert_int_equal(virtio_mmio_read(&tbad, M_STATUS, 4), 0xf);
    virtio_mmio_write(&tbad, M_QNOTIFY, 4, 0);
    assert_int_equal(((struct virtq_used *)guest_memory_ptr(&f->mem, 0x42000, 16))->ring[0].len, 32);

    virtio_mmio_destroy(&tbad);
    virtio_mmio_destroy(&tgood);
    virtio_rng_destroy(&bad);
    virtio_rng_destroy(&good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_outside_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_index_too_far, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_outside_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_needs_reset, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
