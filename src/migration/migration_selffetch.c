/* Post-copy's self-fetch path: the thread that misses a page asks for it
 * itself, with no hop through the fault thread (issue #12: that hop is the
 * tail of the fault latency). Guest RAM gets a second mapping of the same
 * memfds, the "vCPU view", registered with a userfaultfd of its own in
 * SIGBUS mode: a miss there is not queued for a fault thread but fails at
 * once, as SIGBUS in a user-space thread or as KVM_RUN's -EFAULT
 * (KVM_EXIT_MEMORY_FAULT) in a vCPU whose memory slots use the view. The
 * thread then sends its own request and sleeps on a futex until the page
 * is placed. The main mapping keeps the MISSING-mode userfaultfd and the
 * fault thread, so every other access (devices, O_DIRECT reads and tap
 * reads into guest buffers, KVM's own) waits as before instead of failing.
 * Pages are placed through the main mapping's userfaultfd (UFFDIO_COPY
 * puts them in the memfd's page cache), which both mappings share: a page
 * is placed once whoever asked, and the view's next access finds it. */
#include "migration/migration_selffetch.h"
#include "migration/migration_int.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct selffetch {
    const struct guest_memory *mem;
    uint8_t *view[GUEST_MEM_MAX_REGIONS];
    int uffd;
    uint32_t placed;        /* futex word: bumped when a page arrives while someone waits */
    uint32_t waiters;       /* atomic */
    uint32_t stopping;      /* atomic */
    uint32_t kicks;         /* atomic: recoveries, after which waiters ask again */
    uint8_t *zero;          /* a zero page, for pages known to be zero */
    bool given;             /* the views belong to guest memory now (KVM's slots map them) */
};

static int map_views(struct selffetch *sf, struct error *err)
{
    for (int i = 0; i < sf->mem->count; i++) {
        const struct guest_region *r = &sf->mem->regions[i];
        if (r->memfd < 0 || r->file_mapped) {
            return error_set(err, -ENOTSUP, "guest RAM region %d has no memfd of its own to map twice", i);
        }
        void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
        if (p == MAP_FAILED) {
            return error_set_errno(err, -errno, "mapping guest RAM region %d a second time", i);
        }
        sf->view[i] = p;
        struct uffdio_register reg = { .range = { (uintptr_t)p, r->size }, .mode = UFFDIO_REGISTER_MODE_MISSING };
        if (ioctl(sf->uffd, UFFDIO_REGISTER, &reg) < 0) {
            return error_set_errno(err, -errno, "registering the view of guest RAM region %d", i);
        }
    }
    return 0;
}

void selffetch_close(struct selffetch *sf)
{
    if (!sf) {
        return;
    }
    selffetch_release(sf);
    for (int i = 0; i < sf->mem->count && !sf->given; i++) {
        if (sf->view[i]) {
            munmap(sf->view[i], sf->mem->regions[i].size);
        }
    }
    if (sf->uffd >= 0) {
        close(sf->uffd);
    }
    free(sf->zero);
    free(sf);
}

int selffetch_open(struct selffetch **out, const struct guest_memory *mem, struct error *err)
{
    struct selffetch *sf = calloc(1, sizeof(*sf));
    if (!sf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    sf->mem = mem;
    void *zero = NULL;
    if (posix_memalign(&zero, GUEST_PAGE_SIZE, GUEST_PAGE_SIZE) != 0) {
        free(sf);
        return error_set(err, -ENOMEM, "out of memory");
    }
    sf->zero = memset(zero, 0, GUEST_PAGE_SIZE);
    int ret = sf->uffd = mig_uffd_open(UFFD_FEATURE_SIGBUS, err);
    if (ret >= 0) {
        ret = map_views(sf, err);
    }
    if (ret < 0) {
        selffetch_close(sf);
        return ret;
    }
    *out = sf;
    return 0;
}

int selffetch_give_to_kvm(struct selffetch *sf, struct guest_memory *mem, struct error *err)
{
    if (!guest_memory_kvm_reports_faults(mem)) {
        return error_set(err, -ENOTSUP, "KVM does not say where its faults are (KVM_CAP_MEMORY_FAULT_INFO)");
    }
    sf->given = true;       /* from the first slot moved on: unmapped with guest memory */
    return guest_memory_slots_on_view(mem, sf->view, err);
}

uint8_t *selffetch_view(const struct selffetch *sf, int region)
{
    return sf->view[region];
}

static long futex(uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

int selffetch_wait(struct selffetch *sf, const uint64_t *bits, uint64_t page)
{
    __atomic_add_fetch(&sf->waiters, 1, __ATOMIC_SEQ_CST);
    uint32_t kicks = __atomic_load_n(&sf->kicks, __ATOMIC_SEQ_CST);
    int ret = 0;
    for (;;) {
        uint32_t seen = __atomic_load_n(&sf->placed, __ATOMIC_SEQ_CST);
        if (bitmap_test(bits, page)) {
            break;
        }
        if (__atomic_load_n(&sf->stopping, __ATOMIC_SEQ_CST)) {
            ret = -ECANCELED;
            break;
        }
        if (__atomic_load_n(&sf->kicks, __ATOMIC_SEQ_CST) != kicks) {
            ret = -EAGAIN;
            break;
        }
        futex(&sf->placed, FUTEX_WAIT_PRIVATE, seen);
    }
    __atomic_sub_fetch(&sf->waiters, 1, __ATOMIC_SEQ_CST);
    return ret;
}

/* Called after each page is marked received: the bitmap is set before
 * the counter moves, so a waiter that read the old counter either sees
 * the bit or is woken. */
void selffetch_placed(struct selffetch *sf)
{
    if (__atomic_load_n(&sf->waiters, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&sf->placed, 1, __ATOMIC_SEQ_CST);
        futex(&sf->placed, FUTEX_WAKE_PRIVATE, INT_MAX);
    }
}

void selffetch_kick(struct selffetch *sf)
{
    __atomic_add_fetch(&sf->kicks, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&sf->placed, 1, __ATOMIC_SEQ_CST);
    futex(&sf->placed, FUTEX_WAKE_PRIVATE, INT_MAX);
}

/* A page known to be zero was never placed: the view's miss on it needs
 * one (EEXIST: someone placed it meanwhile, which is as good). */
int selffetch_fill_zero(struct selffetch *sf, int region, uint64_t page, struct error *err)
{
    uint8_t *hva = sf->view[region] + page * GUEST_PAGE_SIZE;
    struct uffdio_copy c = { .dst = (uintptr_t)hva, .src = (uintptr_t)sf->zero, .len = GUEST_PAGE_SIZE };
    while (ioctl(sf->uffd, UFFDIO_COPY, &c) < 0) {
        if (errno == EEXIST) {
            return 0;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return error_set_errno(err, -errno, "placing a zero page through the self-fetch view");
        }
    }
    return 0;
}

void selffetch_release(struct selffetch *sf)
{
    __atomic_store_n(&sf->stopping, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < sf->mem->count && sf->uffd >= 0; i++) {
        if (sf->view[i]) {
            struct uffdio_range r = { (uintptr_t)sf->view[i], sf->mem->regions[i].size };
            ioctl(sf->uffd, UFFDIO_UNREGISTER, &r);     /* the view is ordinary shared memory again */
        }
    }
    __atomic_add_fetch(&sf->placed, 1, __ATOMIC_SEQ_CST);
    futex(&sf->placed, FUTEX_WAKE_PRIVATE, INT_MAX);
}
