/* The cost of time travel (issue 13) without a guest: on a bare
 * record/replay machine with MiB of RAM (written all over, as a guest that
 * ran a while leaves it, or left untouched), a recording's full snapshot,
 * a diff snapshot after 1% of the pages changed, and a replay's travel to
 * the diff (the log scanned, the chain restored and verified, the log taken
 * up to it). Prints seconds and MB/s.
 *   replay_travel_bench MIB DIR [untouched] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/machine/bare_machine.h"
#include "machine/machine_replay.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dirty(struct machine *m, uint64_t size, uint64_t step, uint8_t seed, struct error *err)
{
    uint8_t page[4096];
    for (uint64_t gpa = 8ull << 20; gpa + sizeof(page) <= size; gpa += step) {
        memset(page, (int)(seed + gpa / step), sizeof(page));
        if (guest_memory_write(&m->vm.mem, gpa, page, sizeof(page), err) < 0) {
            return -1;
        }
        guest_memory_mark_dirty(&m->vm.mem, gpa, sizeof(page));
    }
    return 0;
}

static int timed_snapshot(struct machine *m, int exits, double *secs, struct error *err)
{
    for (int i = 0; i < exits; i++) {
        replay_advance(m->replay->rp);
    }
    double t0 = now();
    int ret = machine_replay_snapshot(m, err);
    *secs = now() - t0;
    return ret;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: replay_travel_bench MIB DIR [untouched]\n");
        return 2;
    }
    struct machine_config cfg = { .cpus = 1, .memory = strtoull(argv[1], NULL, 10) << 20, .record_replay = true };
    bool untouched = argc > 3 && strcmp(argv[3], "untouched") == 0;
    char log[4096];
    snprintf(log, sizeof(log), "%s/travel.log", argv[2]);
    struct error err = { 0 };
    double full, diff, travel;
    struct machine *m = bare_machine(&cfg);
    machine_replay_set_snapshot_interval(m, UINT64_MAX);    /* taken by hand below */
    if (machine_replay_start(m, MACHINE_REPLAY_RECORD, log, NULL, NULL, 0, &err) < 0 ||
        (!untouched && dirty(m, cfg.memory, 4096, 1, &err) < 0) || timed_snapshot(m, 10, &full, &err) < 0 ||
        dirty(m, cfg.memory, 4096 * 100, 7, &err) < 0 || timed_snapshot(m, 10, &diff, &err) < 0 ||
        machine_replay_finish(m, &(int){ 0 }, &err) < 0) {
        fprintf(stderr, "record: %s\n", err.msg);
        return 1;
    }
    bare_destroy(m);
    m = bare_machine(&cfg);
    double t0 = now();
    if (machine_replay_start(m, MACHINE_REPLAY_PLAY, log, NULL, NULL, 21, &err) < 0) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return 1;
    }
    travel = now() - t0;
    machine_replay_finish(m, &(int){ 0 }, &err);
    bare_destroy(m);
    double mb = (double)cfg.memory / 1e6;
    printf("%s RAM %llu MiB: full snapshot %.3fs (%.0f MB/s)  diff of 1%% %.3fs  travel to it %.3fs (%.0f MB/s)\n",
           untouched ? "untouched" : "written", (unsigned long long)(cfg.memory >> 20), full, mb / full, diff, travel,
           mb / travel);
    return 0;
}
