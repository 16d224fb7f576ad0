/* Post-copy on the destination: guest RAM is registered with a
 * userfaultfd (missing pages), so a thread (a vCPU, a device) touching a
 * page that has not arrived blocks in the kernel; the fault thread reads
 * the fault and asks the source for the page on the return path, and the
 * receiving thread places it with UFFDIO_COPY, which wakes the waiter.
 * Pages placed by UFFDIO_COPY appear atomically: nobody sees half a page.
 * KVM reaches guest memory from the kernel, so the userfaultfd must take
 * kernel faults too (no UFFD_USER_MODE_ONLY): /dev/userfaultfd gives that
 * where the syscall is restricted. */
#include "migration/migration_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"

/* Faults waiting for their page, for blocktime: gpa and when it faulted. */
#define WAITING 1024
#define LAT_BUCKETS 32              /* log2 of microseconds */

/* QEMU's postcopy-blocktime (the time every vCPU waited at once) and
 * postcopy-vcpu-blocktime (each vCPU's waits): a fault is a vCPU's when
 * its thread id is that vCPU's (the userfaultfd reports it, a self-fetch
 * is the vCPU's own thread). Under wait_lock. */
struct vcpu_wait {
    int ncpus;
    const struct vcpu *vcpus;       /* their tids, read as they run */
    uint64_t gpa[VM_MAX_CPUS];      /* what each waits for (atomic: wait_end looks unlocked), or NO_PAGE */
    uint64_t since_ns[VM_MAX_CPUS]; /* 0: not waiting */
    uint64_t blocktime_ns[VM_MAX_CPUS];
    int down;                       /* vCPUs waiting now */
    uint64_t all_down_ns, all_blocktime_ns;
    uint64_t faults;                /* vCPU waits that ended */
    int waiting;                    /* atomic copy of down: the bulk stream's fast path */
};
#define NO_PAGE UINT64_MAX

/* Whether a vCPU waits for gpa, without the lock: the bulk stream's
 * receiver places every page through wait_end, and it runs niced; taking
 * wait_lock for each of its pages while a vCPU waits would make the
 * preempt receiver (placing the page the vCPU waits for) wait on it when
 * it is preempted holding the lock. */
static bool vcpu_waits_for(const struct vcpu_wait *vw, uint64_t gpa)
{
    if (!__atomic_load_n(&vw->waiting, __ATOMIC_ACQUIRE)) {
        return false;
    }
    for (int i = 0; i < vw->ncpus; i++) {
        if (__atomic_load_n(&vw->gpa[i], __ATOMIC_ACQUIRE) == gpa) {
            return true;
        }
    }
    return false;
}

struct postcopy_dest {
    pthread_mutex_t wait_lock;
    uint64_t wait_gpa[WAITING], wait_ns[WAITING];
    uint64_t blocktime_ns, resolved;
    uint64_t lat_hist[LAT_BUCKETS];
    struct vcpu_wait vw;
    struct guest_memory *mem;
    struct page_bits *received;
    int uffd, stop_fd, rp_fd;
    pthread_mutex_t *rp_lock;
    pthread_t thread;
    uint64_t requests;          /* atomic */
    uint8_t *zero;              /* one zero page, the source of zero placements */
};

/* ---- the userfaultfd ---- */

int mig_uffd_open(uint64_t features, struct error *err)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#ifdef USERFAULTFD_IOC_NEW
    if (fd < 0 && (errno == EPERM || errno == ENOSYS)) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) {
            fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
            close(dev);
        }
    }
#endif
    if (fd < 0) {
        return error_set_errno(err, -errno, "userfaultfd (post-copy needs it)");
    }
    struct uffdio_api api = { .api = UFFD_API, .features = features };
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int e = -errno;
        close(fd);
        return error_set_errno(err, e, "UFFDIO_API (features 0x%llx)", (unsigned long long)features);
    }
    return fd;
}

