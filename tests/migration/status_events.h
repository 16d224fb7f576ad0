/* The MIGRATION events of one migration side, for the fuzz tests'
 * harnesses: how often it paused (post-copy; the status alone stays
 * paused for a while after a resume began, so counting is what tells a
 * new pause) and whether it ended (completed, failed, cancelled). The
 * harness waits on them instead of polling the status: on a loaded host
 * every look costs a scheduling delay. One side at a time. */
#ifndef TESTS_MIGRATION_STATUS_EVENTS_H
#define TESTS_MIGRATION_STATUS_EVENTS_H

#include "migration/migration.h"

/* The hooks' status callback. */
void status_events_hook(void *opaque, enum migration_status st);
/* Before a migration starts: no pause, not ended. */
void status_events_reset(void);
/* Waits up to ms for the side to end or to have paused more than seen
 * times: 1 ended, 0 paused, -1 neither by then. */
int status_events_wait(int seen, long ms);

#endif
