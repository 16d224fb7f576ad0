/* GSIs for MSI routes (vm_alloc_gsi/vm_free_gsi) need no KVM VM: each
 * virtio-pci device takes nine, and an unplugged one gives them back, so
 * plug/unplug cycles never run out. They used to be counted up for ever:
 * past KVM's limit every routing update of every device would have failed
 * (found by review). A route KVM refuses is not kept in the table either;
 * that side needs a KVM VM and is not tested here. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/vm.h"

static struct vm *vm_without_kvm(void)
{
    static struct vm vm;
    memset(&vm, 0, sizeof(vm));
    vm.vm_fd = -1;
    pthread_mutex_init(&vm.routes_lock, NULL);
    return &vm;
}

static void test_plug_cycles_reuse_gsis(void **state)
{
    struct vm *vm = vm_without_kvm();
    struct error err = { 0 };
    uint32_t gsi[9], highest = 0;
    for (int cycle = 0; cycle < 2000; cycle++) {
        for (int v = 0; v < 9; v++) {
            assert_int_equal(vm_alloc_gsi(vm, &gsi[v], &err), 0);
            highest = gsi[v] > highest ? gsi[v] : highest;
        }
        for (int v = 0; v < 9; v++) {
            vm_free_gsi(vm, gsi[v]);
        }
    }
    assert_int_equal(highest, 24 + 8);     /* above the 24 IOAPIC pins, nine in use at most */
}

static void test_all_taken_refused(void **state)
{
    struct vm *vm = vm_without_kvm();
    struct error err = { 0 };
    uint32_t gsi, first = 0;
    for (int i = 0; i < VM_MSI_GSIS; i++) {
        assert_int_equal(vm_alloc_gsi(vm, &gsi, &err), 0);
        assert_int_equal(gsi, 24 + (uint32_t)i);
        first = i == 0 ? gsi : first;
    }
    assert_int_equal(vm_alloc_gsi(vm, &gsi, &err), -ENOSPC);
    assert_non_null(strstr(err.msg, "GSIs for MSI routes are in use"));
    error_clear(&err);
    vm_free_gsi(vm, 100);
    vm_free_gsi(vm, 3);                     /* an IOAPIC pin: never allocated, ignored */
    assert_int_equal(vm_alloc_gsi(vm, &gsi, &err), 0);
    assert_int_equal(gsi, 100);
    assert_int_equal(vm_alloc_gsi(vm, &gsi, &err), -ENOSPC);
    assert_int_equal(first, 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plug_cycles_reuse_gsis),
        cmocka_unit_test(test_all_taken_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
