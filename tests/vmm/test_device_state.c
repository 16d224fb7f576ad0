/* Every device's state survives save and load into a fresh instance, and
 * damaged state is refused with an error instead of being trusted. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cmocka.h>

#include "hw/cmos_rtc.h"
#include "hw/fw_cfg.h"
#include "hw/pci.h"
#include "hw/system_ports.h"
#include "hw/uart.h"
#include "state/state_buf.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_rng.h"
#include "vmm/vm.h"

static struct irq_line no_irq;

static void test_state_buf_errors(void **state)
{
    struct state_buf w, r;
    struct error err = { 0 };
    state_buf_init(&w);
    state_put_u32(&w, 0xdeadbeef);
    state_put_u64(&w, 42);
    assert_int_equal(state_buf_error(&w, &err), 0);

    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(state_get_u32(&r), 0xdeadbeef);
    assert_int_equal(state_get_u64(&r), 42);
    assert_int_equal(state_buf_error(&r, &err), 0);
    assert_int_equal(state_get_u8(&r), 0);     /* past the end: zero, and an error */
    assert_int_equal(state_buf_error(&r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "truncated"));

    state_buf_init_reader(&r, w.data, w.len - 3);   /* cut short */
    state_get_u32(&r);
    assert_int_equal(state_get_u64(&r), 0);
    assert_int_equal(state_buf_error(&r, &err), -EINVAL);
    state_buf_free(&w);
}

static void test_uart_round_trip(void **state)
{
    struct uart a, b;
    struct state_buf w, r;
    struct error err = { 0 };
    uart_init(&a, no_irq, -1);
    uart_write(&a, 3, 1, 0x83);     /* DLAB */
    uart_write(&a, 0, 1, 0x01);
    uart_write(&a, 1, 1, 0x00);
    uart_write(&a, 3, 1, 0x03);
    uart_write(&a, 1, 1, 0x01);     /* receive interrupt on */
    uart_write(&a, 7, 1, 0x5a);     /* scratch */
    uart_receive(&a, (const uint8_t *)"xyz", 3);
    assert_int_equal(uart_read(&a, 0, 1), 'x');
    state_buf_init(&w);
    uart_save(&a, &w);

    uart_init(&b, no_irq, -1);
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(uart_load(&b, &r, &err), 0);
    assert_int_equal(uart_read(&b, 7, 1), 0x5a);
    assert_int_equal(uart_read(&b, 3, 1), 0x03);
    assert_int_equal(uart_read(&b, 1, 1), 0x01);
    assert_int_equal(uart_read(&b, 2, 1) & 0x0f, 0x04);    /* receive data interrupt pending */
    assert_int_equal(uart_read(&b, 0, 1), 'y');
    assert_int_equal(uart_read(&b, 0, 1), 'z');
    assert_int_equal(uart_read(&b, 5, 1) & 1, 0);          /* FIFO drained */

    /* A FIFO count larger than the FIFO is refused. */
    w.data[w.len - 3] = 200;
    uart_init(&b, no_irq, -1);
    state_buf_init_reader(&r, w.data, w.len);
    assert_true(uart_load(&b, &r, &err) < 0);
    state_buf_free(&w);
    uart_destroy(&a);
    uart_destroy(&b);
}

static void test_cmos_round_trip(void **state)
{
    struct cmos_rtc a, b;
    struct state_buf w, r;
    struct error err = { 0 };
    cmos_rtc_init(&a, 256u << 20, 0);
    cmos_rtc_write(&a, 0, 1, 0x40);
    cmos_rtc_write(&a, 1, 1, 0x99);
    cmos_rtc_write(&a, 0, 1, 0x41);
    state_buf_init(&w);
    cmos_rtc_save(&a, &w);
    cmos_rtc_init(&b, 1u << 20, 0);
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(cmos_rtc_load(&b, &r, &err), 0);
    cmos_rtc_write(&b, 0, 1, 0x40);
    assert_int_equal(cmos_rtc_read(&b, 1, 1), 0x99);
    cmos_rtc_write(&b, 0, 1, 0x35);     /* memory size above 16 MiB, high byte */
    assert_int_equal(cmos_rtc_read(&b, 1, 1), ((256u - 16) << 20 >> 16) >> 8);
    state_buf_free(&w);
    cmos_rtc_destroy(&a);
    cmos_rtc_destroy(&b);
}

