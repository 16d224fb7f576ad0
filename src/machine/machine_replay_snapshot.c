/* Time travel (issue 13): while recording, a snapshot of the machine every
 * so many exits (the machine's files snapshots, diffs on a full one) in
 * FILE.snap/<exit> beside the log, each referenced from the log at the
 * point it was taken; a replay asked to stop at exit K restores the last
 * one before K and goes on from there instead of from the start.
 *
 * What a snapshot must hold beyond the devices, for the rest of the replay
 * to be the same: the exit clock, the interrupt window the VMM asked KVM for
 * at that exit (kvm_run is no saved state) and which recording and exit it
 * belongs to: the "replay" device below. The log's position is the place of
 * the snapshot's event in it. The writable disks' content at that exit is an
 * internal snapshot of their recording overlays (machine_replay_disks.c). */
#include "machine/machine_replay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "machine/machine_int.h"
#include "util/log.h"

/* Diffs chain back to a full snapshot; restoring reads the whole chain, so
 * every FULL_EVERY-th snapshot is a full one (the machine reads chains of
 * up to 64). */
#define FULL_EVERY 16

/* ---- the "replay" device: what the devices' sections do not hold ---- */

static int replay_save_op(void *dev, struct state_buf *b, struct error *err)
{
    struct machine_replay *r = dev;
    state_put_u64(b, r->recording_id);
    state_put_u64(b, r->rp ? replay_ordinal(r->rp) : 0);
    state_put_u64(b, r->clock.ticks);
    state_put_u64(b, r->clock.tsc_offset);
    state_put_u64(b, r->clock.tsc_adjust);
    state_put_bool(b, r->window);
    return state_buf_error(b, err);
}

static int replay_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    (void)version;
    struct machine_replay *r = dev;
    uint64_t id = state_get_u64(b), ordinal = state_get_u64(b);
    struct exit_clock c = { 0 };
    c.ticks = state_get_u64(b);
    c.tsc_offset = state_get_u64(b);
    c.tsc_adjust = state_get_u64(b);
    bool window = state_get_bool(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        r->snapshot_of.id = id;
        r->snapshot_of.ordinal = ordinal;
        r->clock = c;
        r->window = window;
    }
    return ret;
}

const struct device_ops machine_replay_device_ops = {
    .version = 1,
    .save = replay_save_op,
    .load = replay_load_op,
};

/* ---- record ---- */

static bool all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* disk<digits>.qcow2: a recording's disk overlay (machine_replay_disks.c). */
static bool is_disk_overlay(const char *name)
{
    size_t n = strlen(name);
    if (strncmp(name, "disk", 4) != 0 || n < 11 || strcmp(name + n - 6, ".qcow2") != 0) {
        return false;
    }
    return strspn(name + 4, "0123456789") == n - 10;
}

/* A new recording under an old name: the old recording's snapshots go
 * (only what this file makes: <digits>/{state,memory}, disk<digits>.qcow2,
 * then the directory if nothing else is in it). */
static void clear_snapshot_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (is_disk_overlay(e->d_name)) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
        if (!all_digits(e->d_name)) {
            continue;
        }
        char path[PATH_MAX];
        static const char *const files[] = { "state", "memory", "state.tmp" };
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s/%s", dir, e->d_name, files[i]);
            unlink(path);
        }
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        rmdir(path);
    }
    closedir(d);
    rmdir(dir);
}

void machine_replay_set_snapshot_interval(struct machine *m, uint64_t exits)
{
    if (m->replay) {
        m->replay->snapshot_every = exits;
    }
}

int machine_replay_snapshots_begin(struct machine *m, const char *log_file, struct error *err)
{
    struct machine_replay *r = m->replay;
    if (getrandom(&r->recording_id, sizeof(r->recording_id), 0) != sizeof(r->recording_id)) {
        r->recording_id = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)r;
    }
    if (!r->snapshot_every) {
        return 0;
    }
    const char *slash = strrchr(log_file, '/');
    r->snap_rel = malloc(strlen(slash ? slash + 1 : log_file) + 6);
    r->snap_dir = malloc(strlen(log_file) + 6);
    if (!r->snap_rel || !r->snap_dir) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    sprintf(r->snap_rel, "%s.snap", slash ? slash + 1 : log_file);
    sprintf(r->snap_dir, "%s.snap", log_file);
    r->snapshot_next = r->snapshot_every;
    clear_snapshot_dir(r->snap_dir);
    if (mkdir(r->snap_dir, 0755) < 0) {
        return error_set_errno(err, -errno, "cannot create the snapshot directory '%s'", r->snap_dir);
    }
    return 0;
}

