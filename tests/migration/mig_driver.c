/* One side of a migration between bare machines (no KVM) in its own
 * process, for tests that put the two sides in different places (network
 * namespaces joined by a veth pair: netns_migrate.sh).
 *
 *   mig_driver dest URI               listens on URI, receives, checks
 *   mig_driver source URI [postcopy]  connects (retrying for 10 s), migrates
 *
 * The source's RAM holds a pattern, and a thread plays a guest that keeps
 * incrementing one byte in each page of RANGE, page after page, marking it
 * dirty. Both sides print "ram <crc>" of RAM outside RANGE (the caller
 * compares them); the destination checks QEMU's migration-test invariant
 * on RANGE (every page equals its predecessor except one step down by
 * exactly one) and exits 0 only when it holds. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "../machine/bare_machine.h"
#include "migration/migration.h"

#define MEMORY (64ull << 20)
#define RANGE_BASE (8ull << 20)
#define RANGE_PAGES 4096ull

static const struct machine_config config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

static int guest_stop;

static void *guest_main(void *opaque)
{
    struct machine *m = opaque;
    uint8_t *range = guest_memory_ptr(&m->vm.mem, RANGE_BASE, RANGE_PAGES * 4096);
    for (uint64_t i = 0; !__atomic_load_n(&guest_stop, __ATOMIC_ACQUIRE); i = (i + 1) % RANGE_PAGES) {
        range[i * 4096]++;
        guest_memory_mark_dirty(&m->vm.mem, RANGE_BASE + i * 4096, 1);
        if (i % 32 == 0) {
            usleep(1000);       /* about 30000 pages a second: pre-copy converges */
        }
    }
    return NULL;
}

static pthread_t guest;

/* The migration's stop hook: the guest thread is the vCPU. */
static void stop_guest(void *opaque)
{
    __atomic_store_n(&guest_stop, 1, __ATOMIC_RELEASE);
    pthread_join(guest, NULL);
    machine_pause(opaque);
}

static void print_ram_crc(struct machine *m)
{
    uLong crc = crc32(0, NULL, 0);
    const uint8_t *low = guest_memory_ptr(&m->vm.mem, 0, RANGE_BASE);
    const uint8_t *high = guest_memory_ptr(&m->vm.mem, RANGE_BASE + RANGE_PAGES * 4096,
                                           MEMORY - RANGE_BASE - RANGE_PAGES * 4096);
    crc = crc32(crc, low, RANGE_BASE);
    crc = crc32(crc, high, (uInt)(MEMORY - RANGE_BASE - RANGE_PAGES * 4096));
    printf("ram %08lx\n", crc);
}

static int check_range(struct machine *m)
{
    const uint8_t *p = guest_memory_ptr(&m->vm.mem, RANGE_BASE, RANGE_PAGES * 4096);
    int steps = 0;
    for (uint64_t i = 1; i < RANGE_PAGES; i++) {
        uint8_t prev = p[(i - 1) * 4096], cur = p[i * 4096];
        if (cur != prev && ((uint8_t)(prev - cur) != 1 || ++steps > 1)) {
            fprintf(stderr, "mig_driver: stale page %llu: %u after %u\n", (unsigned long long)i, cur, prev);
            return 1;
        }
    }
    printf("range ok, %d step(s), first byte %u\n", steps, p[0]);
    return 0;
}

static int dest(const char *uri)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    int l = migration_listen(uri, &err);
    if (l < 0) {
        fprintf(stderr, "mig_driver: %s\n", err.msg);
        return 2;
    }
    printf("listening\n");
    fflush(stdout);
    int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    close(l);
    struct migration_dest *d = NULL;
    int ret = 1;
    if (fd < 0 || migration_dest_start(&d, m, fd, NULL, &err) < 0 || migration_dest_wait(d, &err) < 0) {
        fprintf(stderr, "mig_driver: incoming migration failed: %s\n", fd < 0 ? strerror(errno) : err.msg);
    } else {
        ret = check_range(m);
        print_ram_crc(m);
    }
    migration_dest_free(d);
    bare_destroy(m);
    return ret;
}

static int connect_retrying(const char *uri, struct error *err)
{
    for (int i = 0; i < 100; i++) {
        int fd = migration_connect(uri, err);
        if (fd >= 0) {
            return fd;
        }
        usleep(100000);
    }
    return -ETIMEDOUT;
}

static int source(const char *uri, bool postcopy)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    for (uint64_t off = 0; off < MEMORY; off += 4096) {
        /* Not byte 0: the guest's counters in the range start equal. */
        memset(guest_memory_ptr(&m->vm.mem, off, 4096) + 100, (int)(off / 4096 % 7) + 1, 64);
    }
    int fd = connect_retrying(uri, &err);
    if (fd < 0) {
        fprintf(stderr, "mig_driver: %s\n", err.msg);
        return 2;
    }
    pthread_create(&guest, NULL, guest_main, m);
    struct migration_params p;
    migration_params_default(&p);
    p.postcopy_ram = postcopy;
    p.converge.downtime_limit_ms = 5;
    struct migration_hooks h = { .stop = stop_guest, .opaque = m };
    struct migration_source *s = NULL;
    int ret = migration_source_start(&s, m, fd, &p, &h, &err);
    if (ret == 0 && postcopy) {
        usleep(50000);
        ret = migration_source_start_postcopy(s, &err);
    }
    if (ret == 0) {
        ret = migration_source_wait(s, &err);
    }
    if (ret < 0) {
        fprintf(stderr, "mig_driver: migration failed: %s\n", err.msg);
    } else {
        struct migration_stats st;
        migration_source_stats(s, &st);
        printf("completed, %llu bytes, downtime %llu ms\n", (unsigned long long)st.transferred,
               (unsigned long long)st.downtime_ms);
        print_ram_crc(m);
    }
    if (!__atomic_load_n(&guest_stop, __ATOMIC_ACQUIRE)) {
        stop_guest(m);
    }
    migration_source_free(s);
    bare_destroy(m);
    return ret < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "dest") == 0) {
        return dest(argv[2]);
    }
    if (argc >= 3 && strcmp(argv[1], "source") == 0) {
        return source(argv[2], argc > 3 && strcmp(argv[3], "postcopy") == 0);
    }
    fprintf(stderr, "usage: mig_driver dest URI | mig_driver source URI [postcopy]\n");
    return 2;
}