static void ignore_event(void *opaque, enum system_event ev, int code)
{
    *(int *)opaque = (int)ev + 100;
}

static void test_system_ports_round_trip(void **state)
{
    struct system_ports a, b;
    struct state_buf w, r;
    struct error err = { 0 };
    int seen = 0;
    system_ports_init(&a, ignore_event, &seen);
    i8042_write(&a, 4, 1, 0x60);    /* write command byte */
    i8042_write(&a, 0, 1, 0x21);
    i8042_write(&a, 4, 1, 0x20);    /* read it back into the output buffer */
    state_buf_init(&w);
    system_ports_save(&a, &w);
    system_ports_init(&b, ignore_event, &seen);
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(system_ports_load(&b, &r, &err), 0);
    assert_int_equal(i8042_read(&b, 4, 1) & 1, 1);
    assert_int_equal(i8042_read(&b, 0, 1), 0x21);
    i8042_write(&b, 4, 1, 0xfe);
    assert_int_equal(seen, 100 + SYSTEM_EVENT_RESET);
    debug_exit_write(&b, 0, 1, 3);
    assert_int_equal(seen, 100 + SYSTEM_EVENT_EXIT_CODE);
    state_buf_free(&w);
}

static void test_fw_cfg_round_trip(void **state)
{
    struct fw_cfg a, b;
    struct state_buf w, r;
    struct error err = { 0 };
    fw_cfg_init(&a);
    fw_cfg_init(&b);
    assert_int_equal(fw_cfg_add_file(&a, "etc/one", "hello", 5, &err), 0);
    assert_int_equal(fw_cfg_add_file(&b, "etc/one", "hello", 5, &err), 0);
    /* The signature, then the directory: one file named etc/one at 0x20. */
    fw_cfg_write(&a, 0, 2, FW_CFG_SIGNATURE);
    char sig[5] = { 0 };
    for (int i = 0; i < 4; i++) {
        sig[i] = (char)fw_cfg_read(&a, 1, 1);
    }
    assert_string_equal(sig, "QEMU");
    fw_cfg_write(&a, 0, 2, FW_CFG_FILE_DIR);
    uint8_t dir[12];
    for (int i = 0; i < 12; i++) {
        dir[i] = (uint8_t)fw_cfg_read(&a, 1, 1);
    }
    assert_int_equal(dir[3], 1);        /* big-endian count */
    assert_int_equal(dir[7], 5);        /* big-endian size */
    assert_int_equal(dir[9], 0x20);     /* big-endian select */
    fw_cfg_write(&a, 0, 2, 0x20);
    assert_int_equal(fw_cfg_read(&a, 1, 1), 'h');
    assert_int_equal(fw_cfg_read(&a, 1, 1), 'e');
    state_buf_init(&w);
    fw_cfg_save(&a, &w);
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(fw_cfg_load(&b, &r, &err), 0);
    assert_int_equal(fw_cfg_read(&b, 1, 1), 'l');     /* same item, same position */
    for (int i = 0; i < 2; i++) {
        fw_cfg_read(&b, 1, 1);
    }
    assert_int_equal(fw_cfg_read(&b, 1, 1), 0);       /* past the end reads zeros */
    state_buf_free(&w);
    fw_cfg_destroy(&a);
    fw_cfg_destroy(&b);
}

static void rng_mmio_setup(struct virtio_mmio *t)
{
    virtio_mmio_write(t, 0x70, 4, 3);
    virtio_mmio_write(t, 0x24, 4, 1);
    virtio_mmio_write(t, 0x20, 4, 1);
    virtio_mmio_write(t, 0x70, 4, 0xb);
    virtio_mmio_write(t, 0x38, 4, 16);
    virtio_mmio_write(t, 0x80, 4, 0x10000);
    virtio_mmio_write(t, 0x90, 4, 0x11000);
    virtio_mmio_write(t, 0xa0, 4, 0x12000);
    virtio_mmio_write(t, 0x44, 4, 1);
    virtio_mmio_write(t, 0x70, 4, 0xf);
}

