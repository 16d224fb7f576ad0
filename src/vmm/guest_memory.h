/* Guest RAM: one memfd per region, mapped shared, so it can be dumped,
 * mapped back or handed to another process. Below 4 GiB RAM stops at the PCI
 * hole; the rest lives above 4 GiB. Region i is KVM memory slot i.
 *
 * Guest memory owns everything about its pages: the KVM slots, dirty
 * tracking (KVM's dirty log plus the pages the VMM's own devices write),
 * whether a region is still its memfd or a snapshot file mapped over it
 * (guest_memory_file.c), and its form in a VM-state stream
 * (guest_memory_stream.c). */
#ifndef VMM_GUEST_MEMORY_H
#define VMM_GUEST_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define GUEST_PCI_HOLE_START 0xc0000000ull
#define GUEST_4G             0x100000000ull
#define GUEST_MEM_MAX_REGIONS 4
#define GUEST_PAGE_SIZE 4096ull

struct guest_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;
    int memfd;
    uint64_t *vmm_dirty;    /* pages the VMM wrote while tracking (NULL: off) */
    bool file_mapped;       /* a snapshot file is mapped over (part of) it */
    uint8_t *slot_hva;      /* what KVM's slot maps when not hva: post-copy's self-fetch view (owned) */
};

struct guest_memory {
    uint64_t ram_size;
    int count;
    struct guest_region regions[GUEST_MEM_MAX_REGIONS];
    int vm_fd;              /* the KVM VM whose slots map it, -1: none */
    bool dirty_tracking;
    int fault_fd;           /* eventfd: RAM was found unreadable (guest_memory_fault.c) */
    bool fault_registered;
    uint64_t fault_gpa;     /* the first unreadable address, GUEST_MEMORY_NO_FAULT: none */
    /* post-copy's self-fetch (guest_memory_view.c): a vCPU that KVM_RUN
     * leaves with a memory fault on a missing page calls it (atomic) */
    int (*fetch)(void *opaque, uint64_t gpa);
    void *fetch_opaque;
    uint32_t fetch_callers;     /* atomic: threads inside the hook */
    uint32_t fetch_clearing;    /* atomic: a clear waits for them (futex word) */
};

struct guest_memory_sums;

/* One bit per 4 KiB page of each region. */
struct guest_bitmap {
    int count;
    uint64_t pages[GUEST_MEM_MAX_REGIONS];
    uint64_t *bits[GUEST_MEM_MAX_REGIONS];
};

int guest_memory_create(struct guest_memory *m, uint64_t ram_size, struct error *err);
void guest_memory_destroy(struct guest_memory *m);
/* Host pointer to [gpa, gpa+len) when it lies wholly inside one region,
 * NULL otherwise: every guest-supplied address goes through this. */
void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);
/* Bytes of RAM below the PCI hole. */
uint64_t guest_memory_low_size(const struct guest_memory *m);
int guest_memory_write(const struct guest_memory *m, uint64_t gpa, const void *src, size_t len,
                       struct error *err);

/* Makes region i KVM memory slot i of vm_fd (dirty-logged or not). */
int guest_memory_set_slot(struct guest_memory *m, int i, bool log_dirty, struct error *err);
/* Registers every region with the KVM VM vm_fd. */
int guest_memory_add_slots(struct guest_memory *m, int vm_fd, struct error *err);

/* guest_memory_view.c: KVM's slots on a second mapping of the regions'
 * memfds (post-copy's self-fetch view, taken over: unmapped with the
 * memory), where a missing page makes KVM_RUN fail with -EFAULT and
 * KVM_EXIT_MEMORY_FAULT; the vCPU thread then calls the fetch hook with
 * the address and runs again. Only while the vCPUs are paused. */
int guest_memory_slots_on_view(struct guest_memory *m, uint8_t *const view[], struct error *err);
/* Whether KVM says where its -EFAULTs are (KVM_CAP_MEMORY_FAULT_INFO):
 * without it a vCPU could not tell which page to fetch. */
bool guest_memory_kvm_reports_faults(const struct guest_memory *m);
/* Installs the hook; fetch NULL removes it and returns once every thread
 * that entered the old one has left it, so that its opaque may be freed
 * (the hook's callers must be made to return first: a clear does not
 * wake them). */