static int uffd_register(int fd, struct guest_memory *mem, struct error *err)
{
    for (int i = 0; i < mem->count; i++) {
        struct uffdio_register reg = {
            .range = { (uintptr_t)mem->regions[i].hva, mem->regions[i].size },
            .mode = UFFDIO_REGISTER_MODE_MISSING,
        };
        if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
            return error_set_errno(err, -errno, "registering guest RAM region %d with userfaultfd", i);
        }
        if (!(reg.ioctls & (1ull << _UFFDIO_COPY))) {
            return error_set(err, -ENOTSUP, "userfaultfd cannot place pages in guest RAM region %d", i);
        }
    }
    return 0;
}

static void uffd_unregister(int fd, struct guest_memory *mem)
{
    for (int i = 0; i < mem->count; i++) {
        struct uffdio_range r = { (uintptr_t)mem->regions[i].hva, mem->regions[i].size };
        ioctl(fd, UFFDIO_UNREGISTER, &r);   /* wakes any waiter: the page is ordinary memory again */
    }
}

/* UFFDIO_COPY of one page; a page already there (placed twice, or by the
 * guest's own fault handling) only needs its waiters woken. */
static int place_page(struct postcopy_dest *pc, void *hva, const void *src, struct error *err)
{
    struct uffdio_copy c = { .dst = (uintptr_t)hva, .src = (uintptr_t)src, .len = GUEST_PAGE_SIZE };
    for (;;) {
        if (ioctl(pc->uffd, UFFDIO_COPY, &c) == 0) {
            return 0;
        }
        if (errno == EAGAIN || errno == EINTR) {
            continue;
        }
        if (errno == EEXIST) {
            struct uffdio_range r = { (uintptr_t)hva, GUEST_PAGE_SIZE };
            ioctl(pc->uffd, UFFDIO_WAKE, &r);
            return 0;
        }
        return error_set_errno(err, -errno, "UFFDIO_COPY");
    }
}

/* ---- blocktime: from a fault to its page placed ---- */

static void wait_end(struct postcopy_dest *pc, uint64_t gpa);

/* The vCPU whose thread is tid, or -1 (a device's thread, the loader). */
static int vcpu_of(const struct vcpu_wait *vw, int tid)
{
    for (int i = 0; tid > 0 && i < vw->ncpus; i++) {
        if (__atomic_load_n(&vw->vcpus[i].tid, __ATOMIC_RELAXED) == tid) {
            return i;
        }
    }
    return -1;
}

static void vcpu_wait_begin(struct vcpu_wait *vw, int cpu, uint64_t gpa, uint64_t now)
{
    if (cpu < 0 || vw->since_ns[cpu]) {
        return;
    }
    __atomic_store_n(&vw->gpa[cpu], gpa, __ATOMIC_RELEASE);
    vw->since_ns[cpu] = now;
    if (++vw->down == vw->ncpus) {
        vw->all_down_ns = now;
    }
    __atomic_store_n(&vw->waiting, vw->down, __ATOMIC_RELEASE);
}

/* gpa is here: every vCPU waiting for it goes on. */
static void vcpu_wait_end(struct vcpu_wait *vw, uint64_t gpa, uint64_t now)
{
    for (int i = 0; i < vw->ncpus; i++) {
        if (!vw->since_ns[i] || vw->gpa[i] != gpa) {
            continue;
        }
        if (vw->down == vw->ncpus) {
            vw->all_blocktime_ns += now - vw->all_down_ns;
        }
        vw->blocktime_ns[i] += now - vw->since_ns[i];
        vw->since_ns[i] = 0;
        __atomic_store_n(&vw->gpa[i], NO_PAGE, __ATOMIC_RELEASE);
        vw->down--;
        vw->faults++;
    }
    __atomic_store_n(&vw->waiting, vw->down, __ATOMIC_RELEASE);
}

