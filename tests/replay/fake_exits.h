/* A fake exit sequence for the exit clock's tests (issue 13), without KVM:
 * a scripted guest whose exits (a kvm_run filled as KVM would, port exits
 * dispatched to the machine's bus as the vCPU loop does) drive
 * machine_replay_exit and machine_replay_idle on a bare machine with the
 * user-space PIT and PIC. The guest programs a periodic PIT, unmasks IRQ 0,
 * reads the counter and the TSC, halts, and takes timer interrupts through
 * interrupt windows. */
#ifndef TESTS_REPLAY_FAKE_EXITS_H
#define TESTS_REPLAY_FAKE_EXITS_H

#include <stdbool.h>
#include <stdint.h>

#include "machine/machine_replay.h"

enum kind { OUT, IN, RDMSR, WRMSR, HLT, WINDOW };

struct step {
    enum kind kind;
    uint32_t port;              /* port or MSR index */
    uint32_t value;             /* OUT / WRMSR */
    bool if_flag;               /* the guest's IF at this exit */
};

#define PIT_PERIOD 36           /* three exits' worth of ticks */

#define NSTEPS 27
extern const struct step script[NSTEPS];

/* What the VMM decided at each exit and what the guest read. */
struct trace {
    int action[NSTEPS];
    uint8_t vector[NSTEPS];
    uint64_t read[NSTEPS];
    bool window[NSTEPS];
};

/* run as KVM fills it for a one-byte port access (in: a read), its data
 * at FAKE_IO_DATA bytes into run. */
#define FAKE_IO_DATA 4096
void fake_io_exit(struct kvm_run *run, bool in, uint16_t port);

/* The vCPU loop's part for exit n of the script (rip_bump: a guest that
 * differs there): the bus, then the exit clock; what happened goes to t. */
int one_exit(struct machine *m, struct kvm_run *run, int n, uint64_t rip_bump, struct trace *t, struct error *err);

#endif