void guest_memory_set_fetch(struct guest_memory *m, int (*fetch)(void *opaque, uint64_t gpa), void *opaque);
/* The vCPU side: 0 when the page at gpa is here now (run again). */
int guest_memory_fetch(struct guest_memory *m, uint64_t gpa);

int guest_bitmap_init(struct guest_bitmap *b, const struct guest_memory *m, struct error *err);
void guest_bitmap_free(struct guest_bitmap *b);
uint64_t guest_bitmap_count(const struct guest_bitmap *b);

/* Dirty tracking (guest_memory_dirty.c): the pages the guest wrote (KVM's
 * dirty log, when in a KVM VM) and those the VMM itself wrote (virtio
 * devices filling the guest's buffers, marked by guest_memory_mark_dirty).
 * start forgets what was dirty before; harvest ORs what was dirtied since
 * the last start or harvest into b and clears it. */
int guest_memory_dirty_start(struct guest_memory *m, struct error *err);
int guest_memory_dirty_harvest(struct guest_memory *m, struct guest_bitmap *b, struct error *err);
void guest_memory_dirty_stop(struct guest_memory *m);
void guest_memory_mark_dirty(const struct guest_memory *m, uint64_t gpa, uint64_t len);

/* Memory files (guest_memory_file.c) hold raw guest RAM, regions one after
 * another. A full file has every page (zero pages as holes); a diff file
 * only the pages in dirty, at their place. Written to path atomically. */
int guest_memory_file_write(struct guest_memory *m, const char *path, const struct guest_bitmap *dirty,
                            struct error *err);
/* Maps a memory file over guest RAM, copy-on-write (MAP_PRIVATE): only the
 * pages in present (all when NULL). With sums (count > 0) the file is
 * verified first, through the descriptor it is then mapped from; otherwise
 * nothing is read until the guest touches it. */
int guest_memory_file_map(struct guest_memory *m, const char *path, const struct guest_bitmap *present,
                          const struct guest_memory_sums *sums, struct error *err);
/* Checksums of a memory file (guest_memory_sum.c): one hash per chunk of
 * 1 << GUEST_MEMORY_SUM_CHUNK_SHIFT bytes of the file. compute hashes what
 * guest_memory_file_write writes for the same present (NULL: a full file);
 * verify reads the chunks of fd that hold present pages and names the
 * first that differs. */
#define GUEST_MEMORY_SUM_CHUNK_SHIFT 20
struct guest_memory_sums {
    uint64_t count;
    uint64_t *hash;
};
int guest_memory_sums_compute(const struct guest_memory *m, const struct guest_bitmap *present,
                              struct guest_memory_sums *sums, struct error *err);
int guest_memory_file_verify(int fd, const char *path, const struct guest_memory *m,
                             const struct guest_bitmap *present, const struct guest_memory_sums *sums,
                             struct error *err);
void guest_memory_sums_free(struct guest_memory_sums *sums);

/* Unreadable guest RAM (guest_memory_fault.c): a SIGBUS on a page of a
 * registered memory replaces the page with zeros and latches the fault;
 * vCPUs report KVM_RUN's EFAULT themselves. take returns whether a fault
 * happened since the last take, and the first address (or
 * GUEST_MEMORY_FAULT_UNKNOWN). The memory's owner watches fault_fd. */
#define GUEST_MEMORY_NO_FAULT UINT64_MAX
#define GUEST_MEMORY_FAULT_UNKNOWN (UINT64_MAX - 1)
int guest_memory_fault_init(struct guest_memory *m, struct error *err);
/* init installs the SIGBUS handler once; again for who replaced it. */
void guest_memory_fault_install_handler(void);
void guest_memory_fault_fini(struct guest_memory *m);
void guest_memory_fault_report(struct guest_memory *m, uint64_t gpa);
bool guest_memory_fault_take(struct guest_memory *m, uint64_t *gpa);
/* Regions still backed by a memory file go back to their memfds, zeroed:
 * a reset must not depend on a file that may be gone. */
int guest_memory_detach_files(struct guest_memory *m, struct error *err);

/* Region i back to its memfd, all zeros. */
int guest_memory_region_reset(struct guest_memory *m, int i, struct error *err);
/* Marks region i's pages that hold data (not zero) in bits. */
void guest_memory_find_data(const struct guest_memory *m, int i, uint64_t *bits);

#endif
