/* The VMM's side of one exit in record/replay mode, without KVM (issue 13):
 * a bare machine's port bus dispatch of an exit-heavy guest's port write
 * (port 0x80, as bench/replay.sh's KVM guest does), alone and followed by
 * the exit clock's whole step (machine_replay_exit: exit record with the
 * register hash, PIT, console and interrupt checks, the log write) while
 * recording and while replaying. Prints ns per exit of each and the log's
 * bytes per exit. What it cannot show: the KVM exit itself (the vCPU's
 * round trip, ~1-5 us depending on the host), which every mode pays; add
 * it to both sides to estimate record/plain on a real guest.
 *   replay_exit_bench EXITS DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tests/machine/bare_machine.h"
#include "../tests/replay/fake_exits.h"

static const struct machine_config config = { .cpus = 1, .memory = 16ull << 20, .record_replay = true };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Exits of "outb %al, $0x80" in a loop: the bus, then (mode != OFF) the
 * exit clock. Seconds taken, or < 0. */
static double run(enum machine_replay_mode mode, const char *log, uint64_t exits)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    struct kvm_run *run = calloc(1, 8192);
    if (!run || (mode != MACHINE_REPLAY_OFF && machine_replay_start(m, mode, log, NULL, NULL, 0, &err) < 0)) {
        fprintf(stderr, "start: %s\n", err.msg);
        return -1;
    }
    fake_io_exit(run, false, 0x80);
    struct kvm_regs regs = { .rip = 0x100000, .rflags = 2 };
    uint8_t *data = (uint8_t *)run + FAKE_IO_DATA, vector;
    double t0 = now();
    for (uint64_t n = 0; n < exits; n++) {
        regs.rcx = exits - n;       /* the loop counter: every register hash differs */
        bus_write(&m->vm.pio, 0x80, data, 1);
        if (mode != MACHINE_REPLAY_OFF && machine_replay_exit(m, run, &regs, &vector, &err) != REPLAY_ACT_GO) {
            fprintf(stderr, "exit %llu: %s\n", (unsigned long long)n + 1, err.msg);
            return -1;
        }
    }
    double t = now() - t0;
    if (mode != MACHINE_REPLAY_OFF && machine_replay_finish(m, &(int){ 0 }, &err) < 0) {
        fprintf(stderr, "finish: %s\n", err.msg);
        return -1;
    }
    free(run);
    bare_destroy(m);
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: replay_exit_bench EXITS DIR\n");
        return 2;
    }
    uint64_t exits = strtoull(argv[1], NULL, 10);
    char log[4096];
    snprintf(log, sizeof(log), "%s/exits.log", argv[2]);
    double plain = run(MACHINE_REPLAY_OFF, log, exits);
    double rec = run(MACHINE_REPLAY_RECORD, log, exits);
    struct stat st;
    if (plain < 0 || rec < 0 || stat(log, &st) < 0) {
        return 1;
    }
    double rep = run(MACHINE_REPLAY_PLAY, log, exits);
    unlink(log);
    if (rep < 0) {
        return 1;
    }
    double ns = 1e9 / (double)exits;
    printf("exit path, %llu port-write exits: bus only %.0f ns/exit  record %.0f ns/exit (+%.0f)  "
           "replay %.0f ns/exit (+%.0f)  log %.1f bytes/exit  replay/record %.2f\n", (unsigned long long)exits,
           plain * ns, rec * ns, (rec - plain) * ns, rep * ns, (rep - plain) * ns, (double)st.st_size / (double)exits,
           rep / rec);
    return 0;
}
