/* Save and load of the VM-wide in-kernel devices: both PICs, the IOAPIC,
 * the PIT and the KVM clock. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/vm.h"

static const int irqchips[] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC };

int vm_clock_ns(struct vm *vm, uint64_t *ns, struct error *err)
{
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
        return error_set_errno(err, -errno, "KVM_GET_CLOCK");
    }
    *ns = clock.clock;
    return 0;
}

int vm_save_kvm_state(struct vm *vm, struct state_buf *b, struct error *err)
{
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    uint64_t clock_ns = 0;
    memset(chips, 0, sizeof(chips));
    memset(&pit, 0, sizeof(pit));
    /* Without the in-kernel chips (VM_USER_IRQCHIP) their places stay zero:
     * one layout for both kinds of VM. */
    for (int i = 0; i < 3 && !vm->user_irqchip; i++) {
        chips[i].chip_id = (uint32_t)irqchips[i];
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0) {
            return error_set_errno(err, -errno, "KVM_GET_IRQCHIP %d", irqchips[i]);
        }
    }
    if (!vm->user_irqchip && ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0) {
        return error_set_errno(err, -errno, "KVM_GET_PIT2");
    }
    int ret = vm_clock_ns(vm, &clock_ns, err);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < 3; i++) {
        state_put_bytes(b, &chips[i], sizeof(chips[i]));
    }
    state_put_bytes(b, &pit, sizeof(pit));
    state_put_u64(b, clock_ns);
    return state_buf_error(b, err);
}

int vm_load_kvm_state(struct vm *vm, struct state_buf *b, struct error *err)
{
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    for (int i = 0; i < 3; i++) {
        state_get_bytes(b, &chips[i], sizeof(chips[i]));
    }
    state_get_bytes(b, &pit, sizeof(pit));
    clock.clock = state_get_u64(b);
    int ret = state_buf_error(b, err);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < 3 && !vm->user_irqchip; i++) {
        if (chips[i].chip_id != (uint32_t)irqchips[i]) {
            return error_set(err, -EINVAL, "irqchip state %d names chip %u", i, chips[i].chip_id);
        }
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0) {
            return error_set_errno(err, -errno, "KVM_SET_IRQCHIP %d", irqchips[i]);
        }
    }
    if (!vm->user_irqchip && ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0) {
        return error_set_errno(err, -errno, "KVM_SET_PIT2");
    }
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
        return error_set_errno(err, -errno, "KVM_SET_CLOCK");
    }
    return 0;
}
