/* A bare machine for tests that run without /dev/kvm: the machine's own
 * device composition (PC devices, ACPI, fw_cfg; with cfg->record_replay the
 * user-space PIT and PIC first) plus a virtio-rng on MMIO, over
 * guest memory of cfg->memory bytes, but no KVM VM. Shared by the machine,
 * migration and replay tests and bench/postcopy_latency. Failures abort
 * with a message. */
#ifndef TESTS_MACHINE_BARE_MACHINE_H
#define TESTS_MACHINE_BARE_MACHINE_H

#include "machine/machine_int.h"

struct machine *bare_machine(const struct machine_config *cfg);
void bare_destroy(struct machine *m);

/* A machine's state (devices, then RAM) in a memfd, as a snapshot holds it. */
struct bare_stream {
    int fd;
    uint64_t size;
};
void bare_save(struct machine *m, struct bare_stream *s);
/* Reads s into m (all of it: devices and RAM); QEMU-style errors in err. */
int bare_load(struct machine *m, struct bare_stream *s, struct error *err);

#endif