bool machine_replay_snapshot_due(struct machine *m)
{
    struct machine_replay *r = m->replay;
    /* Once: exits the vCPU finishes before it parks must not ask again. */
    if (!r->snapshot_every || replay_mode(r->rp) != REPLAY_RECORD || replay_ordinal(r->rp) < r->snapshot_next ||
        __atomic_load_n(&r->snapshot_wanted, __ATOMIC_ACQUIRE)) {
        return false;
    }
    __atomic_store_n(&r->snapshot_wanted, true, __ATOMIC_RELEASE);
    return true;
}

int machine_replay_snapshot(struct machine *m, struct error *err)
{
    struct machine_replay *r = m->replay;
    uint64_t at = replay_ordinal(r->rp);
    char name[PATH_MAX], path[PATH_MAX + 8];
    snprintf(name, sizeof(name), "%s/%" PRIu64, r->snap_rel, at);
    snprintf(path, sizeof(path), "%s/%" PRIu64, r->snap_dir, at);
    /* A diff only on our own last one (a QMP snapshot meanwhile moved the chain). */
    bool diff = r->snapshots % FULL_EVERY != 0 && strcmp(m->snaps.last_dir, r->last_snapshot) == 0;
    int ret = 0;
    if (mkdir(r->snap_dir, 0755) < 0 && errno != EEXIST) {
        ret = error_set_errno(err, -errno, "cannot create the snapshot directory '%s'", r->snap_dir);
    }
    if (ret == 0) {
        ret = machine_snapshot_files(m, path, diff, err);
    }
    if (ret == 0) {
        ret = machine_replay_snapshot_disks(m, at, err);
    }
    if (ret == 0) {
        ret = replay_note_snapshot(r->rp, r->recording_id, name, err);
    }
    if (ret < 0) {
        error_prefix(err, "the time-travel snapshot at exit %" PRIu64, at);
        r->snapshot_every = 0;      /* no more: the chain may be broken */
        __atomic_store_n(&r->snapshot_wanted, false, __ATOMIC_RELEASE);
        return ret;
    }
    snprintf(r->last_snapshot, sizeof(r->last_snapshot), "%s", m->snaps.last_dir);
    r->snapshots++;
    r->snapshot_next = at + r->snapshot_every;
    __atomic_store_n(&r->snapshot_wanted, false, __ATOMIC_RELEASE);
    return 0;
}

bool machine_replay_snapshot_pause(struct machine *m)
{
    struct machine_replay *r = m->replay;
    if (!r || !__atomic_load_n(&r->snapshot_wanted, __ATOMIC_ACQUIRE)) {
        return false;
    }
    bool running = m->run_state == MACHINE_RUNNING;
    vm_pause(&m->vm);
    machine_quiesce(m);
    struct error err = { 0 };
    if (machine_replay_snapshot(m, &err) < 0) {
        log_warn("--record: %s; no more time-travel snapshots", err.msg);
    }
    if (running) {
        machine_unquiesce(m);
        vm_resume(&m->vm);
    }
    return true;
}

/* ---- replay ---- */

/* The last snapshot the log references before exit `before`: 1 with *ref,
 * 0 when it has none. */
static int find_snapshot(const char *log_file, uint64_t before, struct replay_snapshot_ref *ref, struct error *err)
{
    int fd = open(log_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "--replay '%s'", log_file);
    }
    int ret = replay_find_snapshot(fd, before, ref, err);
    close(fd);
    return ret;
}

/* Restores the machine from the snapshot ref and moves the replay, which is
 * before its first exit, to it. */
