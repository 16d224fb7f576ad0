/* What each thread hop on a post-copy fault's way costs on this host:
 * the same request/page exchange over socketpairs through a chain of 2, 3
 * or 4 threads, each woken by the one before (a blocking read, as the real
 * threads sleep). 4 is today's path (the faulting thread blocked in the
 * kernel -> fault thread -> source's return-path reader -> destination's
 * preempt receiver -> faulting thread); 3 a faulting thread that sends its
 * own request (UFFD_FEATURE_SIGBUS, or KVM's memory-fault exit) while a
 * receiver installs the page and wakes it; 2 a faulting thread that also
 * reads the page itself. No userfaultfd here: only the wake-ups, the 8-byte
 * request and the 4 KiB page. Rounds interleave the chains so that load
 * changes hit all alike. Usage: postcopy_hops [exchanges] [rounds] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_HOPS 4

struct hop {
    int in, out;        /* reads a message on in, passes it on out */
    size_t in_len, out_len;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int full(int fd, void *buf, size_t len, int out)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = out ? write(fd, (char *)buf + done, len - done) : read(fd, (char *)buf + done, len - done);
        if (n <= 0) {
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static void *relay(void *opaque)
{
    struct hop *h = opaque;
    static __thread uint8_t buf[PAGE];
    while (full(h->in, buf, h->in_len, 0) == 0 && full(h->out, buf, h->out_len, 1) == 0) {
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* threads: 2..4, the faulting thread included. Fills lat[n]. */
static void chain(int threads, int n, uint64_t *lat)
{
    /* Messages: the request (8 bytes) until the source, the page after it. */
    int relays = threads - 1, src_at = threads == 4 ? 1 : 0;
    int fds[MAX_HOPS][2];
    struct hop hops[MAX_HOPS];
    pthread_t t[MAX_HOPS];
    for (int i = 0; i < threads; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]) < 0) {
            perror("socketpair");
            exit(1);
        }
    }
    /* Hop i reads fds[i][1], writes fds[i+1][0]; the faulting thread writes fds[0][0], reads fds[threads-1][1]... */
    for (int i = 0; i < relays; i++) {
        hops[i] = (struct hop){ .in = fds[i][1], .out = fds[i + 1][0], .in_len = i <= src_at ? 8 : PAGE,
                                .out_len = i < src_at ? 8 : PAGE };
        pthread_create(&t[i], NULL, relay, &hops[i]);
    }
    uint8_t page[PAGE];
    uint64_t req = 0;
    for (int k = 0; k < n; k++) {
        uint64_t t0 = now_ns();
        full(fds[0][0], &req, 8, 1);
        full(fds[relays][1], page, PAGE, 0);
        lat[k] = now_ns() - t0;
        usleep(200);        /* the guest runs a little between faults */
    }
    for (int i = 0; i < threads; i++) {
        shutdown(fds[i][0], SHUT_RDWR);
        shutdown(fds[i][1], SHUT_RDWR);
    }
    for (int i = 0; i < relays; i++) {
        pthread_join(t[i], NULL);
    }
    for (int i = 0; i < threads; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000, rounds = argc > 2 ? atoi(argv[2]) : 3;
    uint64_t *lat = calloc((size_t)n, sizeof(*lat));
    char load[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fgets(load, sizeof(load), f)) {
        load[strcspn(load, " ")] = 0;
    }
    if (f) {
        fclose(f);
    }
    printf("post-copy fault path's thread hops: request and 4 KiB page through a chain of threads "
           "(socketpairs), %d exchanges; %ld CPUs, load average %s\n", n, sysconf(_SC_NPROCESSORS_ONLN), load);
    printf("%6s %8s %9s %9s %9s\n", "round", "threads", "p50 us", "p99 us", "max us");
    for (int r = 1; r <= rounds; r++) {
        for (int threads = 4; threads >= 2; threads--) {
            chain(threads, n, lat);
            qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
            printf("%6d %8d %9.1f %9.1f %9.1f\n", r, threads, lat[(n - 1) / 2] / 1e3, lat[(n * 99 + 99) / 100 - 1] / 1e3,
                   lat[n - 1] / 1e3);
        }
    }
    printf("4: today's path; 3: the faulting thread asks itself (SIGBUS / KVM memory-fault exit); "
           "2: it also reads its page\n");
    free(lat);
    return 0;
}