void postcopy_dest_wait_begin(struct postcopy_dest *pc, uint64_t gpa, int tid)
{
    unsigned h = (unsigned)(gpa / GUEST_PAGE_SIZE) % WAITING;
    uint64_t now = mig_now_ns();
    pthread_mutex_lock(&pc->wait_lock);
    if (!pc->wait_ns[h]) {          /* a slot taken by another page: that fault goes unmeasured */
        pc->wait_gpa[h] = gpa;
        __atomic_store_n(&pc->wait_ns[h], now, __ATOMIC_RELEASE);
    }
    vcpu_wait_begin(&pc->vw, vcpu_of(&pc->vw, tid), gpa, now);
    pthread_mutex_unlock(&pc->wait_lock);
    /* Placed between the caller's check and here: its wait_end found no
     * waiter, and none would come (a vCPU left waiting counts no more). */
    int region;
    uint64_t page;
    if (mig_page_index(pc->mem, gpa, &region, &page) && bitmap_test(pc->received->bits[region], page)) {
        wait_end(pc, gpa);
    }
}

/* Called for every page placed: the bulk stream's (a niced thread, often
 * preempted) skips the lock unless a fault waits in its slot, so the fault
 * thread and the preempt receiver rarely wait for it to run again. */
static void wait_end(struct postcopy_dest *pc, uint64_t gpa)
{
    unsigned h = (unsigned)(gpa / GUEST_PAGE_SIZE) % WAITING;
    if (!__atomic_load_n(&pc->wait_ns[h], __ATOMIC_ACQUIRE) && !vcpu_waits_for(&pc->vw, gpa)) {
        return;
    }
    uint64_t now = mig_now_ns();
    pthread_mutex_lock(&pc->wait_lock);
    vcpu_wait_end(&pc->vw, gpa, now);
    if (pc->wait_ns[h] && pc->wait_gpa[h] == gpa) {
        uint64_t ns = now - pc->wait_ns[h];
        __atomic_store_n(&pc->wait_ns[h], 0, __ATOMIC_RELAXED);
        pc->blocktime_ns += ns;
        pc->resolved++;
        int b = 0;
        for (uint64_t us = ns / 1000; us > 1 && b < LAT_BUCKETS - 1; us >>= 1) {
            b++;
        }
        pc->lat_hist[b]++;
    }
    pthread_mutex_unlock(&pc->wait_lock);
}

/* The bucket's upper bound in microseconds where the share q of faults
 * (0..1000 per mille) is reached. */
static uint64_t percentile_us(const struct postcopy_dest *pc, unsigned per_mille)
{
    uint64_t seen = 0, want = (pc->resolved * per_mille + 999) / 1000;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        seen += pc->lat_hist[b];
        if (seen >= want && seen) {
            return 2ull << b;
        }
    }
    return 0;
}

void postcopy_dest_latency(struct postcopy_dest *pc, struct postcopy_latency *out)
{
    pthread_mutex_lock(&pc->wait_lock);
    out->faults = pc->resolved;
    out->blocktime_ms = pc->blocktime_ns / 1000000;
    out->p50_us = percentile_us(pc, 500);
    out->p99_us = percentile_us(pc, 990);
    out->vcpus = pc->vw.ncpus;
    for (int i = 0; i < pc->vw.ncpus; i++) {
        out->vcpu_blocktime_ms[i] = pc->vw.blocktime_ns[i] / 1000000;
    }
    out->all_vcpus_blocktime_ms = pc->vw.all_blocktime_ns / 1000000;
    out->vcpu_faults = pc->vw.faults;
    pthread_mutex_unlock(&pc->wait_lock);
}

/* ---- the fault thread ---- */

