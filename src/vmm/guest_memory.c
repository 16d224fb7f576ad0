#include "vmm/guest_memory.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int add_region(struct guest_memory *m, uint64_t gpa, uint64_t size, struct error *err)
{
    struct guest_region *r = &m->regions[m->count];
    r->memfd = memfd_create("cowvisor-ram", MFD_CLOEXEC);
    if (r->memfd < 0) {
        return error_set_errno(err, -errno, "memfd_create");
    }
    if (ftruncate(r->memfd, (off_t)size) < 0) {
        int e = -errno;
        close(r->memfd);
        return error_set_errno(err, e, "sizing guest memory to %llu bytes", (unsigned long long)size);
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->memfd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(r->memfd);
        return error_set_errno(err, e, "mapping %llu bytes of guest memory", (unsigned long long)size);
    }
    madvise(p, size, MADV_MERGEABLE);
    r->gpa = gpa;
    r->size = size;
    r->hva = p;
    m->count++;
    return 0;
}

int guest_memory_create(struct guest_memory *m, uint64_t ram_size, struct error *err)
{
    memset(m, 0, sizeof(*m));
    m->vm_fd = -1;
    m->fault_fd = -1;
    if (ram_size < (1u << 20) || (ram_size & 0xfff)) {
        return error_set(err, -EINVAL, "guest memory must be at least 1 MiB and a multiple of 4 KiB");
    }
    m->ram_size = ram_size;
    uint64_t low = ram_size < GUEST_PCI_HOLE_START ? ram_size : GUEST_PCI_HOLE_START;
    int ret = guest_memory_fault_init(m, err);
    if (ret == 0) {
        ret = add_region(m, 0, low, err);
    }
    if (ret == 0 && ram_size > low) {
        ret = add_region(m, GUEST_4G, ram_size - low, err);
    }
    if (ret < 0) {
        guest_memory_destroy(m);
    }
    return ret;
}

void guest_memory_destroy(struct guest_memory *m)
{
    m->vm_fd = -1;      /* its slots go with the VM */
    guest_memory_fault_fini(m);
    guest_memory_dirty_stop(m);
    for (int i = 0; i < m->count; i++) {
        munmap(m->regions[i].hva, m->regions[i].size);
        if (m->regions[i].slot_hva) {
            munmap(m->regions[i].slot_hva, m->regions[i].size);
            m->regions[i].slot_hva = NULL;
        }
        close(m->regions[i].memfd);
    }
    m->count = 0;
}

void *guest_memory_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
    for (int i = 0; i < m->count; i++) {
        const struct guest_region *r = &m->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa)) {
            return r->hva + (gpa - r->gpa);
        }
    }
    return NULL;
}

uint64_t guest_memory_low_size(const struct guest_memory *m)
{
    return m->count ? m->regions[0].size : 0;
}

int guest_memory_write(const struct guest_memory *m, uint64_t gpa, const void *src, size_t len,
                       struct error *err)
{
    void *p = guest_memory_ptr(m, gpa, len);
    if (!p) {
        return error_set(err, -ERANGE, "%zu bytes at guest address 0x%llx do not fit in guest memory",
                         len, (unsigned long long)gpa);
    }
    memcpy(p, src, len);
    return 0;
}

int guest_memory_set_slot(struct guest_memory *m, int i, bool log_dirty, struct error *err)
{
    struct guest_region *r = &m->regions[i];
    struct kvm_userspace_memory_region slot = {
        .slot = (uint32_t)i,
        .flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = r->gpa,
        .memory_size = r->size,
        .userspace_addr = (uintptr_t)(r->slot_hva ? r->slot_hva : r->hva),
    };
    if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
        return error_set_errno(err, -errno, "KVM_SET_USER_MEMORY_REGION (slot %d%s)", i,
                               log_dirty ? ", dirty log" : "");
    }
    return 0;
}

int guest_memory_add_slots(struct guest_memory *m, int vm_fd, struct error *err)
{
    m->vm_fd = vm_fd;
    for (int i = 0; i < m->count; i++) {
        int ret = guest_memory_set_slot(m, i, false, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}
