/* The replay log's cost without a guest (issue 13): an exit stream shaped
 * like an idle guest (halts, a timer interrupt every 10th exit) and like a
 * busy one (also clock reads, entropy, console bytes, block completions),
 * recorded through the engine and the host-input seam as the VMM does, then
 * replayed from the file with every exit checked. Prints bytes per exit and
 * the engine's record and replay rates (exits/s, MB/s).
 *   replay_log_bench EXITS DIR */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "replay/replay.h"
#include "vmm/host_input.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One exit n of a profile: the inputs devices take at it, its record and
 * the interrupt. Identical in record and replay. */
static int one_exit(struct replay *rp, uint64_t n, bool busy, int console_fd, struct error *err)
{
    replay_advance(rp);
    if (busy) {
        uint8_t buf[64];
        if (n % 4 == 0) {
            (void)host_input_clock();
        }
        if (n % 16 == 0) {
            (void)host_input_entropy(buf, sizeof(buf));
        }
        if (n % 50 == 0) {
            (void)host_input_console(console_fd, buf, 1);
        }
        if (n % 8 == 0) {
            host_input_block_completion(&n, (uint16_t)(n % 128), 4096);
        }
    }
    struct replay_exit e = {
        .reason = busy ? 2 : 5, .size = 1, .rip = 0x100000 + (n % 64) * 3, .reg_hash = n * 0x9e3779b97f4a7c15ull,
        .addr = 0x3f8, .value = n & 0xff,
    };
    if (replay_exit(rp, &e, err) < 0) {
        return -1;
    }
    return n % 10 == 0 ? replay_irq(rp, 0x20, err) : 0;
}

static int profile(const char *dir, bool busy, uint64_t exits)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.log", dir, busy ? "busy" : "idle");
    struct replay_header h = { .version = REPLAY_LOG_VERSION };
    struct error err = { 0 };
    struct replay *rp;
    int cons[2];
    if (pipe(cons) < 0) {
        return -1;
    }
    fcntl(cons[0], F_SETFL, O_NONBLOCK);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || replay_record_begin(&rp, fd, &h, &err) < 0) {
        fprintf(stderr, "record: %s\n", err.msg);
        return -1;
    }
    double t0 = now();
    for (uint64_t n = 1; n <= exits; n++) {
        if (busy && n % 50 == 0 && write(cons[1], "k", 1) != 1) {
            return -1;
        }
        if (one_exit(rp, n, busy, cons[0], &err) < 0) {
            fprintf(stderr, "record: %s\n", err.msg);
            return -1;
        }
    }
    int64_t events = replay_end(rp, &err);
    double t_rec = now() - t0;
    struct stat st;
    stat(path, &st);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (events < 0 || fd < 0 || replay_replay_begin(&rp, fd, &h, &err) < 0) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return -1;
    }
    t0 = now();
    for (uint64_t n = 1; n <= exits; n++) {
        if (one_exit(rp, n, busy, -1, &err) < 0) {
            fprintf(stderr, "replay: %s\n", err.msg);
            return -1;
        }
    }
    int64_t replayed = replay_end(rp, &err);
    double t_rep = now() - t0;
    if (replayed != events) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return -1;
    }
    double mb = (double)st.st_size / 1e6;
    printf("%-5s %8llu exits %9lld events %8.1f bytes/exit  record %6.2f Mexits/s %7.1f MB/s  "
           "replay %6.2f Mexits/s %7.1f MB/s  replay/record time %.2f\n", busy ? "busy" : "idle",
           (unsigned long long)exits, (long long)events, (double)st.st_size / (double)exits,
           (double)exits / t_rec / 1e6, mb / t_rec, (double)exits / t_rep / 1e6, mb / t_rep, t_rep / t_rec);
    close(cons[0]);
    close(cons[1]);
    unlink(path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: replay_log_bench EXITS DIR\n");
        return 2;
    }
    uint64_t exits = strtoull(argv[1], NULL, 10);
    return profile(argv[2], false, exits) < 0 || profile(argv[2], true, exits) < 0 ? 1 : 0;
}
