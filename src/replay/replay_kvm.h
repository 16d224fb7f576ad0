/* The KVM side of record/replay (issue 13), as pure functions the vCPU
 * loop calls: what an exit looks like to the divergence check, and the CPUID
 * a recorded guest may see. No ioctls here, so they are tested without KVM. */
#ifndef REPLAY_REPLAY_KVM_H
#define REPLAY_REPLAY_KVM_H

#include <linux/kvm.h>

#include "replay/replay_log.h"

/* The exit record of a synchronous exit: reason, RIP, a hash of the general
 * registers and, for port I/O and MMIO, the port or address, the size and
 * the value (written by the guest, or, for a read, the value the VMM put
 * in kvm_run: call it after the device answered); for MSR exits the index
 * and the value (all ones when the guest got #GP). The registers are hashed
 * with hash: the log's version's (replay_hash_of). */
void replay_kvm_exit(const struct kvm_run *run, const struct kvm_regs *regs, replay_hash_fn *hash,
                     struct replay_exit *out);

/* Hides what would let the guest read time or randomness behind the VMM's
 * back: kvmclock, steal time and async page faults in KVM's leaf, RDRAND,
 * RDSEED and the invariant TSC. Returns how many bits it cleared. */
int replay_kvm_mask_cpuid(struct kvm_cpuid2 *cpuid);

#endif
