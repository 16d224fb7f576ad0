/* What monitors read about a running machine besides its run state:
 * per-disk request counters, the PCI functions the guest sees and a paused
 * vCPU's registers. */
#include "machine/machine_int.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "virtio/virtio_blk.h"

static struct virtio_blk *disk_device(struct machine *m, int i)
{
    for (int k = 0; k < m->nvirtio; k++) {
        struct virtio_device *d = m->virtio[k].dev;
        if (d && d->device_id == VIRTIO_ID_BLOCK && ((struct virtio_blk *)d)->bdev == m->disks[i]) {
            return (struct virtio_blk *)d;
        }
    }
    return NULL;
}

int machine_disk_stats(struct machine *m, int i, struct machine_disk_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->idle_ns = -1;
    if (i < 0 || i >= m->cfg->ndisks || m->disk_unplug[i] == DISK_UNPLUGGED) {
        return -ENOENT;
    }
    struct virtio_blk *b = disk_device(m, i);
    if (b) {        /* else not attached (yet): nothing was asked */
        machine_blk_stats(b, out);
    }
    return 0;
}

void machine_blk_stats(struct virtio_blk *b, struct machine_disk_stats *out)
{
    struct virtio_blk_stats st;
    virtio_blk_get_stats(b, &st);
    *out = (struct machine_disk_stats){
        st.rd_bytes, st.wr_bytes, st.rd_ops, st.wr_ops, st.flush_ops, st.unmap_ops,
        st.failed_rd_ops, st.failed_wr_ops, st.failed_flush_ops, st.failed_unmap_ops,
        st.rd_total_ns, st.wr_total_ns, st.flush_total_ns, st.unmap_total_ns, -1,
    };
    if (st.last_ns) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        out->idle_ns = (int64_t)((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec - st.last_ns);
    }
}

int machine_pci_list(struct machine *m, struct machine_pci_function *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&m->pci.lock);
    for (int slot = 0; slot < PCI_MAX_SLOTS && n < max; slot++) {
        const struct pci_device *d = m->pci.slots[slot];
        if (d) {
            out[n].slot = slot;
            memcpy(out[n].config, d->config, sizeof(out[n].config));
            memcpy(out[n].bar_size, d->bar_size, sizeof(out[n].bar_size));
            n++;
        }
    }
    pthread_mutex_unlock(&m->pci.lock);
    return n;
}

static struct machine_segment segment(const struct kvm_segment *k)
{
    /* QEMU's flags word: the descriptor's attribute bits where the
     * descriptor keeps them (bits 8-23). */
    uint32_t flags = (uint32_t)k->type << 8 | (uint32_t)k->s << 12 | (uint32_t)k->dpl << 13 |
                     (uint32_t)k->present << 15 | (uint32_t)k->avl << 20 | (uint32_t)k->l << 21 |
                     (uint32_t)k->db << 22 | (uint32_t)k->g << 23;
    return (struct machine_segment){ k->selector, k->base, k->limit, flags };
}

int machine_cpu_registers(struct machine *m, int i, struct machine_cpu_regs *out, struct error *err)
{
    if (i < 0 || i >= m->vm.ncpus) {
        return error_set(err, -EINVAL, "no CPU %d", i);
    }
    if (m->run_state == MACHINE_RUNNING) {
        return error_set(err, -EBUSY, "the machine is running (pause it first)");
    }
    struct kvm_regs r;
    struct kvm_sregs sr;
    struct kvm_mp_state mp = { 0 };
    int fd = m->vm.vcpus[i].fd;
    if (ioctl(fd, KVM_GET_REGS, &r) < 0 || ioctl(fd, KVM_GET_SREGS, &sr) < 0) {
        return error_set_errno(err, -errno, "reading CPU %d's registers", i);
    }
    ioctl(fd, KVM_GET_MP_STATE, &mp);
    *out = (struct machine_cpu_regs){
        .gpr = { r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                 r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15 },
        .rip = r.rip, .rflags = r.rflags,
        .es = segment(&sr.es), .cs = segment(&sr.cs), .ss = segment(&sr.ss), .ds = segment(&sr.ds),
        .fs = segment(&sr.fs), .gs = segment(&sr.gs), .ldt = segment(&sr.ldt), .tr = segment(&sr.tr),
        .gdt_base = sr.gdt.base, .idt_base = sr.idt.base, .gdt_limit = sr.gdt.limit, .idt_limit = sr.idt.limit,
        .cr0 = sr.cr0, .cr2 = sr.cr2, .cr3 = sr.cr3, .cr4 = sr.cr4, .efer = sr.efer,
        .halted = mp.mp_state == KVM_MP_STATE_HALTED,
    };
    return 0;
}
