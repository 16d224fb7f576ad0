/* Guest memory to a file: physical (QMP pmemsave) or virtual through a
 * vCPU's page tables (QMP memsave), for tests and debugging, e.g.
 * comparing RAM on both sides of a migration. */
#include "machine/machine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/io.h"
#include "vmm/page_walk.h"

/* Where the bytes at addr + off lie: *gpa, and how many follow there. */
typedef int (*locate_fn)(struct machine *m, const void *ctx, uint64_t addr, uint64_t *gpa, uint64_t *run,
                         struct error *err);

static int save_range(struct machine *m, uint64_t addr, uint64_t size, const char *path, locate_fn locate,
                      const void *ctx, struct error *err)
{
    if (size && addr + size < addr) {
        return error_set(err, -EINVAL, "Invalid parameter 'size'");
    }
    /* Lost guest RAM reads as zeros: never saved as if it were the guest's. */
    int ret = machine_memory_intact(m, err);
    if (ret < 0) {
        return ret;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not open '%s'", path);
    }
    /* Page by page: a range may span regions (or mappings), but never the PCI hole. */
    for (uint64_t off = 0; ret == 0 && off < size;) {
        uint64_t gpa, n;
        const void *p = NULL;
        if ((ret = locate(m, ctx, addr + off, &gpa, &n, err)) == 0) {
            n = n < size - off ? n : size - off;
            p = guest_memory_ptr(&m->vm.mem, gpa, n);
        }
        if (ret < 0 || !p) {
            struct error why = err ? *err : (struct error){ 0 };
            ret = error_set(err, ret < 0 ? ret : -EINVAL, "Invalid addr 0x%llx/size %llu specified%s%s",
                            (unsigned long long)addr, (unsigned long long)size, ret < 0 ? ": " : "",
                            ret < 0 ? why.msg : "");
        } else if ((ret = io_pwrite_full(fd, p, n, (off_t)off)) < 0) {
            error_set_errno(err, ret, "writing to file '%s'", path);
        }
        off += n;
    }
    close(fd);
    return ret < 0 ? ret : machine_memory_intact(m, err);
}

static int locate_physical(struct machine *m, const void *ctx, uint64_t addr, uint64_t *gpa, uint64_t *run,
                           struct error *err)
{
    *gpa = addr;
    *run = GUEST_PAGE_SIZE - (addr & (GUEST_PAGE_SIZE - 1));
    return 0;
}

int machine_pmemsave(struct machine *m, uint64_t gpa, uint64_t size, const char *path, struct error *err)
{
    return save_range(m, gpa, size, path, locate_physical, NULL, err);
}

static int locate_virtual(struct machine *m, const void *ctx, uint64_t addr, uint64_t *gpa, uint64_t *run,
                          struct error *err)
{
    return x86_translate(&m->vm.mem, ctx, addr, gpa, run, err);
}

/* The vCPU's control registers; a running vCPU is parked for the read
 * (KVM reads a vCPU's registers only outside KVM_RUN). */
static int cpu_paging(struct machine *m, int cpu, struct x86_paging *pg, struct error *err)
{
    if (cpu < 0 || cpu >= m->vm.ncpus) {
        return error_set(err, -EINVAL, "Parameter 'cpu-index' expects a CPU number (this machine has %d vCPU%s)",
                         m->vm.ncpus, m->vm.ncpus == 1 ? "" : "s");
    }
    bool running = m->run_state == MACHINE_RUNNING;
    struct kvm_sregs sr;
    if (running) {
        vm_pause(&m->vm);
    }
    int ret = ioctl(m->vm.vcpus[cpu].fd, KVM_GET_SREGS, &sr) < 0 ? -errno : 0;
    if (running) {
        vm_resume(&m->vm);
    }
    if (ret < 0) {
        return error_set_errno(err, ret, "reading CPU %d's registers", cpu);
    }
    *pg = (struct x86_paging){ .cr0 = sr.cr0, .cr3 = sr.cr3, .cr4 = sr.cr4, .efer = sr.efer };
    return 0;
}

int machine_memsave_paging(struct machine *m, const struct x86_paging *pg, uint64_t va, uint64_t size,
                           const char *path, struct error *err)
{
    return save_range(m, va, size, path, locate_virtual, pg, err);
}

int machine_memsave(struct machine *m, int cpu, uint64_t va, uint64_t size, const char *path, struct error *err)
{
    struct x86_paging pg;
    int ret = cpu_paging(m, cpu, &pg, err);
    return ret < 0 ? ret : machine_memsave_paging(m, &pg, va, size, path, err);
}
