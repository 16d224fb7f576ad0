/* Save and load of a vCPU's architectural state through KVM: registers,
 * segment and control registers, FPU/XSAVE, XCRs, MSRs, local APIC, pending
 * events and MP state. Also what a reset restores (the state at creation). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "util/log.h"
#include "vmm/vm.h"

#define MAX_SAVED_MSRS 256

/* Every MSR KVM lists that can actually be read on this vCPU. */
static int readable_msrs(struct vcpu *c, uint32_t *out, int max)
{
    struct kvm_msr_list *list = calloc(1, sizeof(*list) + 1024 * sizeof(uint32_t));
    if (!list) {
        return -ENOMEM;
    }
    list->nmsrs = 1024;
    if (ioctl(c->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        free(list);
        return -errno;
    }
    int n = 0;
    for (uint32_t i = 0; i < list->nmsrs && n < max; i++) {
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } one = { .hdr.nmsrs = 1, .e.index = list->indices[i] };
        if (ioctl(c->fd, KVM_GET_MSRS, &one) == 1) {
            out[n++] = list->indices[i];
        }
    }
    free(list);
    return n;
}

#define GET(req, ptr, what)                                                            \
    do {                                                                               \
        if (ioctl(c->fd, req, ptr) < 0) {                                              \
            ret = error_set_errno(err, -errno, "vCPU %d: reading %s", c->index, what); \
            goto out;                                                                  \
        }                                                                              \
    } while (0)
#define SET(req, ptr, what)                                                            \
    do {                                                                               \
        if (ioctl(c->fd, req, ptr) < 0) {                                              \
            ret = error_set_errno(err, -errno, "vCPU %d: writing %s", c->index, what); \
            goto out;                                                                  \
        }                                                                              \
    } while (0)

struct vcpu_blobs {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xsave xsave;
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp;
    struct kvm_debugregs debugregs;
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[MAX_SAVED_MSRS];
    } msrs;
};

int vcpu_save_state(struct vcpu *c, struct state_buf *b, struct error *err)
{
    int ret = 0;
    struct vcpu_blobs *s = calloc(1, sizeof(*s));
    uint32_t *idx = calloc(MAX_SAVED_MSRS, sizeof(uint32_t));
    if (!s || !idx) {
        free(s);
        free(idx);
        return error_set(err, -ENOMEM, "out of memory");
    }
    int n = readable_msrs(c, idx, MAX_SAVED_MSRS);
    if (n < 0) {
        ret = error_set_errno(err, n, "KVM_GET_MSR_INDEX_LIST");
        goto out;
    }
    s->msrs.hdr.nmsrs = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        s->msrs.e[i].index = idx[i];
    }
    GET(KVM_GET_REGS, &s->regs, "registers");
    GET(KVM_GET_SREGS, &s->sregs, "system registers");
    GET(KVM_GET_XSAVE, &s->xsave, "XSAVE area");
    GET(KVM_GET_XCRS, &s->xcrs, "XCRs");
    if (!c->vm->user_irqchip) {     /* no local APIC in the kernel: its place stays zero */
        GET(KVM_GET_LAPIC, &s->lapic, "local APIC");
    }
    GET(KVM_GET_VCPU_EVENTS, &s->events, "pending events");
    GET(KVM_GET_MP_STATE, &s->mp, "MP state");
    GET(KVM_GET_DEBUGREGS, &s->debugregs, "debug registers");
    if (ioctl(c->fd, KVM_GET_MSRS, &s->msrs) != n) {
        ret = error_set(err, -EIO, "vCPU %d: reading MSRs", c->index);
        goto out;
    }
    state_put_u32(b, (uint32_t)c->index);
    state_put_bytes(b, &s->regs, sizeof(s->regs));
    state_put_bytes(b, &s->sregs, sizeof(s->sregs));
    state_put_bytes(b, &s->xsave, sizeof(s->xsave));
    state_put_bytes(b, &s->xcrs, sizeof(s->xcrs));
    state_put_bytes(b, &s->lapic, sizeof(s->lapic));
    state_put_bytes(b, &s->events, sizeof(s->events));
    state_put_bytes(b, &s->mp, sizeof(s->mp));
    state_put_bytes(b, &s->debugregs, sizeof(s->debugregs));
    state_put_u32(b, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        state_put_u32(b, s->msrs.e[i].index);
        state_put_u64(b, s->msrs.e[i].data);
    }
    ret = state_buf_error(b, err);
out:
    free(s);
    free(idx);
    return ret;
}

int vcpu_load_state(struct vcpu *c, struct state_buf *b, struct error *err)
{
    int ret = 0;
    struct vcpu_blobs *s = calloc(1, sizeof(*s));
    if (!s) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    uint32_t index = state_get_u32(b);
    state_get_bytes(b, &s->regs, sizeof(s->regs));
    state_get_bytes(b, &s->sregs, sizeof(s->sregs));
    state_get_bytes(b, &s->xsave, sizeof(s->xsave));
    state_get_bytes(b, &s->xcrs, sizeof(s->xcrs));
    state_get_bytes(b, &s->lapic, sizeof(s->lapic));
    state_get_bytes(b, &s->events, sizeof(s->events));
    state_get_bytes(b, &s->mp, sizeof(s->mp));
    state_get_bytes(b, &s->debugregs, sizeof(s->debugregs));
    uint32_t n = state_get_u32(b);
    if (n > MAX_SAVED_MSRS) {
        ret = error_set(err, -EINVAL, "vCPU state holds %u MSRs, at most %d are supported", n, MAX_SAVED_MSRS);
        goto out;
    }
    s->msrs.hdr.nmsrs = n;
    for (uint32_t i = 0; i < n; i++) {
        s->msrs.e[i].index = state_get_u32(b);
        s->msrs.e[i].data = state_get_u64(b);
    }
    if ((ret = state_buf_error(b, err)) < 0) {
        goto out;
    }
    if (index != (uint32_t)c->index) {
        ret = error_set(err, -EINVAL, "state of vCPU %u given to vCPU %d", index, c->index);
        goto out;
    }
    /* Order matters: system registers (mode, APIC base) before the APIC,
     * MSRs after the mode, events and MP state last. */
    SET(KVM_SET_SREGS, &s->sregs, "system registers");
    SET(KVM_SET_REGS, &s->regs, "registers");
    SET(KVM_SET_XSAVE, &s->xsave, "XSAVE area");
    SET(KVM_SET_XCRS, &s->xcrs, "XCRs");
    if (ioctl(c->fd, KVM_SET_MSRS, &s->msrs) != (int)n) {
        ret = error_set(err, -EIO, "vCPU %d: writing MSRs", c->index);
        goto out;
    }
    if (!c->vm->user_irqchip) {
        SET(KVM_SET_LAPIC, &s->lapic, "local APIC");
    }
    SET(KVM_SET_DEBUGREGS, &s->debugregs, "debug registers");
    SET(KVM_SET_VCPU_EVENTS, &s->events, "pending events");
    SET(KVM_SET_MP_STATE, &s->mp, "MP state");
out:
    free(s);
    return ret;
}