static int travel_to(struct machine *m, const char *log_file, const struct replay_snapshot_ref *ref,
                     struct error *err)
{
    struct machine_replay *r = m->replay;
    const char *slash = strrchr(log_file, '/');
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%.*s%s", slash ? (int)(slash - log_file + 1) : 0, log_file,
                         ref->name) >= sizeof(path)) {
        return error_set(err, -ENAMETOOLONG, "the snapshot directory's name is too long");
    }
    r->snapshot_of.id = 0;
    int ret = machine_restore_files(m, path, err);
    if (ret == 0 && (r->snapshot_of.id != ref->id || r->snapshot_of.ordinal != ref->ordinal)) {
        ret = error_set(err, -EINVAL, "it holds exit %" PRIu64 " of another recording", r->snapshot_of.ordinal);
    }
    if (ret == 0) {
        char dir[PATH_MAX];     /* the disk overlays are beside the snapshots */
        const char *end = strrchr(path, '/');
        snprintf(dir, sizeof(dir), "%.*s", end ? (int)(end - path) : 1, end ? path : ".");
        ret = machine_replay_travel_disks(m, dir, ref->ordinal, err);
    }
    if (ret == 0) {
        ret = replay_skip_to_snapshot(r->rp, ref, err);
    }
    if (ret < 0) {
        error_prefix(err, "the snapshot taken at exit %" PRIu64 " ('%s')", ref->ordinal, path);
        return ret;
    }
    pit_set_time(&r->pit, r->clock.ticks);
    machine_forget_snapshot_chain(m);   /* a replay takes no snapshots: no dirty logging */
    if (m->vm.vm_fd >= 0) {
        m->vm.vcpus[0].run->request_interrupt_window = r->window;
    }
    return 0;
}

int machine_replay_travel(struct machine *m, const char *log_file, uint64_t before, struct error *err)
{
    struct replay_snapshot_ref ref;
    int ret = find_snapshot(log_file, before, &ref, err);
    if (ret > 0 && (ret = travel_to(m, log_file, &ref, err)) == 0) {
        log_info("--replay-break %" PRIu64 ": replaying from the snapshot taken at exit %" PRIu64, before,
                 ref.ordinal);
        return 1;
    }
    if (ret < 0) {
        error_prefix(err, "--replay-break %" PRIu64, before);
    }
    return ret;     /* 0: none, from the start */
}

/* Paused: back or forward to the snapshot ref. A failure leaves the
 * machine half restored: the replay is failed, so it cannot go on. */
static int seek_to_snapshot(struct machine *m, const struct replay_snapshot_ref *ref, struct error *err)
{
    struct machine_replay *r = m->replay;
    int ret = replay_rewind(r->rp, err);
    if (ret == 0) {
        ret = travel_to(m, r->file, ref, err);
    }
    if (ret < 0) {
        replay_fail(r->rp, ret, err->msg);
    }
    return ret;
}

static int refuse_seek(uint64_t now, uint64_t icount, struct error *err)
{
    return error_set(err, -ERANGE, "cannot seek to the specified instruction count: the replay is at exit "
                     "%" PRIu64 " and no time-travel snapshot was taken at or before exit %" PRIu64, now, icount);
}

int machine_replay_seek(struct machine *m, uint64_t icount, struct error *err)
{
    struct machine_replay *r = m->replay;
    if (!r || !r->rp || replay_mode(r->rp) != REPLAY_REPLAY) {
        return error_set(err, -EINVAL, "replay must be enabled to seek");
    }
    struct replay_snapshot_ref ref;
    int found = find_snapshot(r->file, icount + 1, &ref, err);
    if (found < 0) {
        return found;
    }
    /* A seek that must be refused leaves a running replay running, as
     * QEMU's does: the exit count only grows, so a count already behind
     * stays behind. */
    if (!found && icount < replay_ordinal(r->rp)) {
        return refuse_seek(replay_ordinal(r->rp), icount, err);
    }
    bool was_running = machine_run_state(m) == MACHINE_RUNNING;
    machine_pause(m);
    uint64_t now = replay_ordinal(r->rp);
    int ret = 0;
    if (found && (icount < now || now < ref.ordinal)) {
        ret = seek_to_snapshot(m, &ref, err);
        now = ret == 0 ? ref.ordinal : now;
    } else if (icount < now) {      /* it ran past icount before it paused */
        ret = refuse_seek(now, icount, err);
        if (was_running) {
            machine_resume(m);
        }
        return ret;
    }
    if (ret < 0 || now == icount) {
        return ret;     /* paused there (or where it failed) */
    }
    __atomic_store_n(&r->break_at, icount, __ATOMIC_RELAXED);
    machine_resume(m);
    return 0;
}
