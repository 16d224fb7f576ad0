/* A real KVM VM running a counting loop: pause really stops the vCPUs,
 * resume lets them go on, and stop joins them. Needs /dev/kvm (skipped
 * without it, never counted as passed). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/boot.h"
#include "vmm/vm.h"

#define CODE_GPA 0x1000
#define COUNTER_GPA 0x2000

static volatile uint32_t *counter;

static uint32_t read_counter(void)
{
    return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
}

/* Waits up to 10 s for the counter to move past `than`. */
static int counter_moves_past(uint32_t than)
{
    for (int i = 0; i < 1000; i++) {
        if (read_counter() > than) {
            return 1;
        }
        usleep(10000);
    }
    return 0;
}

static void test_pause_resume(void **state)
{
    int fd = open("/dev/kvm", O_RDWR);
    if (fd < 0) {
        skip();
    }
    close(fd);
    static struct vm vm;
    struct error err = { 0 };
    assert_int_equal(vm_create(&vm, 2, 16u << 20, 0, &err), 0);
    /* 1: inc dword [COUNTER_GPA]; jmp 1b (32-bit code) */
    static const uint8_t loop[] = { 0xff, 0x05, 0x00, 0x20, 0x00, 0x00, 0xeb, 0xf8 };
    assert_int_equal(guest_memory_write(&vm.mem, CODE_GPA, loop, sizeof(loop), &err), 0);
    counter = guest_memory_ptr(&vm.mem, COUNTER_GPA, 4);
    assert_int_equal(boot_set_protected_mode(&vm, CODE_GPA, 0, 0, &err), 0);
    assert_int_equal(vm_start(&vm, &err), 0);
    assert_true(counter_moves_past(0));

    vm_pause(&vm);
    uint32_t paused = read_counter();
    usleep(200000);
    assert_int_equal(read_counter(), paused);   /* nothing runs while paused */

    /* The paused VM's state can be saved. */
    struct state_buf b;
    state_buf_init(&b);
    assert_int_equal(vcpu_save_state(&vm.vcpus[0], &b, &err), 0);
    state_buf_free(&b);

    vm_resume(&vm);
    assert_true(counter_moves_past(paused));
    vm_stop(&vm);
    uint32_t stopped = read_counter();
    usleep(100000);
    assert_int_equal(read_counter(), stopped);
    vm_destroy(&vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
