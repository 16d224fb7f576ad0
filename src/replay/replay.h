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
/* replay_advance then replay_exit, under one lock (the vCPU's per-exit call). */
int replay_next_exit(struct replay *rp, const struct replay_exit *e, struct error *err);
/* Replay: does the log have an event of kind at the current ordinal next?
 * (The VMM delivers console input and interrupts only then.) */
bool replay_pending(struct replay *rp, enum replay_event_kind kind);
/* Replay: the log has no event left but how the run ended (its end record
 * was read, or its exit status is next) and nothing diverged: the recorded
 * run ended here. */
bool replay_log_ended(struct replay *rp);
/* An interrupt the VMM injects at this exit: record logs it; replay checks
 * that the log has it here. */
int replay_irq(struct replay *rp, uint32_t line, struct error *err);

/* Block completions name their device by a number: devices named here
 * first (the machine names its virtio devices in slot order, so the number
 * is the same in every process), then others by order of first completion. */
void replay_name_block_device(struct replay *rp, const void *device);

/* ---- time travel: snapshots of the machine referenced from the log ---- */

/* Record: a snapshot of the machine (in directory name, relative to the
 * log's) was taken at this exit and this point of the log; id ties it to
 * this recording. */
int replay_note_snapshot(struct replay *rp, uint64_t id, const char *name, struct error *err);
struct replay_snapshot_ref {
    uint64_t ordinal;               /* the exit it was taken at */
    uint64_t id;
    uint64_t index;                 /* its place among the log's events (from 1) */
    char name[REPLAY_MAX_NAME + 1];
};
/* The last snapshot the log in fd (the caller's; read from its start)
 * references before exit `before`: 1 with *out, 0 when it has none. */
int replay_find_snapshot(int fd, uint64_t before, struct replay_snapshot_ref *out, struct error *err);
/* Replay: takes the log's events up to the snapshot ref as if replayed, so
 * the replay goes on from the exit the snapshot was taken at (the caller
 * restores the machine from it). Before any exit. */
int replay_skip_to_snapshot(struct replay *rp, const struct replay_snapshot_ref *ref, struct error *err);

/* Replay: back to before the first exit (the log read again from its
 * start, a divergence forgotten), for time travel to an earlier snapshot:
 * replay_skip_to_snapshot next. A log that cannot be read again fails the
 * replay. */
int replay_rewind(struct replay *rp, struct error *err);

/* The replay cannot go on (the machine could not follow it): every later
 * exit stops with msg, and replay_end returns it. */
void replay_fail(struct replay *rp, int code, const char *msg);

/* ---- how the run ended ---- */

/* Record: the run ended with status (>= 0: the exit status; < 0: a
 * negative errno, it failed with msg). */
int replay_note_status(struct replay *rp, int status, const char *msg, struct error *err);
/* Replay: the recorded run's end, when the log has it next: 1 with *status
 * and msg (taken); 0 when it has none (a version 1 log). */
int replay_take_status(struct replay *rp, int *status, char *msg, size_t size);

/* 0, or <0 with the first divergence or log error in err. */
int replay_status(struct replay *rp, struct error *err);
/* Ends and frees (call it with the devices quiesced: no seam input may be
 * under way, the observer or feeder goes away here): record writes the end record; replay checks the log was
 * used up (events left over are a divergence). Returns the number of
 * events recorded or replayed, or <0. */
int64_t replay_end(struct replay *rp, struct error *err);

#endif
