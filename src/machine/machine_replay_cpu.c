/* Record/replay on the vCPU (issue 13): one vCPU whose synchronous exits
 * are the clock. Nothing in the kernel fires on its own (no in-kernel
 * irqchip); the user-space PIT runs on the exit clock, the user-space PIC
 * collects the lines, and interrupts enter the guest only at exits, through
 * KVM_INTERRUPT. CPUID hides what would read time or randomness behind the
 * VMM's back; the MSR filter sends the TSC and kvmclock MSRs here. */
#include "machine/machine_replay.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "machine/machine_int.h"
#include "replay/replay_kvm.h"
#include "util/clock.h"
#include "virtio/virtio_mmio.h"

#define IDLE_POLL_MS 50     /* record: how long an idle vCPU waits before checking for a pause */

struct irq_line machine_irq_line(struct machine *m, unsigned gsi)
{
    return m->replay ? pic_irq_line(&m->replay->pic, gsi) : vm_irq_line(&m->vm, gsi);
}

/* ISA pins no PC device uses (not 9: the ACPI SCI's), for virtio-mmio past
 * KVM's GSIs 16-19 and for every virtio-mmio device in record/replay mode,
 * where the user-space 8259 has only pins 0-15. Sharing the SCI's pin there
 * would lose interrupts: the 8259 keeps one level per pin, not a wired-OR of
 * its devices (the SCI lowering it hid a virtio device's raised line), and
 * an edge-triggered pin (ELCR bit clear) makes no edge for a second device
 * rising while the first holds it high. */
static const uint8_t mmio_isa_pins[] = { 5, 10, 11, 3, 7, 6, 14, 15 };
#define MAX_REPLAY_MMIO (int)sizeof(mmio_isa_pins)

/* On KVM's IOAPIC: GSIs 16-19, then the ISA pins above, never GSIs 20-23,
 * which the DSDT's _PRT gives PCI's INTA-D. */
#define MMIO_OWN_GSIS 4

unsigned machine_mmio_irq(struct machine *m, int n)
{
    if (m->replay) {
        return mmio_isa_pins[n % MAX_REPLAY_MMIO];
    }
    return n < MMIO_OWN_GSIS ? VIRTIO_MMIO_FIRST_GSI + (unsigned)n
                             : mmio_isa_pins[(size_t)(n - MMIO_OWN_GSIS) % sizeof(mmio_isa_pins)];
}

int machine_mmio_max(struct machine *m)
{
    return m->replay ? MAX_REPLAY_MMIO : MMIO_OWN_GSIS + (int)sizeof(mmio_isa_pins);
}

/* ---- the decisions (no ioctl: tests drive them with a fake kvm_run) ---- */

static enum replay_action offer_interrupt(struct machine *m, struct kvm_run *run, uint8_t *vector,
                                          struct error *err)
{
    struct machine_replay *r = m->replay;
    /* Mirrored: a snapshot keeps it (kvm_run is not saved state). */
    bool pending = pic_has_interrupt(&r->pic);
    r->window = pending && (!run->ready_for_interrupt_injection || !run->if_flag);
    run->request_interrupt_window = r->window;  /* an exit when the guest can take it */
    if (!pending || r->window) {
        return REPLAY_ACT_GO;
    }
    *vector = pic_acknowledge(&r->pic);
    return replay_irq(r->rp, *vector, err) < 0 ? REPLAY_ACT_STOP : REPLAY_ACT_INJECT;
}

static void answer_msr(struct machine_replay *r, struct kvm_run *run)
{
    int ret;
    if (run->exit_reason == KVM_EXIT_X86_RDMSR) {
        uint64_t v = 0;
        ret = exit_clock_rdmsr(&r->clock, run->msr.index, &v);
        run->msr.data = v;
    } else {
        ret = exit_clock_wrmsr(&r->clock, run->msr.index, run->msr.data);
    }
    run->msr.error = ret < 0;   /* not ours: the guest gets #GP, as without the filter */
}

enum replay_action machine_replay_exit(struct machine *m, struct kvm_run *run, const struct kvm_regs *regs,
                                       uint8_t *vector, struct error *err)
{
    struct machine_replay *r = m->replay;
    if (!exit_clock_counts(run->exit_reason)) {
        return REPLAY_ACT_GO;
    }
    if (replay_log_ended(r->rp)) {
        r->ended_by_log = true;
        return REPLAY_ACT_END;
    }
    if (run->exit_reason == KVM_EXIT_X86_RDMSR || run->exit_reason == KVM_EXIT_X86_WRMSR) {
        answer_msr(r, run);
    }
    exit_clock_tick(&r->clock);
    pit_set_time(&r->pit, r->clock.ticks);
    struct replay_exit e;
    replay_kvm_exit(run, regs, r->hash, &e);
    if (replay_next_exit(r->rp, &e, err) < 0) {
        return REPLAY_ACT_STOP;
    }
    machine_replay_console(m, r->rp);
    enum replay_action act = offer_interrupt(m, run, vector, err);
    if (act == REPLAY_ACT_GO && run->exit_reason == KVM_EXIT_HLT) {
        r->idle_since_ns = 0;
        return REPLAY_ACT_IDLE;
    }
    return act;
}

