/* KVM's memory slots on a second mapping of guest RAM (post-copy's
 * self-fetch view, src/migration/migration_selffetch.c), and the hook a
 * vCPU calls when KVM_RUN fails on a page missing there. KVM cannot change
 * a slot's host address in place: each slot is deleted and added again,
 * so the vCPUs must be paused (the destination's guest has not run yet).
 * Never run here: it needs /dev/kvm, and a kernel whose KVM annotates its
 * -EFAULTs (KVM_CAP_MEMORY_FAULT_INFO, Linux 6.8+). */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

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

static long futex(uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

/* A caller counts itself in before it reads the hook and out after it
 * returns; a clear stores NULL, then waits for the count to drop to zero.
 * Both sides store, then load the other's word (sequentially consistent):
 * a caller that read the old hook is seen counted in by the clear. */
void guest_memory_set_fetch(struct guest_memory *m, int (*fetch)(void *opaque, uint64_t gpa), void *opaque)
{
    if (fetch) {
        __atomic_store_n(&m->fetch_opaque, opaque, __ATOMIC_SEQ_CST);
        __atomic_store_n(&m->fetch, fetch, __ATOMIC_SEQ_CST);
        return;
    }
    __atomic_store_n(&m->fetch, NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&m->fetch_clearing, 1, __ATOMIC_SEQ_CST);
    for (uint32_t n; (n = __atomic_load_n(&m->fetch_callers, __ATOMIC_SEQ_CST)) != 0;) {
        futex(&m->fetch_callers, FUTEX_WAIT_PRIVATE, n);
    }
    __atomic_store_n(&m->fetch_clearing, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&m->fetch_opaque, NULL, __ATOMIC_SEQ_CST);
}

int guest_memory_fetch(struct guest_memory *m, uint64_t gpa)
{
    __atomic_add_fetch(&m->fetch_callers, 1, __ATOMIC_SEQ_CST);
    int (*fetch)(void *, uint64_t) = __atomic_load_n(&m->fetch, __ATOMIC_SEQ_CST);
    int ret = fetch ? fetch(__atomic_load_n(&m->fetch_opaque, __ATOMIC_SEQ_CST), gpa) : -EFAULT;
    if (__atomic_sub_fetch(&m->fetch_callers, 1, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&m->fetch_clearing, __ATOMIC_SEQ_CST)) {
        futex(&m->fetch_callers, FUTEX_WAKE_PRIVATE, 1);
    }
    return ret;
}
