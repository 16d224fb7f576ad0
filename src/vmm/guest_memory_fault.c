/* Guest RAM that cannot be read: a memory file mapped back by a restore
 * and truncated (or failing) since. The kernel answers a touch of such a
 * page with SIGBUS in our threads (devices, loaders) and with EFAULT from
 * KVM_RUN in vCPUs. Either way the VMM must not die with the guest's
 * memory: the page is replaced by a zero page so the touching thread
 * completes, the fault is latched, and the main loop pauses the VM
 * (guest_memory_fault_take) with a message saying what happened. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/guest_memory.h"

#define MAX_MEMORIES 8

/* The guest memories of this process, read by the signal handler: slots
 * are claimed and released with atomics, never locked. */
static struct guest_memory *memories[MAX_MEMORIES];

static bool region_holds(const struct guest_region *r, uintptr_t addr)
{
    uintptr_t start = (uintptr_t)r->hva;
    return r->hva && addr >= start && addr - start < r->size;
}

static void latch(struct guest_memory *m, uint64_t gpa)
{
    uint64_t none = GUEST_MEMORY_NO_FAULT;
    __atomic_compare_exchange_n(&m->fault_gpa, &none, gpa, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    ssize_t n = write(m->fault_fd, &one, sizeof(one));
    (void)n;    /* the counter cannot overflow in practice; nothing to do in a handler */
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uintptr_t addr = (uintptr_t)si->si_addr;
    int saved_errno = errno;
    if (si->si_code <= 0) {
        return;     /* sent by a process (kill, sigqueue), not a fault: nothing to mend */
    }
    for (int k = 0; k < MAX_MEMORIES; k++) {
        struct guest_memory *m = __atomic_load_n(&memories[k], __ATOMIC_ACQUIRE);
        for (int i = 0; m && i < m->count; i++) {
            const struct guest_region *r = &m->regions[i];
            /* Only a file mapped over RAM can go missing; a memfd region
             * stays whole (and a private page there would leave it). */
            if (!region_holds(r, addr) || !r->file_mapped) {
                continue;
            }
            uintptr_t page = addr & ~(uintptr_t)(GUEST_PAGE_SIZE - 1);
            if (mmap((void *)page, GUEST_PAGE_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
                latch(m, r->gpa + (page - (uintptr_t)r->hva));
                errno = saved_errno;
                return;     /* the touching instruction runs again, on zeros */
            }
        }
    }
    /* Not guest RAM: a bug of ours. Die of it as the kernel meant. */
    signal(sig, SIG_DFL);
    errno = saved_errno;
}

void guest_memory_fault_install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGBUS, &sa, NULL);
}

int guest_memory_fault_init(struct guest_memory *m, struct error *err)
{
    static bool installed;
    m->fault_gpa = GUEST_MEMORY_NO_FAULT;
    m->fault_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->fault_fd < 0) {
        return error_set_errno(err, -errno, "eventfd");
    }
    for (int k = 0; k < MAX_MEMORIES; k++) {
        struct guest_memory *none = NULL;
        if (__atomic_compare_exchange_n(&memories[k], &none, m, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            m->fault_registered = true;
            if (!__atomic_exchange_n(&installed, true, __ATOMIC_SEQ_CST)) {
                guest_memory_fault_install_handler();
            }
            return 0;
        }
    }
    close(m->fault_fd);
    m->fault_fd = -1;
    return error_set(err, -EMFILE, "more than %d guest memories in one process", MAX_MEMORIES);
}

void guest_memory_fault_fini(struct guest_memory *m)
{
    if (!m->fault_registered) {
        return;
    }
    m->fault_registered = false;
    for (int k = 0; k < MAX_MEMORIES; k++) {
        struct guest_memory *self = m;
        __atomic_compare_exchange_n(&memories[k], &self, NULL, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
    if (m->fault_fd >= 0) {
        close(m->fault_fd);
        m->fault_fd = -1;
    }
}

void guest_memory_fault_report(struct guest_memory *m, uint64_t gpa)
{
    latch(m, gpa);
}

bool guest_memory_fault_take(struct guest_memory *m, uint64_t *gpa)
{
    uint64_t n;
    bool faulted = read(m->fault_fd, &n, sizeof(n)) == sizeof(n);
    *gpa = __atomic_exchange_n(&m->fault_gpa, GUEST_MEMORY_NO_FAULT, __ATOMIC_SEQ_CST);
    return faulted;
}