/* Record: waits for console input until the timer's deadline (host time
 * since the vCPU went idle), at most max_wait_ms now. True when the
 * deadline passed. */
static bool record_wait(struct machine *m, uint64_t deadline, int max_wait_ms)
{
    struct machine_replay *r = m->replay;
    uint64_t now = monotonic_ns();
    if (!r->idle_since_ns) {
        r->idle_since_ns = now;
    }
    uint64_t want = deadline == UINT64_MAX ? UINT64_MAX : exit_clock_ns_until(&r->clock, deadline);
    uint64_t waited = now - r->idle_since_ns;
    if (want <= waited) {
        return true;
    }
    uint64_t left_ms = (want - waited + 999999) / 1000000;
    int ms = left_ms < (uint64_t)max_wait_ms ? (int)left_ms : max_wait_ms;
    if (!machine_replay_console_closed(m)) {
        struct pollfd p = { .fd = m->console.in, .events = POLLIN };
        poll(&p, 1, ms);
    } else if (ms > 0) {
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
        nanosleep(&ts, NULL);
    }
    return monotonic_ns() - r->idle_since_ns >= want;
}

enum replay_action machine_replay_idle(struct machine *m, struct kvm_run *run, uint8_t *vector, int max_wait_ms,
                                       struct error *err)
{
    struct machine_replay *r = m->replay;
    /* Only an enabled timer wakes a guest that can take interrupts. */
    uint64_t deadline = run->if_flag ? pit_next_edge(&r->pit) : UINT64_MAX;
    bool record = replay_mode(r->rp) == REPLAY_RECORD;
    bool due = record ? record_wait(m, deadline, max_wait_ms)
                      : !replay_pending(r->rp, REPLAY_EV_CONSOLE) || !uart_can_receive(&m->uart);
    /* Console input first: it arrived before the timer fired. */
    machine_replay_console(m, r->rp);
    if (replay_status(r->rp, err) < 0) {
        return REPLAY_ACT_STOP;
    }
    if (pic_has_interrupt(&r->pic)) {
        r->idle_since_ns = 0;
        return offer_interrupt(m, run, vector, err);
    }
    if (due && deadline != UINT64_MAX) {
        exit_clock_jump(&r->clock, deadline);
        pit_set_time(&r->pit, r->clock.ticks);
        r->idle_since_ns = 0;
        return offer_interrupt(m, run, vector, err);
    }
    if (!record && replay_log_ended(r->rp)) {
        r->ended_by_log = true;
        return REPLAY_ACT_END;      /* the recorded run ended while the guest waited */
    }
    if (!record) {
        error_set(err, -EPROTO, "replay diverged at exit %llu: the guest waits for an interrupt nothing raises "
                  "(no timer, no input in the log here)", (unsigned long long)replay_ordinal(r->rp));
        return REPLAY_ACT_STOP;
    }
    return REPLAY_ACT_IDLE;
}

/* ---- the vCPU's hook (KVM) ---- */

static bool exit_hook(void *opaque, struct vcpu *c)
{
    struct machine *m = opaque;
    struct machine_replay *r = m->replay;
    struct error err = { 0 };
    struct kvm_regs regs;
    uint8_t vector = 0;
    if (!r->rp) {                   /* no log (a library user that never started one) */
        if (c->run->exit_reason == KVM_EXIT_X86_RDMSR || c->run->exit_reason == KVM_EXIT_X86_WRMSR) {
            answer_msr(r, c->run);
        }
        return true;
    }
    enum replay_action act = REPLAY_ACT_STOP;
    if (vcpu_get_regs(c, &regs, &err) == 0) {
        act = machine_replay_exit(m, c->run, &regs, &vector, &err);
    }
    while (act == REPLAY_ACT_IDLE) {
        if (!vcpu_wait_if_paused(c)) {
            return false;
        }
        act = machine_replay_idle(m, c->run, &vector, IDLE_POLL_MS, &err);
    }
    if (act == REPLAY_ACT_INJECT && vcpu_inject_interrupt(c, vector, &err) < 0) {
        act = REPLAY_ACT_STOP;
    }
    if (act == REPLAY_ACT_STOP) {
        vm_request_error(&m->vm, &err);
        return false;
    }
    if (act == REPLAY_ACT_END) {
        vm_request(&m->vm, VM_REQ_POWER_OFF, 0);
        return false;
    }
    /* A device ended or reset the run at this exit: no further exit may
     * be recorded (the main loop would stop the vCPU at a random one). */
    if (vm_request_pending(&m->vm)) {
        return false;
    }
    if (machine_replay_at_break(m) || machine_replay_snapshot_due(m)) {
        vm_pause_self(&m->vm);
    }
    return true;
}