static bool hva_to_gpa(const struct guest_memory *mem, uint64_t hva, int *region, uint64_t *page, uint64_t *gpa)
{
    for (int i = 0; i < mem->count; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (hva >= (uintptr_t)r->hva && hva - (uintptr_t)r->hva < r->size) {
            *region = i;
            *page = (hva - (uintptr_t)r->hva) / GUEST_PAGE_SIZE;
            *gpa = r->gpa + *page * GUEST_PAGE_SIZE;
            return true;
        }
    }
    return false;
}

static void handle_fault(struct postcopy_dest *pc, uint64_t addr, int tid)
{
    int region;
    uint64_t page, gpa;
    struct error err = { 0 };
    if (!hva_to_gpa(pc->mem, addr, &region, &page, &gpa)) {
        return;
    }
    if (bitmap_test(pc->received->bits[region], page)) {
        /* Here already: known zero (never placed) or placed meanwhile. */
        if (place_page(pc, pc->mem->regions[region].hva + page * GUEST_PAGE_SIZE, pc->zero, &err) < 0) {
            log_warn("post-copy: %s", err.msg);
        }
        return;
    }
    struct mig_rp_msg msg = { .type = MIG_RP_PAGE_REQ, .arg = gpa };
    postcopy_dest_wait_begin(pc, gpa, tid);
    pthread_mutex_lock(pc->rp_lock);
    int ret = mig_rp_send(pc->rp_fd, &msg, &err);
    pthread_mutex_unlock(pc->rp_lock);
    if (ret < 0) {
        log_warn("post-copy: asking for page 0x%llx: %s", (unsigned long long)gpa, err.msg);
    }
    __atomic_add_fetch(&pc->requests, 1, __ATOMIC_RELAXED);
}

static void *fault_main(void *opaque)
{
    struct postcopy_dest *pc = opaque;
    struct pollfd fds[2] = { { pc->uffd, POLLIN, 0 }, { pc->stop_fd, POLLIN, 0 } };
    mig_thread_latency();
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR) {
            return NULL;
        }
        if (fds[1].revents) {
            return NULL;
        }
        struct uffd_msg msg[16];
        ssize_t n = read(pc->uffd, msg, sizeof(msg));
        for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(msg[0]); i++) {
            if (msg[i].event == UFFD_EVENT_PAGEFAULT) {
                handle_fault(pc, msg[i].arg.pagefault.address & ~(GUEST_PAGE_SIZE - 1),
                             (int)msg[i].arg.pagefault.feat.ptid);
            }
        }
    }
}

/* ---- the interface ---- */

int postcopy_discard(struct guest_memory *mem, uint64_t gpa, uint64_t pages, struct error *err)
{
    int region, last_region;
    uint64_t page, last;
    if (!pages || !mig_page_index(mem, gpa, &region, &page) ||
        !mig_page_index(mem, gpa + (pages - 1) * GUEST_PAGE_SIZE, &last_region, &last) || last_region != region) {
        return error_set(err, -EPROTO, "migration stream: discard of %llu pages at 0x%llx, not guest RAM",
                         (unsigned long long)pages, (unsigned long long)gpa);
    }
    struct guest_region *r = &mem->regions[region];
    if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(page * GUEST_PAGE_SIZE),
                  (off_t)(pages * GUEST_PAGE_SIZE)) < 0) {
        return error_set_errno(err, -errno, "discarding guest pages at 0x%llx", (unsigned long long)gpa);
    }
    return 0;
}