static void test_virtio_mmio_round_trip(void **state)
{
    struct guest_memory mem;
    struct virtio_rng a, b;
    struct virtio_mmio ta, tb;
    struct state_buf w, r;
    struct error err = { 0 };
    assert_int_equal(guest_memory_create(&mem, 1u << 20, &err), 0);
    assert_int_equal(virtio_rng_init(&a, &mem, &err), 0);
    assert_int_equal(virtio_rng_init(&b, &mem, &err), 0);
    assert_int_equal(virtio_mmio_create(&ta, &a.dev, NULL, NULL, 0, no_irq, &err), 0);
    assert_int_equal(virtio_mmio_create(&tb, &b.dev, NULL, NULL, 0, no_irq, &err), 0);
    rng_mmio_setup(&ta);
    /* Serve one request so the ring indices move. */
    struct virtq_desc *d = guest_memory_ptr(&mem, 0x10000, 16);
    struct virtq_avail *av = guest_memory_ptr(&mem, 0x11000, 8);
    *d = (struct virtq_desc){ 0x20000, 8, VIRTQ_DESC_F_WRITE, 0 };
    av->ring[0] = 0;
    av->idx = 1;
    virtio_mmio_write(&ta, 0x50, 4, 0);
    state_buf_init(&w);
    virtio_mmio_save(&ta, &w);
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(virtio_mmio_load(&tb, &r, &err), 0);
    assert_int_equal(virtio_mmio_read(&tb, 0x70, 4), 0xf);
    assert_int_equal(virtio_mmio_read(&tb, 0x44, 4), 1);
    assert_int_equal(b.dev.vqs[0].last_avail_idx, 1);
    assert_int_equal(b.dev.vqs[0].used_idx, 1);
    assert_int_equal(b.dev.guest_features, a.dev.guest_features);
    /* The loaded device goes on serving the same ring. */
    av->ring[1] = 0;
    av->idx = 2;
    virtio_mmio_write(&tb, 0x50, 4, 0);
    assert_int_equal(((struct virtq_used *)guest_memory_ptr(&mem, 0x12000, 32))->idx, 2);

    /* State whose ring lies outside guest memory is refused. */
    b.dev.vqs[0].ready = false;
    struct state_buf bad;
    state_buf_init(&bad);
    a.dev.vqs[0].desc_addr = 1u << 30;
    virtio_mmio_save(&ta, &bad);
    state_buf_init_reader(&r, bad.data, bad.len);
    assert_true(virtio_mmio_load(&tb, &r, &err) < 0);
    state_buf_free(&bad);

    state_buf_free(&w);
    virtio_mmio_destroy(&ta);
    virtio_mmio_destroy(&tb);
    virtio_rng_destroy(&a);
    virtio_rng_destroy(&b);
    guest_memory_destroy(&mem);
}

