#include "fake_exits.h"

#include <string.h>

#include "machine/machine_int.h"

const struct step script[NSTEPS] = {
    /* 0-4: the PICs as Linux sets them, only IRQ 0 unmasked. */
    { OUT, 0x20, 0x11, false }, { OUT, 0x21, 0x20, false }, { OUT, 0x21, 0x04, false }, { OUT, 0x21, 0x01, false },
    { OUT, 0x21, 0xfe, false },
    /* 5-7: PIT counter 0 periodic (mode 2); loaded at tick 84, edges at 120, 156, ... */
    { OUT, 0x43, 0x34, false }, { OUT, 0x40, PIT_PERIOD, false }, { OUT, 0x40, 0, false },
    /* 8, 9: the live count, LSB then MSB; the first edge comes with exit 9, IF is clear. */
    { IN, 0x40, 0, false }, { IN, 0x40, 0, false },
    { RDMSR, 0x10, 0, false },                                  /* 10 */
    { IN, 0x40, 0, false }, { IN, 0x40, 0, false }, { IN, 0x40, 0, false },
    { WINDOW, 0, 0, true },                                     /* 14: the window asked for: vector 0x20 */
    { OUT, 0x20, 0x20, false },                                 /* 15: EOI; the edge at 192 comes with it */
    { OUT, 0x43, 0x30, false },                                 /* 16: one-shot mode, not yet counting */
    { WINDOW, 0, 0, true },                                     /* 17: vector 0x20 again */
    { OUT, 0x20, 0x20, false },                                 /* 18: EOI, nothing pending */
    { WRMSR, 0x10, 1000000, false }, { RDMSR, 0x10, 0, false }, /* 19, 20: the TSC goes on from a write */
    { RDMSR, 0x12345, 0, false },                               /* 21: not ours: #GP */
    { OUT, 0x40, 240, false }, { OUT, 0x40, 0, false },         /* 22, 23: one-shot of 240 ticks from 276 */
    { HLT, 0, 0, true },                                        /* 24: idle until tick 516, then vector 0x20 */
    { OUT, 0x20, 0x20, true },
    { OUT, 0xf4, 0, false },
};
_Static_assert(sizeof(script) / sizeof(script[0]) == NSTEPS, "NSTEPS counts the script");

void fake_io_exit(struct kvm_run *run, bool in, uint16_t port)
{
    run->exit_reason = KVM_EXIT_IO;
    run->io.direction = in ? KVM_EXIT_IO_IN : KVM_EXIT_IO_OUT;
    run->io.port = port;
    run->io.size = 1;
    run->io.count = 1;
    run->io.data_offset = FAKE_IO_DATA;
}

static void fill_run(struct kvm_run *run, const struct step *s, int n, uint64_t rip_bump, struct kvm_regs *regs)
{
    run->if_flag = s->if_flag;
    run->ready_for_interrupt_injection = s->if_flag;
    memset(regs, 0, sizeof(*regs));
    regs->rip = 0x100000 + 4 * (uint64_t)n + rip_bump;
    regs->rax = s->value;
    regs->rflags = 2 | (s->if_flag ? 0x200 : 0);
    switch (s->kind) {
    case OUT:
    case IN:
        fake_io_exit(run, s->kind == IN, (uint16_t)s->port);
        *((uint8_t *)run + FAKE_IO_DATA) = (uint8_t)s->value;
        break;
    case RDMSR:
    case WRMSR:
        run->exit_reason = s->kind == RDMSR ? KVM_EXIT_X86_RDMSR : KVM_EXIT_X86_WRMSR;
        run->msr.index = s->port;
        run->msr.data = s->value;
        run->msr.error = 0;
        break;
    case HLT:
        run->exit_reason = KVM_EXIT_HLT;
        break;
    case WINDOW:
        run->exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
        break;
    }
}

/* The vCPU loop's part for one exit: the bus, then the exit clock. */
int one_exit(struct machine *m, struct kvm_run *run, int n, uint64_t rip_bump, struct trace *t, struct error *err)
{
    const struct step *s = &script[n];
    struct kvm_regs regs;
    fill_run(run, s, n, rip_bump, &regs);
    uint8_t *data = (uint8_t *)run + 4096;
    if (s->kind == OUT) {
        bus_write(&m->vm.pio, s->port, data, 1);
    } else if (s->kind == IN) {
        bus_read(&m->vm.pio, s->port, data, 1);
    }
    uint8_t vector = 0;
    enum replay_action act = machine_replay_exit(m, run, &regs, &vector, err);
    while (act == REPLAY_ACT_IDLE) {
        act = machine_replay_idle(m, run, &vector, 50, err);
    }
    t->action[n] = act;
    t->vector[n] = vector;
    t->read[n] = s->kind == IN ? *data : s->kind == RDMSR ? (run->msr.error ? ~0ull : run->msr.data) : 0;
    t->window[n] = run->request_interrupt_window;
    return act;
}