int postcopy_dest_start(struct postcopy_dest **out, struct guest_memory *mem, const struct vcpu *vcpus, int ncpus,
                        struct page_bits *received, int rp_fd, pthread_mutex_t *rp_lock, struct error *err)
{
    struct postcopy_dest *pc = calloc(1, sizeof(*pc));
    void *zero = NULL;
    if (!pc || posix_memalign(&zero, GUEST_PAGE_SIZE, GUEST_PAGE_SIZE) != 0) {
        free(pc);
        return error_set(err, -ENOMEM, "out of memory");
    }
    memset(zero, 0, GUEST_PAGE_SIZE);
    pc->mem = mem;
    pc->received = received;
    pc->uffd = pc->stop_fd = -1;
    pc->rp_fd = rp_fd;
    pc->rp_lock = rp_lock;
    pc->zero = zero;
    pc->vw.vcpus = vcpus;
    pc->vw.ncpus = ncpus < 0 ? 0 : ncpus > VM_MAX_CPUS ? VM_MAX_CPUS : ncpus;
    for (int i = 0; i < VM_MAX_CPUS; i++) {
        pc->vw.gpa[i] = NO_PAGE;
    }
    pthread_mutex_init(&pc->wait_lock, NULL);
    int ret = pc->uffd = mig_uffd_open(UFFD_FEATURE_THREAD_ID, err);
    if (ret >= 0 && (ret = uffd_register(pc->uffd, mem, err)) == 0) {
        pc->stop_fd = eventfd(0, EFD_CLOEXEC);
        ret = pc->stop_fd < 0 ? error_set_errno(err, -errno, "eventfd") : 0;
    }
    if (ret == 0 && pthread_create(&pc->thread, NULL, fault_main, pc) != 0) {
        ret = error_set(err, -EAGAIN, "cannot start the post-copy fault thread");
    }
    if (ret < 0) {
        if (pc->uffd >= 0) {
            uffd_unregister(pc->uffd, mem);
            close(pc->uffd);
        }
        if (pc->stop_fd >= 0) {
            close(pc->stop_fd);
        }
        free(pc->zero);
        free(pc);
        return ret;
    }
    *out = pc;
    return 0;
}

int postcopy_dest_place(struct postcopy_dest *pc, uint64_t gpa, const uint8_t *data, struct error *err)
{
    int region;
    uint64_t page;
    if (!mig_page_index(pc->mem, gpa, &region, &page)) {
        return error_set(err, -EPROTO, "page 0x%llx is not guest RAM", (unsigned long long)gpa);
    }
    int ret = place_page(pc, pc->mem->regions[region].hva + page * GUEST_PAGE_SIZE, data ? data : pc->zero, err);
    if (ret == 0) {
        bitmap_set_atomic(pc->received->bits[region], page);
        wait_end(pc, gpa);
    }
    return ret;
}

void postcopy_dest_set_rp(struct postcopy_dest *pc, int rp_fd)
{
    pc->rp_fd = rp_fd;      /* the caller holds rp_lock */
}

void postcopy_dest_rerequest(struct postcopy_dest *pc)
{
    for (unsigned h = 0; h < WAITING; h++) {
        pthread_mutex_lock(&pc->wait_lock);
        uint64_t gpa = pc->wait_ns[h] ? pc->wait_gpa[h] : UINT64_MAX;
        pthread_mutex_unlock(&pc->wait_lock);
        if (gpa != UINT64_MAX) {
            struct mig_rp_msg msg = { .type = MIG_RP_PAGE_REQ, .arg = gpa };
            struct error err = { 0 };
            pthread_mutex_lock(pc->rp_lock);
            mig_rp_send(pc->rp_fd, &msg, &err);
            pthread_mutex_unlock(pc->rp_lock);
        }
    }
}

uint64_t postcopy_dest_requests(struct postcopy_dest *pc)
{
    return __atomic_load_n(&pc->requests, __ATOMIC_RELAXED);
}

void postcopy_dest_stop(struct postcopy_dest *pc)
{
    if (!pc) {
        return;
    }
    uint64_t one = 1;
    if (write(pc->stop_fd, &one, sizeof(one)) != sizeof(one)) {
        log_warn("post-copy: cannot stop the fault thread");
    }
    pthread_join(pc->thread, NULL);
    uffd_unregister(pc->uffd, pc->mem);
    close(pc->uffd);
    close(pc->stop_fd);
    pthread_mutex_destroy(&pc->wait_lock);
    free(pc->zero);
    free(pc);
}
