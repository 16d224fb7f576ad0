/* vCPUs: creation with KVM's supported CPUID (plus per-CPU APIC ids), the
 * run loop of each vCPU thread and the dispatch of its exits to the buses. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/log.h"
#include "util/sandbox.h"
#include "vmm/vm.h"

#define MSR_IA32_MISC_ENABLE 0x000001a0
#define MISC_ENABLE_FAST_STRING 1ull

#define CPUID_1_ECX_X2APIC (1u << 21)
#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_EDX_APIC (1u << 9)

int vcpu_set_cpuid(struct vcpu *c, struct error *err)
{
    const struct kvm_cpuid2 *all = c->vm->cpuid;
    size_t bytes = sizeof(*all) + all->nent * sizeof(all->entries[0]);
    struct kvm_cpuid2 *cpuid = malloc(bytes);
    if (!cpuid) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    memcpy(cpuid, all, bytes);
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)c->vm->ncpus << 16) | ((uint32_t)c->index << 24);
            e->ecx |= 1u << 31;                     /* running under a hypervisor */
            if (c->vm->ncpus > 1) {
                e->edx |= 1u << 28;                 /* HTT: the count in EBX is valid */
            }
            if (c->vm->user_irqchip) {              /* no local APIC to find */
                e->edx &= ~CPUID_1_EDX_APIC;
                e->ecx &= ~(CPUID_1_ECX_X2APIC | CPUID_1_ECX_TSC_DEADLINE);
            }
            break;
        case 0xb:
        case 0x1f:
            e->edx = (uint32_t)c->index;            /* x2APIC id */
            break;
        default:
            break;
        }
    }
    int ret = ioctl(c->fd, KVM_SET_CPUID2, cpuid);
    int e = errno;
    free(cpuid);
    if (ret < 0) {
        return error_set_errno(err, -e, "KVM_SET_CPUID2 (vCPU %d)", c->index);
    }
    return 0;
}

static int set_initial_msrs(struct vcpu *c, struct error *err)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[1];
    } msrs = { .hdr.nmsrs = 1, .e = { { .index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING } } };
    if (ioctl(c->fd, KVM_SET_MSRS, &msrs) < 0) {
        return error_set_errno(err, -errno, "KVM_SET_MSRS (vCPU %d)", c->index);
    }
    return 0;
}

int vcpu_init(struct vm *vm, int index, struct error *err)
{
    struct vcpu *c = &vm->vcpus[index];
    memset(c, 0, sizeof(*c));
    c->vm = vm;
    c->index = index;
    c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (c->fd < 0) {
        return error_set_errno(err, -errno, "KVM_CREATE_VCPU %d", index);
    }
    c->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
    if (c->run == MAP_FAILED) {
        c->run = NULL;
        return error_set_errno(err, -errno, "mapping vCPU %d run area", index);
    }
    int ret = vcpu_set_cpuid(c, err);
    if (ret == 0) {
        ret = set_initial_msrs(c, err);
    }
    return ret;
}

void vcpu_destroy(struct vcpu *c)
{
    if (c->run) {
        munmap(c->run, (size_t)c->vm->run_size);
        c->run = NULL;
    }
    if (c->fd > 0) {
        close(c->fd);
        c->fd = -1;
    }
}

void vcpu_kick(struct vcpu *c)
{
    if (c->run) {
        __atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    }
    if (c->thread_started) {
        pthread_kill(c->thread, SIGUSR1);
    }
}

int vcpu_get_regs(struct vcpu *c, struct kvm_regs *regs, struct error *err)
{
    if (ioctl(c->fd, KVM_GET_REGS, regs) < 0) {
        return error_set_errno(err, -errno, "KVM_GET_REGS (vCPU %d)", c->index);
    }
    return 0;
}

int vcpu_inject_interrupt(struct vcpu *c, uint8_t vector, struct error *err)
{
    struct kvm_interrupt irq = { .irq = vector };
    if (ioctl(c->fd, KVM_INTERRUPT, &irq) < 0) {
        return error_set_errno(err, -errno, "KVM_INTERRUPT vector 0x%x (vCPU %d)", vector, c->index);
    }
    return 0;
}

static void handle_io(struct vcpu *c)
{
    struct kvm_run *run = c->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++) {
        bool claimed;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            claimed = bus_write(&c->vm->pio, run->io.port, data, run->io.size);
        } else {
            claimed = bus_read(&c->vm->pio, run->io.port, data, run->io.size);
        }
        if (!claimed) {
            log_debug("vCPU %d: unclaimed port %s 0x%x", c->index,
                      run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read", run->io.port);
        }
        data += run->io.size;
    }
}

