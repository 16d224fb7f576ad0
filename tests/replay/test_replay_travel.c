/* Time travel and the recorded run's end (issue 13), without KVM, on the
 * fake exit sequence of fake_exits.h. Between exits a "device" takes host
 * entropy and writes it to guest memory, so memory depends on the log.
 *
 * Recorded with a snapshot every 5 exits (a full one, then diffs on it);
 * a replay with a break at exit 17 restores the snapshot of exit 15 and
 * reaches exit 17 in the very state (every device's saved state, guest RAM,
 * the log's position and event count) a replay from the start has there,
 * then goes on to the end exactly as recorded. A corrupt, missing or
 * foreign snapshot is refused with a message naming it. The recorded exit
 * status comes back from a replay that runs into the log's end; a replay
 * ending by itself with another status diverged. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "../machine/file_damage.h"
#include "fake_exits.h"
#include "vmm/host_input.h"

static const struct machine_config config = { .cpus = 1, .memory = 16ull << 20, .record_replay = true };

#define EVERY 5
#define BREAK_AT 17             /* exit ordinals count from 1: after step 16 */
#define ENTROPY_GPA (2ull << 20)

static char dir[64], log_path[96], snap15[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_replay_travel.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(log_path, sizeof(log_path), "%s/run.log", dir);
    snprintf(snap15, sizeof(snap15), "%s/run.log.snap/15", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* What a machine is at an exit: every device's saved state, RAM, the log. */
struct image {
    struct state_buf devices;
    uint64_t ram_hash;
    uint64_t ordinal, events;
};

static void image_of(struct machine *m, struct image *im)
{
    struct error err = { 0 };
    state_buf_init(&im->devices);
    for (int i = 0; i < m->devices.count; i++) {
        struct registered_device *d = &m->devices.devices[i];
        state_put_bytes(&im->devices, d->name, strlen(d->name) + 1);
        if (d->ops->save && registered_device_save(d, &im->devices, &err) < 0) {
            fail_msg("saving %s: %s", d->name, err.msg);
        }
    }
    const void *ram = guest_memory_ptr(&m->vm.mem, 0, config.memory);
    assert_non_null(ram);
    im->ram_hash = replay_hash(0, ram, config.memory);
    im->ordinal = replay_ordinal(m->replay->rp);
    im->events = replay_events(m->replay->rp);
}

static void assert_same_image(struct image *a, struct image *b)
{
    assert_int_equal(a->ordinal, b->ordinal);
    assert_int_equal(a->events, b->events);
    assert_int_equal(a->devices.len, b->devices.len);
    assert_memory_equal(a->devices.data, b->devices.data, a->devices.len);
    assert_true(a->ram_hash == b->ram_hash);
    state_buf_free(&a->devices);
    state_buf_free(&b->devices);
}

/* As the vCPU goes: a device takes host entropy while the bus handles
 * exit n and writes it to guest memory, then the exit clock counts the exit,
 * then a snapshot is taken when one is due (record). */
static int step(struct machine *m, struct kvm_run *kr, int n, struct trace *t, struct error *err)
{
    if (n % 2 == 0) {
        uint8_t buf[16];
        uint64_t gpa = ENTROPY_GPA + 4096ull * (uint64_t)n;
        assert_int_equal(host_input_entropy(buf, sizeof(buf)), sizeof(buf));
        assert_int_equal(guest_memory_write(&m->vm.mem, gpa, buf, sizeof(buf), err), 0);
        guest_memory_mark_dirty(&m->vm.mem, gpa, sizeof(buf));
    }
    int act = one_exit(m, kr, n, 0, t, err);
    if (act != REPLAY_ACT_STOP && act != REPLAY_ACT_END && machine_replay_snapshot_due(m) &&
        machine_replay_snapshot(m, err) < 0) {
        fail_msg("snapshot: %s", err->msg);
    }
    return act;
}

struct run_result {
    struct trace t;
    struct image at_break;
    bool keep_image;            /* at_break is the caller's to free */
    int64_t events;
    int status;
    struct error err;
};

/* A machine through steps [first, last) (first > 0: after time travel),
 * its image taken after exit BREAK_AT, finished with status (the run's
 * own: it ended there; res->err holds a failure's message). */
static void run_steps(struct machine *m, int first, int last, int status, struct run_result *res)
{
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    memset(&res->t, 0, sizeof(res->t));
    memset(&res->at_break, 0, sizeof(res->at_break));
    int n;
    for (n = first; n < last; n++) {
        int act = step(m, kr, n, &res->t, &res->err);
        if (act == REPLAY_ACT_STOP) {
            fail_msg("exit %d: %s", n + 1, res->err.msg);
        }
        if (act == REPLAY_ACT_END) {
            break;
        }
        if (n + 1 == BREAK_AT && res->keep_image) {
            image_of(m, &res->at_break);
        }
    }
    res->status = n < last ? 0 : status;        /* the log's end: powered off */
    res->events = machine_replay_finish(m, &res->status, &res->err);
    free(kr);
    bare_destroy(m);
}

static void run(struct machine *m, int first, int status, struct run_result *res)
{
    memset(&res->err, 0, sizeof(res->err));
    run_steps(m, first, NSTEPS, status, res);
}

static struct machine *started(enum machine_replay_mode mode, uint64_t break_at, uint64_t every)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    machine_replay_set_snapshot_interval(m, every);
    if (machine_replay_start(m, mode, log_path, NULL, NULL, break_at, &err) < 0) {
        fail_msg("start: %s", err.msg);
    }
    return m;
}

static void record(int status)
{
    struct run_result rec = { 0 };
    run(started(MACHINE_REPLAY_RECORD, 0, EVERY), 0, status, &rec);
    assert_true(rec.events > NSTEPS);
}

static void break_point_replays_from_the_last_snapshot(void **state)
{
    (void)state;
    struct run_result rec = { 0 }, whole = { .keep_image = true }, travel = { .keep_image = true };
    run(started(MACHINE_REPLAY_RECORD, 0, EVERY), 0, 0, &rec);
    for (int k = EVERY; k < NSTEPS; k += EVERY) {
        char path[160];
        snprintf(path, sizeof(path), "%s/run.log.snap/%d/state", dir, k);
        assert_int_equal(access(path, R_OK), 0);
    }
    run(started(MACHINE_REPLAY_PLAY, 0, 0), 0, 0, &whole);
    assert_int_equal(whole.events, rec.events);
    assert_memory_equal(&whole.t, &rec.t, sizeof(rec.t));

    struct machine *m = started(MACHINE_REPLAY_PLAY, BREAK_AT, 0);
    assert_int_equal(replay_ordinal(m->replay->rp), 15);    /* the snapshot of exit 15 (a diff on 10 and 5) */
    run(m, 15, 0, &travel);
    assert_int_equal(travel.err.code, 0);
    assert_same_image(&whole.at_break, &travel.at_break);
    assert_int_equal(travel.events, rec.events);
    for (int n = 15; n < NSTEPS; n++) {
        assert_int_equal(travel.t.action[n], rec.t.action[n]);
        assert_int_equal(travel.t.vector[n], rec.t.vector[n]);
        assert_int_equal(travel.t.read[n], rec.t.read[n]);
        assert_int_equal(travel.t.window[n], rec.t.window[n]);
    }

    /* Before the first snapshot there is none: from the start. */
    whole.keep_image = false;
    m = started(MACHINE_REPLAY_PLAY, 3, 0);
    assert_int_equal(replay_ordinal(m->replay->rp), 0);
    run(m, 0, 0, &whole);
}

static void refused(uint64_t break_at, const char *want1, const char *want2)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    assert_true(machine_replay_start(m, MACHINE_REPLAY_PLAY, log_path, NULL, NULL, break_at, &err) < 0);
    if (!strstr(err.msg, want1) || !strstr(err.msg, want2)) {
        fail_msg("unexpected message: %s", err.msg);
    }
    machine_replay_finish(m, &(int){ 0 }, &err);
    bare_destroy(m);
}