static void test_virtio_pci_round_trip(void **state)
{
    struct guest_memory mem;
    struct virtio_rng a, b;
    struct virtio_pci pa, pb;
    struct state_buf w, r;
    struct error err = { 0 };
    assert_int_equal(guest_memory_create(&mem, 1u << 20, &err), 0);
    assert_int_equal(virtio_rng_init(&a, &mem, &err), 0);
    assert_int_equal(virtio_rng_init(&b, &mem, &err), 0);
    assert_int_equal(virtio_pci_create(&pa, &a.dev, NULL, NULL, &err), 0);
    assert_int_equal(virtio_pci_create(&pb, &b.dev, NULL, NULL, &err), 0);
    assert_int_equal(pci_config_read(&pa.pci, 0, 4), 0x10441af4u);
    pci_config_write(&pa.pci, PCI_BAR0, 4, 0xe0000000u);
    pci_config_write(&pa.pci, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    virtio_pci_bar_write(&pa, VIRTIO_PCI_MSIX_TABLE + 16, 4, 0xfee00000u);     /* vector 1 address */
    virtio_pci_bar_write(&pa, VIRTIO_PCI_MSIX_TABLE + 24, 4, 0x41);            /* vector 1 data */
    virtio_pci_bar_write(&pa, VIRTIO_PCI_COMMON + 20, 1, 3);                   /* status */
    virtio_pci_bar_write(&pa, VIRTIO_PCI_COMMON + 26, 2, 1);                   /* queue 0 -> vector 1 */
    state_buf_init(&w);
    virtio_pci_save(&pa, &w);
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(virtio_pci_load(&pb, &r, &err), 0);
    assert_int_equal(pci_config_read(&pb.pci, PCI_BAR0, 4), 0xe0000000u);
    assert_int_equal(pci_config_read(&pb.pci, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
    assert_int_equal(virtio_pci_bar_read(&pb, VIRTIO_PCI_MSIX_TABLE + 24, 4), 0x41);
    assert_int_equal(virtio_pci_bar_read(&pb, VIRTIO_PCI_COMMON + 20, 1), 3);
    assert_int_equal(virtio_pci_bar_read(&pb, VIRTIO_PCI_COMMON + 26, 2), 1);

    /* BAR access through the PCI configuration access capability. */
    uint32_t cap = pb.pci_cfg_cap;
    assert_true(cap != 0);
    assert_int_equal(pci_config_read(&pb.pci, cap + 3, 1), 5);
    pci_config_write(&pb.pci, cap + 4, 1, 0);       /* BAR 0 */
    pci_config_write(&pb.pci, cap + 8, 4, 18);      /* num_queues */
    pci_config_write(&pb.pci, cap + 12, 4, 2);
    assert_int_equal(pci_config_read(&pb.pci, cap + 16, 4) & 0xffff, 1);
    pci_config_write(&pb.pci, cap + 8, 4, 20);      /* device status */
    pci_config_write(&pb.pci, cap + 12, 4, 1);
    pci_config_write(&pb.pci, cap + 16, 4, 7);
    assert_int_equal(virtio_pci_bar_read(&pb, VIRTIO_PCI_COMMON + 20, 1), 7);
    pci_config_write(&pb.pci, cap + 8, 4, VIRTIO_PCI_BAR_SIZE);  /* outside the BAR: ignored */
    pci_config_write(&pb.pci, cap + 16, 4, 0);
    assert_int_equal(virtio_pci_bar_read(&pb, VIRTIO_PCI_COMMON + 20, 1), 7);
    state_buf_free(&w);
    virtio_pci_destroy(&pa);
    virtio_pci_destroy(&pb);
    virtio_rng_destroy(&a);
    virtio_rng_destroy(&b);
    guest_memory_destroy(&mem);
}

static void test_kvm_round_trip(void **state)
{
    int fd = open("/dev/kvm", O_RDWR);
    if (fd < 0) {
        skip();     /* cmocka reports it as skipped, never as passed */
    }
    close(fd);
    static struct vm a, b;
    struct error err = { 0 };
    assert_int_equal(vm_create(&a, 2, 16u << 20, 0, &err), 0);
    assert_int_equal(vm_create(&b, 2, 16u << 20, 0, &err), 0);
    struct kvm_regs regs;
    assert_int_equal(ioctl(a.vcpus[1].fd, KVM_GET_REGS, &regs), 0);
    regs.rax = 0x1122334455667788ull;
    regs.rip = 0xfff0;
    regs.rflags = 0x202;
    assert_int_equal(ioctl(a.vcpus[1].fd, KVM_SET_REGS, &regs), 0);
    struct state_buf w, r;
    state_buf_init(&w);
    assert_int_equal(vm_save_kvm_state(&a, &w, &err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(vcpu_save_state(&a.vcpus[i], &w, &err), 0);
    }
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(vm_load_kvm_state(&b, &r, &err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(vcpu_load_state(&b.vcpus[i], &r, &err), 0);
    }
    struct kvm_regs back;
    assert_int_equal(ioctl(b.vcpus[1].fd, KVM_GET_REGS, &back), 0);
    assert_true(back.rax == regs.rax);
    assert_true(back.rip == regs.rip);

    /* vCPU 0's state is refused by vCPU 1. */
    state_buf_init_reader(&r, w.data, w.len);
    assert_int_equal(vm_load_kvm_state(&b, &r, &err), 0);
    assert_true(vcpu_load_state(&b.vcpus[1], &r, &err) < 0);
    state_buf_free(&w);
    vm_destroy(&a);
    vm_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_buf_errors),
        cmocka_unit_test(test_uart_round_trip),
        cmocka_unit_test(test_cmos_round_trip),
        cmocka_unit_test(test_system_ports_round_trip),
        cmocka_unit_test(test_fw_cfg_round_trip),
        cmocka_unit_test(test_virtio_mmio_round_trip),
        cmocka_unit_test(test_virtio_pci_round_trip),
        cmocka_unit_test(test_kvm_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