static void handle_mmio(struct vcpu *c)
{
    struct kvm_run *run = c->run;
    bool claimed;
    if (run->mmio.is_write) {
        claimed = bus_write(&c->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
    } else {
        claimed = bus_read(&c->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
    }
    if (!claimed) {
        log_debug("vCPU %d: unclaimed MMIO %s 0x%llx", c->index, run->mmio.is_write ? "write" : "read",
                  (unsigned long long)run->mmio.phys_addr);
    }
}

static void fail(struct vcpu *c, const char *what, unsigned long long detail)
{
    struct kvm_regs regs = { 0 };
    ioctl(c->fd, KVM_GET_REGS, &regs);
    pthread_mutex_lock(&c->vm->lock);
    if (c->vm->request == VM_REQ_NONE) {
        error_set(&c->vm->error, -EIO, "vCPU %d: %s (0x%llx) at rip 0x%llx", c->index, what, detail,
                  (unsigned long long)regs.rip);
    }
    pthread_mutex_unlock(&c->vm->lock);
    vm_request(c->vm, VM_REQ_ERROR, 0);
}

static bool handle_exit(struct vcpu *c);

/* The exit, then the exit hook's part (record/replay). */
static bool dispatch_exit(struct vcpu *c)
{
    if (!handle_exit(c)) {
        return false;
    }
    const struct vcpu_exit_hook *h = &c->vm->exit_hook;
    return !h->exit || h->exit(h->opaque, c);
}

/* KVM finishes an I/O or MMIO read only on the next KVM_RUN; until then the
 * vCPU's registers do not reflect it. Before parking (a snapshot may read
 * the state) re-enter with immediate_exit so the operation completes and
 * no guest instruction runs. False when the vCPU must stop. */
static bool complete_pending_io(struct vcpu *c)
{
    for (;;) {
        __atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        int ret = ioctl(c->fd, KVM_RUN, 0);
        __atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (ret < 0) {
            return true;    /* EINTR: nothing left pending */
        }
        if (!dispatch_exit(c)) {    /* a string I/O may need more exits */
            return false;
        }
    }
}

bool vcpu_wait_if_paused(struct vcpu *c)
{
    struct vm *vm = c->vm;
    pthread_mutex_lock(&vm->lock);
    if (vm->pause_wanted && !vm->stopping) {
        pthread_mutex_unlock(&vm->lock);
        if (!complete_pending_io(c)) {
            return false;
        }
        pthread_mutex_lock(&vm->lock);
    }
    if (vm->pause_wanted && !vm->stopping) {
        vm->paused_count++;
        pthread_cond_broadcast(&vm->cond);
        while (vm->pause_wanted && !vm->stopping) {
            pthread_cond_wait(&vm->cond, &vm->lock);
        }
        vm->paused_count--;
    }
    bool go_on = !vm->stopping;
    pthread_mutex_unlock(&vm->lock);
    return go_on;
}

/* Handles one exit; false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *c)
{
    struct kvm_run *run = c->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(c);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(c);
        return true;
    case KVM_EXIT_X86_RDMSR:
    case KVM_EXIT_X86_WRMSR:
        if (!c->vm->exit_hook.exit) {   /* only a filter set with the hook sends these */
            fail(c, "unexpected MSR exit for MSR", run->msr.index);
            return false;
        }
        return true;
    case KVM_EXIT_HLT:
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return true;
    case KVM_EXIT_SHUTDOWN:
        log_info("vCPU %d: triple fault, resetting", c->index);
        vm_request(c->vm, VM_REQ_RESET, 0);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        vm_request(c->vm, run->system_event.type == KVM_SYSTEM_EVENT_RESET ? VM_REQ_RESET : VM_REQ_POWER_OFF, 0);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        fail(c, "KVM entry failed, hardware reason", run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        fail(c, run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? "KVM could not emulate an instruction"
                                                                         : "KVM internal error, suberror",
             run->internal.suberror);
        return false;
    default:
        fail(c, "unexpected KVM exit reason", run->exit_reason);
        return false;
    }
}

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39        /* Linux 6.8; older headers lack it */
#endif

/* Post-copy's self-fetch: KVM_RUN failed with -EFAULT on a page missing
 * from the view the slots map (guest_memory_view.c) and says where
 * (KVM_EXIT_MEMORY_FAULT's gpa, in the exit union); this thread asks for
 * the page itself and runs again, with no hop through the fault thread.
 * Never run here (no /dev/kvm). */
static bool fetch_missing_page(struct vcpu *c)
{
    if (c->run->exit_reason != KVM_EXIT_MEMORY_FAULT) {
        return false;
    }
    uint64_t gpa;
    memcpy(&gpa, (const uint8_t *)&c->run->padding + 8, sizeof(gpa));     /* { flags, gpa, size } */
    int e = errno;
    bool here = guest_memory_fetch(&c->vm->mem, gpa & ~(GUEST_PAGE_SIZE - 1)) == 0;
    errno = e;
    return here;
}

void *vcpu_thread(void *opaque)
{
    struct vcpu *c = opaque;
    __atomic_store_n(&c->tid, (int)gettid(), __ATOMIC_RELAXED);
    struct error err = { 0 };
    bool sandboxed = sandbox_enter(SANDBOX_VCPU, &err) == 0;
    if (!sandboxed) {
        log_error("vCPU %d: %s", c->index, err.msg);
        fail(c, "could not enter the sandbox, errno", (unsigned long long)-err.code);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    while (sandboxed && vcpu_wait_if_paused(c)) {
        vcpu_throttle_sleep(c);
        int ret = ioctl(c->fd, KVM_RUN, 0);
        if (ret < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                __atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            if (errno == EFAULT && fetch_missing_page(c)) {
                continue;
            }
            if (errno == EFAULT) {
                /* Guest RAM the kernel cannot supply (a truncated memory
                 * file): the main loop pauses the VM and says so. */
                guest_memory_fault_report(&c->vm->mem, GUEST_MEMORY_FAULT_UNKNOWN);
                break;
            }
            fail(c, "KVM_RUN failed, errno", (unsigned long long)errno);
            break;
        }
        if (!dispatch_exit(c)) {
            break;
        }
    }
    /* Stay parked until vm_stop joins us, so pause counting stays simple. */
    pthread_mutex_lock(&c->vm->lock);
    while (!c->vm->stopping) {
        if (c->vm->pause_wanted) {
            c->vm->paused_count++;
            pthread_cond_broadcast(&c->vm->cond);
            while (c->vm->pause_wanted && !c->vm->stopping) {
                pthread_cond_wait(&c->vm->cond, &c->vm->lock);
            }
            c->vm->paused_count--;
        } else {
            pthread_cond_wait(&c->vm->cond, &c->vm->lock);
        }
    }
    pthread_mutex_unlock(&c->vm->lock);
    return NULL;
}
