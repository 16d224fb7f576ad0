#include "replay/replay_kvm.h"

#include <asm/kvm_para.h>
#include <stddef.h>
#include <string.h>

void replay_kvm_exit(const struct kvm_run *run, const struct kvm_regs *regs, replay_hash_fn *hash,
                     struct replay_exit *out)
{
    memset(out, 0, sizeof(*out));
    out->reason = run->exit_reason;
    out->rip = regs->rip;
    /* Every general register but RIP (reported apart) and RFLAGS' resume bit. */
    uint64_t gpr[17] = {
        regs->rax, regs->rbx, regs->rcx, regs->rdx, regs->rsi, regs->rdi, regs->rsp, regs->rbp,
        regs->r8, regs->r9, regs->r10, regs->r11, regs->r12, regs->r13, regs->r14, regs->r15,
        regs->rflags & ~(1ull << 16),
    };
    out->reg_hash = hash(0, gpr, sizeof(gpr));
    if (run->exit_reason == KVM_EXIT_IO) {
        out->addr = run->io.port;
        out->size = run->io.size;
        if (run->io.size <= 8 && run->io.count == 1) {
            uint64_t v = 0;
            memcpy(&v, (const uint8_t *)run + run->io.data_offset, run->io.size);
            out->value = v | (uint64_t)run->io.direction << 63;
        } else {
            out->value = (uint64_t)run->io.count | (uint64_t)run->io.direction << 63;
        }
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
        out->addr = run->mmio.phys_addr;
        out->size = run->mmio.len;
        uint64_t v = 0;
        memcpy(&v, run->mmio.data, run->mmio.len <= 8 ? run->mmio.len : 8);
        out->value = v | (uint64_t)run->mmio.is_write << 63;
    } else if (run->exit_reason == KVM_EXIT_X86_RDMSR || run->exit_reason == KVM_EXIT_X86_WRMSR) {
        out->addr = run->msr.index;
        out->size = 8;
        out->value = run->msr.error ? ~0ull : run->msr.data;
    }
}

static int clear_bit(uint32_t *reg, int bit)
{
    if (*reg & (1u << bit)) {
        *reg &= ~(1u << bit);
        return 1;
    }
    return 0;
}

static const int kvm_time_features[] = {
    KVM_FEATURE_CLOCKSOURCE, KVM_FEATURE_CLOCKSOURCE2, KVM_FEATURE_CLOCKSOURCE_STABLE_BIT, KVM_FEATURE_STEAL_TIME,
    KVM_FEATURE_ASYNC_PF, KVM_FEATURE_ASYNC_PF_VMEXIT, KVM_FEATURE_ASYNC_PF_INT,
};

int replay_kvm_mask_cpuid(struct kvm_cpuid2 *cpuid)
{
    int cleared = 0;
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            cleared += clear_bit(&e->ecx, 30);                      /* RDRAND */
            break;
        case 7:
            if (e->index == 0) {
                cleared += clear_bit(&e->ebx, 18);                  /* RDSEED */
            }
            break;
        case 0x80000007:
            cleared += clear_bit(&e->edx, 8);                       /* invariant TSC */
            break;
        case 0x40000001:
            /* The host writes these into guest memory whenever it likes
             * (kvmclock, steal time) or injects on its own (async page faults). */
            for (size_t k = 0; k < sizeof(kvm_time_features) / sizeof(kvm_time_features[0]); k++) {
                cleared += clear_bit(&e->eax, kvm_time_features[k]);
            }
            break;
        default:
            break;
        }
    }
    return cleared;
}
