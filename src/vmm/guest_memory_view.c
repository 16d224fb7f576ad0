/* KVM's memory slots on a second mapping of guest RAM (post-copy's
 * self-fetch view, src/migration/migration_selffetch.c), and the hook a
 * vCPU calls when KVM_RUN fails on a page missing there. KVM cannot change
 * a slot's host address in place: each slot is deleted and added again,
 * so the vCPUs must be paused (the destination's guest has not run yet).
 * Never run here: it needs /dev/kvm, and a kernel whose KVM annotates its
 * -EFAULTs (KVM_CAP_MEMORY_FAULT_INFO, Linux 6.8+). */
#include <errno.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "vmm/guest_memory.h"

#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232       /* Linux 6.8; older headers lack it */
#endif

int guest_memory_slots_on_view(struct guest_memory *m, uint8_t *const view[], struct error *err)
{
    for (int i = 0; i < m->count; i++) {
        struct kvm_userspace_memory_region gone = { .slot = (uint32_t)i, .guest_phys_addr = m->regions[i].gpa };
        if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &gone) < 0) {
            return error_set_errno(err, -errno, "removing KVM memory slot %d for the self-fetch view", i);
        }
        m->regions[i].slot_hva = view[i];
        int ret = guest_memory_set_slot(m, i, m->dirty_tracking, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

bool guest_memory_kvm_reports_faults(const struct guest_memory *m)
{
    return m->vm_fd >= 0 && ioctl(m->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO) > 0;
}

void guest_memory_set_fetch(struct guest_memory *m, int (*fetch)(void *opaque, uint64_t gpa), void *opaque)
{
    __atomic_store_n(&m->fetch_opaque, opaque, __ATOMIC_RELEASE);
    __atomic_store_n(&m->fetch, fetch, __ATOMIC_RELEASE);
}

int guest_memory_fetch(struct guest_memory *m, uint64_t gpa)
{
    int (*fetch)(void *, uint64_t) = __atomic_load_n(&m->fetch, __ATOMIC_ACQUIRE);
    return fetch ? fetch(__atomic_load_n(&m->fetch_opaque, __ATOMIC_ACQUIRE), gpa) : -EFAULT;
}
