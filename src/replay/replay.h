/* Record and replay of a run (issue 13), on the host-input seam
 * (vmm/host_input.h) and the exit clock.
 *
 * One per process, as the seam's observer is. Record: every host input a
 * device takes is logged with the current exit ordinal, and the VMM logs
 * its exits and the interrupts it injects. Replay: the seam returns the
 * logged inputs instead of reading the host, the VMM's exits are compared
 * with the logged ones, and the first difference is a divergence: an error
 * whose message says "diverged", the exit ordinal, expected and actual.
 *
 * The exit ordinal starts at 0 and is advanced by replay_advance() once per
 * synchronous exit (on a bare machine: once per scripted guest step). */
#ifndef REPLAY_REPLAY_H
#define REPLAY_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "replay/replay_log.h"
#include "util/error.h"

enum replay_mode { REPLAY_OFF, REPLAY_RECORD, REPLAY_REPLAY };

struct replay;

/* Starts recording into fd (taken: closed by replay_end). */
int replay_record_begin(struct replay **out, int fd, const struct replay_header *h, struct error *err);
/* Starts replaying the log in fd (taken) for a machine described by
 * expect: refuses a log recorded from another starting point,
 * configuration, kernel or disk. */
int replay_replay_begin(struct replay **out, int fd, const struct replay_header *expect, struct error *err);

enum replay_mode replay_mode(const struct replay *rp);
uint64_t replay_ordinal(struct replay *rp);
/* Events recorded or replayed so far. */
uint64_t replay_events(struct replay *rp);

/* The exit clock: one more synchronous exit. In replay, an input the log
 * has before the new ordinal that nobody took is a divergence. */
void replay_advance(struct replay *rp);
/* The exit being handled: record logs it, replay compares it. */
int replay_exit(struct replay *rp, const struct replay_exit *e, struct error *err);
/* Replay: does the log have an event of kind at the current ordinal next?
 * (The VMM delivers console input and interrupts only then.) */
bool replay_pending(struct replay *rp, enum replay_event_kind kind);
/* Replay: the log has no event left (its end record was read) and nothing
 * diverged: the recorded run ended here. */
bool replay_log_ended(struct replay *rp);
/* An interrupt the VMM injects at this exit: record logs it; replay checks
 * that the log has it here. */
int replay_irq(struct replay *rp, uint32_t line, struct error *err);

/* 0, or <0 with the first divergence or log error in err. */
int replay_status(struct replay *rp, struct error *err);
/* Ends and frees (call it with the devices quiesced: no seam input may be
 * under way, the observer or feeder goes away here): record writes the end record; replay checks the log was
 * used up (events left over are a divergence). Returns the number of
 * events recorded or replayed, or <0. */
int64_t replay_end(struct replay *rp, struct error *err);

#endif
