/* A thread reading the destination's guest RAM through post-copy's
 * self-fetch view as a vCPU would (tests and bench/postcopy_latency): a
 * miss there is a SIGBUS, which returns to the read (as KVM_RUN returns
 * -EFAULT to a vCPU); the thread fetches the page itself and reads again. */
#ifndef TESTS_MIGRATION_VIEW_READER_H
#define TESTS_MIGRATION_VIEW_READER_H

#include <stdint.h>

#include "migration/migration.h"

/* Installs the SIGBUS handler, after the machines (they install theirs,
 * which gets the SIGBUSes that are not a view's miss). */
void view_reader_install(void);
/* The byte at gpa through d's view, fetched on a miss; *fetched counts the
 * fetches. -1: no view, or the fetch failed (post-copy over without it). */
int view_read(struct migration_dest *d, uint64_t gpa, unsigned *fetched);

#endif
