/* Post-copy's self-fetch view of guest RAM (migration_selffetch.c): a
 * second mapping whose misses fail at once (SIGBUS, or KVM_RUN -EFAULT)
 * so that the thread that missed asks for its page itself. */
#ifndef MIGRATION_MIGRATION_SELFFETCH_H
#define MIGRATION_MIGRATION_SELFFETCH_H

#include "migration/migration_wire.h"
#include "vmm/guest_memory.h"

struct selffetch;
/* Maps every region of mem a second time and registers the mappings with
 * a SIGBUS-mode userfaultfd; -ENOTSUP (or the kernel's error) when it
 * cannot: post-copy then goes on with the fault thread alone. */
int selffetch_open(struct selffetch **out, const struct guest_memory *mem, struct error *err);
/* A KVM VM: its memory slots move onto the views (the vCPUs paused), and
 * guest memory owns them from then on. -ENOTSUP when KVM cannot say which
 * page a vCPU missed: the vCPUs keep the main mapping (the fault thread). */
int selffetch_give_to_kvm(struct selffetch *sf, struct guest_memory *mem, struct error *err);
/* Where region's view starts. */
uint8_t *selffetch_view(const struct selffetch *sf, int region);
/* Sleeps until bit page of bits (the received pages) is set: 0, -EAGAIN
 * after a recovery (the request may have been lost with the old
 * connection: ask again), or -ECANCELED once the view was released. */
int selffetch_wait(struct selffetch *sf, const uint64_t *bits, uint64_t page);
/* A page was marked received: wakes the waiters, if any. */
void selffetch_placed(struct selffetch *sf);
/* Post-copy recovered: every waiter asks again. */
void selffetch_kick(struct selffetch *sf);
/* Places a zero page at region's page (a page known to be zero). */
int selffetch_fill_zero(struct selffetch *sf, int region, uint64_t page, struct error *err);
/* Post-copy is over: the view becomes ordinary memory (it stays mapped
 * until selffetch_close, for whoever still points at it) and the waiters
 * return. */
void selffetch_release(struct selffetch *sf);
void selffetch_close(struct selffetch *sf);

#endif