/* Recorded twice: part of the second recording's snapshots ("" for all)
 * replaced by the first one's. */
static void record_with_old(const char *part)
{
    char cmd[400];
    record(0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s/old.snap && cp -r %s/run.log.snap %s/old.snap", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    record(0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s/run.log.snap%s && mv %s/old.snap%s %s/run.log.snap%s", dir, part, dir, part,
             dir, part);
    assert_int_equal(system(cmd), 0);
}

static void bad_snapshots_are_refused(void **state)
{
    (void)state;
    char path[192];
    /* Another recording's snapshots in their place (the same guest, the
     * same exits), or only the diff parent of exit 15's. */
    record_with_old("");
    refused(BREAK_AT, "the snapshot taken at exit 15", "holds exit 15 of another recording");
    record_with_old("/10");
    refused(BREAK_AT, "the snapshot taken at exit 15", "was replaced by another snapshot");

    record(0);
    snprintf(path, sizeof(path), "%s/memory", snap15);
    file_flip_byte(path, ENTROPY_GPA + 4096 * 12 + 3);     /* written between exits 10 and 15 */
    refused(BREAK_AT, "the snapshot taken at exit 15", "checksum");

    record(0);
    snprintf(path, sizeof(path), "%s/state", snap15);
    unlink(path);
    refused(BREAK_AT, "the snapshot taken at exit 15", "cannot open snapshot state");

    /* The log's reference to it damaged: the log itself is refused. */
    record(0);
    snprintf(path, sizeof(path), "%s/run.log", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    file_flip_byte(path, st.st_size / 2);
    refused(BREAK_AT, "replay log corrupt", "checksum mismatch");
}

static void snapshots_are_optional(void **state)
{
    (void)state;
    struct run_result rec = { 0 }, rep = { 0 };
    run(started(MACHINE_REPLAY_RECORD, 0, 0), 0, 0, &rec);
    char path[160];
    snprintf(path, sizeof(path), "%s/run.log.snap", dir);
    assert_int_equal(access(path, F_OK), -1);
    run(started(MACHINE_REPLAY_PLAY, BREAK_AT, 0), 0, 0, &rep);
    assert_int_equal(rep.events, rec.events);
}

/* A snapshot that cannot be written ends the snapshots, not the recording. */
static void a_failed_snapshot_stops_snapshots(void **state)
{
    (void)state;
    struct error err = { 0 };
    char path[160];
    snprintf(path, sizeof(path), "%s/run.log.snap/%d", dir, EVERY);
    struct machine *m = started(MACHINE_REPLAY_RECORD, 0, EVERY);
    FILE *f = fopen(path, "w");     /* in the way of the first snapshot's directory */
    assert_non_null(f);
    fclose(f);
    for (int i = 0; i < EVERY; i++) {
        replay_advance(m->replay->rp);
    }
    assert_true(machine_replay_snapshot_due(m));
    assert_true(machine_replay_snapshot(m, &err) < 0);
    assert_non_null(strstr(err.msg, "the time-travel snapshot at exit 5"));
    for (int i = 0; i < 2 * EVERY; i++) {
        replay_advance(m->replay->rp);
    }
    assert_false(machine_replay_snapshot_due(m));
    assert_int_equal(machine_replay_finish(m, &(int){ 0 }, &err), 0);    /* no inputs, no exits */
    bare_destroy(m);
}

/* The replay exits as the recorded run did. */
static void the_recorded_status_comes_back(void **state)
{
    (void)state;
    struct run_result rec = { 0 }, rep = { 0 };
    /* The guest ended the recording with status 7 at its last exit, and
     * the replay's does the same there. */
    run(started(MACHINE_REPLAY_RECORD, 0, 0), 0, 7, &rec);
    run(started(MACHINE_REPLAY_PLAY, 0, 0), 0, 7, &rep);
    assert_int_equal(rep.events, rec.events);
    assert_int_equal(rep.status, 7);
    /* A replay that ends there with another status diverged. */
    run(started(MACHINE_REPLAY_PLAY, 0, 0), 0, 3, &rep);
    assert_true(rep.events < 0);
    assert_non_null(strstr(rep.err.msg, "diverged at exit 27: the recorded run ended with status 7, this one with "
                                        "status 3"));
    /* A recording stopped by a signal after exit 20: the replay runs into
     * the log's end there and fails as the recording did. */
    memset(&rec.err, 0, sizeof(rec.err));
    error_set(&rec.err, -EINTR, "terminated by signal 2");
    run_steps(started(MACHINE_REPLAY_RECORD, 0, 0), 0, 20, -EINTR, &rec);
    run(started(MACHINE_REPLAY_PLAY, 0, 0), 0, 0, &rep);
    assert_int_equal(rep.events, rec.events);
    assert_int_equal(rep.status, -EINTR);
    assert_string_equal(rep.err.msg, "the recorded run ended here: terminated by signal 2");
    /* Powered off by the guest, the same. */
    run_steps(started(MACHINE_REPLAY_RECORD, 0, 0), 0, 20, 0, &rec);
    run(started(MACHINE_REPLAY_PLAY, 0, 0), 0, 5, &rep);
    assert_int_equal(rep.status, 0);
    assert_int_equal(rep.err.code, 0);
}

/* Drives a replay through steps [first, last): no stop, no end. */
static void replay_steps(struct machine *m, struct kvm_run *kr, int first, int last, struct trace *t)
{
    struct error err = { 0 };
    for (int n = first; n < last; n++) {
        int act = step(m, kr, n, t, &err);
        if (act == REPLAY_ACT_STOP || act == REPLAY_ACT_END) {
            fail_msg("exit %d: %s", n + 1, err.msg);
        }
    }
}

static void seek(struct machine *m, uint64_t icount, uint64_t restored_at)
{
    struct error err = { 0 };
    if (machine_replay_seek(m, icount, &err) < 0) {
        fail_msg("replay-seek %llu: %s", (unsigned long long)icount, err.msg);
    }
    assert_int_equal(replay_ordinal(m->replay->rp), restored_at);
}

/* QMP replay-seek: back to exit 12 from exit 20 (restored from the snapshot
 * of exit 10, then replayed to the break point), forward to 22 (from the
 * snapshot of 20, ahead of the replay), to 23 (no snapshot between: run
 * on); each time in the very state a replay from the start has there. Back
 * before the first snapshot is refused in QEMU's words, and so is a seek
 * while recording. */
static void seek_goes_back_and_forth(void **state)
{
    (void)state;
    struct run_result rec = { 0 };
    struct error err = { 0 };
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    run(started(MACHINE_REPLAY_RECORD, 0, EVERY), 0, 0, &rec);
    struct image ref[NSTEPS + 1], im;
    struct machine *m = started(MACHINE_REPLAY_PLAY, 0, 0);
    struct trace t;
    for (int n = 0; n < 23; n++) {
        replay_steps(m, kr, n, n + 1, &t);
        image_of(m, &ref[n + 1]);
    }
    assert_true(machine_replay_finish(m, &(int){ 0 }, &err) < 0);  /* stopped early: events left */
    bare_destroy(m);

    m = started(MACHINE_REPLAY_PLAY, 0, 0);
    replay_steps(m, kr, 0, 20, &t);
    seek(m, 12, 10);
    replay_steps(m, kr, 10, 12, &t);
    assert_true(machine_replay_at_break(m));
    image_of(m, &im);
    assert_same_image(&ref[12], &im);
    seek(m, 22, 20);
    replay_steps(m, kr, 20, 22, &t);
    assert_true(machine_replay_at_break(m));
    image_of(m, &im);
    assert_same_image(&ref[22], &im);
    seek(m, 23, 22);
    replay_steps(m, kr, 22, 23, &t);
    assert_true(machine_replay_at_break(m));
    image_of(m, &im);
    assert_same_image(&ref[23], &im);
    assert_true(machine_replay_seek(m, 4, &err) < 0);
    assert_non_null(strstr(err.msg, "cannot seek to the specified instruction count"));
    assert_non_null(strstr(err.msg, "no time-travel snapshot was taken at or before exit 4"));
    assert_int_equal(replay_ordinal(m->replay->rp), 23);
    replay_steps(m, kr, 23, NSTEPS, &t);        /* and on to the end, as recorded */
    assert_int_equal(machine_replay_finish(m, &(int){ 0 }, &err), rec.events);
    bare_destroy(m);
    for (int n = 1; n <= 23; n++) {
        if (n != 12 && n != 22 && n != 23) {
            state_buf_free(&ref[n].devices);
        }
    }

    m = started(MACHINE_REPLAY_RECORD, 0, 0);
    assert_true(machine_replay_seek(m, 3, &err) < 0);
    assert_string_equal(err.msg, "replay must be enabled to seek");
    machine_replay_finish(m, &(int){ 0 }, &err);
    bare_destroy(m);
    free(kr);
}

/* A refused replay-seek (back before any snapshot) leaves a running replay
 * running, as QEMU's does; it used to pause it. Found by review. */
static void refused_seek_leaves_replay_running(void **state)
{
    (void)state;
    struct run_result rec = { 0 };
    struct error err = { 0 };
    struct kvm_run *kr = calloc(1, 8192);
    run(started(MACHINE_REPLAY_RECORD, 0, 0), 0, 0, &rec);     /* no time-travel snapshots */
    struct machine *m = started(MACHINE_REPLAY_PLAY, 0, 0);
    struct trace t;
    replay_steps(m, kr, 0, 10, &t);
    m->run_state = MACHINE_RUNNING;
    assert_true(machine_replay_seek(m, 4, &err) < 0);
    assert_int_equal(m->run_state, MACHINE_RUNNING);
    machine_replay_finish(m, &(int){ 0 }, &err);
    bare_destroy(m);
    free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(break_point_replays_from_the_last_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_snapshots_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshots_are_optional, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_snapshot_stops_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(the_recorded_status_comes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(seek_goes_back_and_forth, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_seek_leaves_replay_running, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