static int setup_kvm(struct machine *m, struct error *err)
{
    struct vm *vm = &m->vm;
    replay_kvm_mask_cpuid(vm->cpuid);
    int ret = vcpu_set_cpuid(&vm->vcpus[0], err);
    if (ret == 0) {
        ret = vm_filter_msrs(vm, exit_clock_msrs, exit_clock_nmsrs, err);
    }
    vm->exit_hook = (struct vcpu_exit_hook){ exit_hook, m };
    return ret;
}

int machine_replay_check_config(const struct machine_config *cfg, struct error *err)
{
    if (cfg->cpus != 1) {
        return error_set(err, -EINVAL, "--record/--replay need exactly one vCPU (--cpus 1): the exit count of one "
                         "vCPU is the replay clock");
    }
    if (cfg->net_tap) {
        return error_set(err, -ENOTSUP, "--record/--replay: --net is not supported yet (frames arrive "
                         "asynchronously)");
    }
    bool pci = false;
    for (int i = 0; i < cfg->ndisks; i++) {
        pci = pci || cfg->disks[i].transport == TRANSPORT_PCI;
    }
    for (int i = 0; i < cfg->nrng; i++) {
        pci = pci || cfg->rng[i] == TRANSPORT_PCI;
    }
    for (int i = 0; i < cfg->nvconsole; i++) {
        pci = pci || cfg->vconsole[i] == TRANSPORT_PCI;
    }
    if (pci) {
        return error_set(err, -ENOTSUP, "--record/--replay: virtio devices need transport=mmio (virtio-pci "
                         "interrupts are MSI-X, which needs KVM's in-kernel irqchip)");
    }
    if (cfg->ndisks + cfg->nrng + cfg->nvconsole > MAX_REPLAY_MMIO) {
        return error_set(err, -ENOTSUP, "--record/--replay: at most %d virtio devices", MAX_REPLAY_MMIO);
    }
    if (cfg->console && strncmp(cfg->console, "unix:", 5) == 0) {
        return error_set(err, -ENOTSUP, "--record/--replay: the console must be stdio or a file");
    }
    return 0;
}

int machine_add_replay_devices(struct machine *m, struct error *err)
{
    int ret = machine_replay_check_config(m->cfg, err);
    if (ret < 0) {
        return ret;
    }
    struct machine_replay *r = calloc(1, sizeof(*r));
    if (!r) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    r->snapshot_every = MACHINE_REPLAY_SNAPSHOT_EVERY;
    m->replay = r;
    pic_init(&r->pic);
    pit_init(&r->pit, pic_irq_line(&r->pic, PIT_IRQ));
    if ((ret = machine_add_device(m, "pit", -1, &pit_device_ops, &r->pit, err)) < 0 ||
        (ret = machine_add_device(m, "pic", -1, &pic_device_ops, &r->pic, err)) < 0 ||
        (ret = machine_add_device(m, "replay", -1, &machine_replay_device_ops, r, err)) < 0 ||
        (ret = bus_register(&m->vm.pio, PIT_PORT, 4, pit_read, pit_write, &r->pit, "pit", err)) < 0 ||
        (ret = bus_register(&m->vm.pio, PIC_MASTER_PORT, 2, pic_port_read, pic_port_write, &r->pic.port[0],
                            "pic", err)) < 0 ||
        (ret = bus_register(&m->vm.pio, PIC_SLAVE_PORT, 2, pic_port_read, pic_port_write, &r->pic.port[1],
                            "pic-slave", err)) < 0 ||
        (ret = bus_register(&m->vm.pio, PIC_ELCR_PORT, 2, pic_elcr_read, pic_elcr_write, &r->pic, "elcr",
                            err)) < 0) {
        return ret;
    }
    return m->vm.vm_fd >= 0 ? setup_kvm(m, err) : 0;
}

void machine_replay_free(struct machine *m)
{
    struct machine_replay *r = m->replay;
    if (!r) {
        return;
    }
    if (r->rp) {
        replay_end(r->rp, NULL);
    }
    pic_destroy(&r->pic);
    free(r->file);
    free(r->snap_dir);
    free(r->snap_rel);
    free(r);
    m->replay = NULL;
}
