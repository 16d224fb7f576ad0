/* The replay log's header hashes every disk image (issue 13): the cost of
 * hashing one image as a version 3 log does (XXH3 streamed over 1 MiB reads)
 * and as version 2 did (a byte at a time over 64 KiB reads), page cache
 * warm (read once before). Prints seconds, MB/s and the ratio.
 *   replay_hash_bench IMAGE */
#include <stdio.h>
#include <time.h>

#include "replay/replay_log.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds to hash path as a log of this version, or < 0. */
static double timed(const char *path, uint32_t version, uint64_t *bytes)
{
    struct error err = { 0 };
    uint64_t h;
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) < 0) {
        perror(path);
        return -1;
    }
    *bytes = (uint64_t)ftell(f);
    fclose(f);
    double t0 = now();
    if (replay_hash_file(path, version, &h, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: replay_hash_bench IMAGE\n");
        return 2;
    }
    uint64_t bytes;
    if (timed(argv[1], REPLAY_LOG_VERSION, &bytes) < 0) {     /* warms the page cache */
        return 1;
    }
    double v3 = timed(argv[1], REPLAY_LOG_VERSION, &bytes), v2 = timed(argv[1], 2, &bytes);
    if (v3 < 0 || v2 < 0) {
        return 1;
    }
    double mb = (double)bytes / 1e6;
    printf("disk hash of a %.0f MiB image: version 3 (XXH3) %.3f s %.0f MB/s  version 2 (byte-wise) %.3f s "
           "%.0f MB/s  v2/v3 %.1fx\n", (double)bytes / (1 << 20), v3, mb / v3, v2, mb / v2, v2 / v3);
    return 0;
}
