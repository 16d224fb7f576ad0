/* Same-host migration (x-ignore-shared over a UNIX socket) of an idle
 * guest's RAM on bare machines (no KVM needed): the source's memfds pass
 * by SCM_RIGHTS and the destination maps them, so no page is copied. The
 * source's RAM is touched first (every page holds data, as an idle guest's
 * that has run a while); timed from migration_source_start to the
 * destination done, with the source's downtime (guest stopped until the
 * destination runs) and its total-time. Usage: migration_memfd [GiB] [runs] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../tests/machine/bare_machine.h"
#include "migration/migration.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void touch_all(struct machine *m)
{
    for (int i = 0; i < m->vm.mem.count; i++) {
        struct guest_region *r = &m->vm.mem.regions[i];
        for (uint64_t off = 0; off < r->size; off += 4096) {
            r->hva[off] = (uint8_t)(off >> 12) | 1;
        }
    }
}

/* The destination's RAM is the source's: its last page shows it. */
static bool same_ram(struct machine *a, struct machine *b)
{
    const struct guest_region *ra = &a->vm.mem.regions[a->vm.mem.count - 1];
    const struct guest_region *rb = &b->vm.mem.regions[b->vm.mem.count - 1];
    return ra->size == rb->size && rb->hva[ra->size - 4096] == ra->hva[ra->size - 4096] &&
           ra->hva[ra->size - 4096] != 0;
}

/* One migration: wall time in microseconds, or 0 on failure. */
static uint64_t run(uint64_t memory, struct migration_stats *ss)
{
    struct machine_config cfg = { .cpus = 1, .memory = memory };
    struct machine *a = bare_machine(&cfg), *b = bare_machine(&cfg);
    struct error err = { 0 };
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
        perror("socketpair");
        return 0;
    }
    touch_all(a);
    struct migration_params p;
    migration_params_default(&p);
    p.share_memfd = true;
    struct migration_source *s = NULL;
    struct migration_dest *d = NULL;
    uint64_t t0 = now_ns(), us = 0;
    int ret = migration_dest_start(&d, b, fds[1], NULL, &err);
    if (ret == 0 && (ret = migration_source_start(&s, a, fds[0], &p, NULL, &err)) == 0 &&
        (ret = migration_dest_wait(d, &err)) == 0) {
        us = (now_ns() - t0) / 1000;
        ret = migration_source_wait(s, &err);
    }
    if (ret < 0) {
        fprintf(stderr, "migration_memfd: %s\n", err.msg);
        us = 0;
    } else {
        migration_source_stats(s, ss);
        if (!same_ram(a, b)) {
            fprintf(stderr, "migration_memfd: the destination does not see the source's RAM\n");
            us = 0;
        }
    }
    migration_source_free(s);
    migration_dest_free(d);
    bare_destroy(a);
    bare_destroy(b);
    return us;
}

int main(int argc, char **argv)
{
    uint64_t gib = argc > 1 ? strtoull(argv[1], NULL, 10) : 4;
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    printf("same-host memfd migration, bare machines, %llu GiB of touched RAM, UNIX socketpair\n",
           (unsigned long long)gib);
    printf("%4s %12s %12s %14s %14s\n", "run", "wall ms", "downtime ms", "total-time ms", "bytes sent");
    for (int i = 0; i < runs; i++) {
        struct migration_stats ss = { 0 };
        uint64_t us = run(gib << 30, &ss);
        if (!us) {
            return 1;
        }
        printf("%4d %12.2f %12llu %14llu %14llu\n", i + 1, us / 1e3, (unsigned long long)ss.downtime_ms,
               (unsigned long long)ss.total_time_ms, (unsigned long long)ss.transferred);
    }
    printf("target (issue 12): an idle 4 GiB guest in at most 20 ms (Cloud Hypervisor reports 50 ms)\n");
    return 0;
}
