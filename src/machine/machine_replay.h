/* Record/replay on the machine layer (issue 13): the replay log's starting
 * point for a configuration, and the machine's part at each exit. The
 * engine (replay/replay.h) knows nothing of machines; this file binds it. */
#ifndef MACHINE_MACHINE_REPLAY_H
#define MACHINE_MACHINE_REPLAY_H

#include <limits.h>
#include <linux/kvm.h>

#include "hw/i8254.h"
#include "hw/i8259.h"
#include "machine/machine.h"
#include "replay/exit_clock.h"
#include "replay/replay.h"

/* A machine's record/replay part (m->replay). */
struct machine_replay {
    struct replay *rp;              /* NULL until machine_replay_start */
    replay_hash_fn *hash;           /* of the log's version: an exit's registers */
    char *file;
    struct pit pit;
    struct pic pic;
    struct exit_clock clock;
    uint8_t port_b;                 /* port 0x61's writable bits (machine_replay_port_b.c) */
    uint64_t break_at;              /* 0: none (atomic: QMP sets it while the vCPU runs) */
    uint64_t idle_since_ns;         /* record: host time the vCPU went idle (0: not idle) */
    bool console_eof;               /* record: the console's input ended */
    bool window;                    /* the interrupt window asked of KVM at the last exit */
    bool ended_by_log;              /* replay: the log's end stopped the run (REPLAY_ACT_END) */
    /* Time travel (machine_replay_snapshot.c). */
    uint64_t recording_id;          /* record: ties the snapshots to this log */
    uint64_t snapshot_every;        /* record: exits between snapshots (0: none) */
    uint64_t snapshot_next;         /* record: the exit the next one is due at */
    bool snapshot_wanted;           /* record: the vCPU waits for one (atomic) */
    int snapshots;                  /* record: taken so far */
    char *snap_dir, *snap_rel;      /* record: FILE.snap, and relative to the log's directory */
    char last_snapshot[PATH_MAX];   /* record: the last one's directory (the diffs' parent) */
    struct { uint64_t id, ordinal; } snapshot_of;   /* the recording and exit of a restored snapshot */
    /* The writable disks (machine_replay_disks.c), on overlays over these. */
    struct {
        bool overlaid;
        char backing[PATH_MAX];     /* the user's image */
        char format[16];
    } disk[MACHINE_MAX_DISKS];
};

/* Every snapshot of a record/replay machine holds its part (the exit clock,
 * the interrupt window, the recording and exit it was taken at). */
extern const struct device_ops machine_replay_device_ops;
/* Record, at the start: the snapshots' directory (emptied), the recording's id. */
int machine_replay_snapshots_begin(struct machine *m, const char *log_file, struct error *err);
/* Record, on the vCPU after an exit: is a time-travel snapshot due? Then
 * the vCPU parks and the main loop takes it (machine_replay_snapshot_pause). */
bool machine_replay_snapshot_due(struct machine *m);
/* The machine paused at the exit: the snapshot, referenced from the log. */
int machine_replay_snapshot(struct machine *m, struct error *err);
/* Replay, before the first exit: restores the last snapshot before exit
 * `before` and moves the replay to it. 1: done; 0: the log has none (the
 * replay starts from the beginning); <0: refused (a missing, corrupt or
 * foreign snapshot; the machine may be half restored). */
int machine_replay_travel(struct machine *m, const char *log_file, uint64_t before, struct error *err);

/* Each writable disk on a qcow2 overlay over its image, opened read-only:
 * a temporary one (keep_dir NULL), or the recording's, kept in keep_dir
 * for time travel. */
int machine_replay_protect_disks(struct machine *m, const char *keep_dir, struct error *err);
/* Record, at its end: with no time-travel snapshot taken, the recording's
 * overlays are of no use to a replay: they go, and FILE.snap if empty. */
void machine_replay_drop_unused_overlays(struct machine *m);
/* Record, paused at exit at: the overlays' internal snapshots of it. */
int machine_replay_snapshot_disks(struct machine *m, uint64_t at, struct error *err);
/* Replay, paused: each writable disk on a temporary copy of the
 * recording's overlay in snap_dir as it was at exit at. */
int machine_replay_travel_disks(struct machine *m, const char *snap_dir, uint64_t at, struct error *err);

/* Port 0x61's value now (machine_replay_port_b.c). */
uint8_t machine_replay_port_b_value(const struct machine_replay *r);

/* What the vCPU does after an exit. */
enum replay_action {
    REPLAY_ACT_GO,                  /* re-enter the guest */
    REPLAY_ACT_INJECT,              /* inject *vector (KVM_INTERRUPT), then re-enter */
    REPLAY_ACT_IDLE,                /* halted, nothing due yet: call machine_replay_idle */
    REPLAY_ACT_STOP,                /* diverged or the log failed: err says why */
    REPLAY_ACT_END,                 /* replay: the recorded run ended before this exit */
};

/* The exit clock at exit run (the buses already handled it; regs are the
 * vCPU's): answers MSR exits from the clock, counts the exit, moves the
 * PIT, logs or checks the exit record, delivers console input due and
 * decides on an interrupt (asking KVM for an interrupt window when the
 * guest cannot take it now). */
enum replay_action machine_replay_exit(struct machine *m, struct kvm_run *run, const struct kvm_regs *regs,
                                       uint8_t *vector, struct error *err);
/* After the exit: is this the break point's exit? A hit removes it. */
bool machine_replay_at_break(struct machine *m);
/* Halted with nothing to inject: console input due now (record: arriving
 * before the next timer event, waiting at most max_wait_ms of host time;
 * replay: where the log has it), else time jumps to the next timer event. */
enum replay_action machine_replay_idle(struct machine *m, struct kvm_run *run, uint8_t *vector, int max_wait_ms,
                                       struct error *err);

/* The header a log for cfg starts with: hashes of the machine's shape,
 * of the kernel, initrd and firmware contents, and of the disk images'
 * contents. start/name: boot, or --restore DIR / --loadvm NAME; hashed as
 * a log of that version does. */
int machine_replay_header(const struct machine_config *cfg, enum replay_start start, const char *name,
                          uint32_t version, struct replay_header *h, struct error *err);

/* At an exit: console input due now reaches the UART. Record: what the
 * console fd holds (it must be non-blocking), through the seam; replay:
 * what the log has at this exit. */
void machine_replay_console(struct machine *m, struct replay *rp);
/* Record: no console input can come any more (none, or it ended). */
bool machine_replay_console_closed(struct machine *m);

#endif
