/* Live migration between two bare machines in one process (the machine's
 * real device composition over guest memory, no KVM VM), over socketpairs,
 * TCP and UNIX sockets. A thread plays the guest: it increments one byte
 * in every page of a range, page after page, at a chosen rate, and marks
 * what it wrote dirty as KVM's dirty log would. After a migration the
 * destination's range must hold QEMU's migration-test invariant: every
 * page equals its predecessor, except at most one step down by exactly
 * one (where the guest stopped); anything else is a stale page. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "machine/machine_int.h"
#include "machine/machine_state.h"
#include "migration/migration.h"
#include "migration/migration_wire.h"
#include "util/bswap.h"
#include "util/log.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_rng.h"
#include "view_reader.h"

#define MEMORY (32ull << 20)
#define RANGE_BASE (4ull << 20)
#define RANGE_PAGES 2048u           /* 8 MiB the guest keeps writing */

static const struct machine_config bare_config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};
static const struct machine_config small_config = {
    .cpus = 1, .memory = MEMORY / 2, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

/* Device state a guest would have left, and data outside the range. */
static void use_devices(struct machine *m)
{
    uart_write(&m->uart, 7, 1, 0x5a);
    cmos_rtc_write(&m->rtc, 0, 1, 0x40);
    cmos_rtc_write(&m->rtc, 1, 1, 0xa5);
    uint8_t *p = guest_memory_ptr(&m->vm.mem, 0x200000, 8 * 4096);
    for (int i = 0; i < 8 * 4096; i++) {
        p[i] = (uint8_t)(i * 7 + 1);
    }
}

/* What the destination had before (a boot image): must not survive. */
static void scribble(struct machine *m)
{
    uint8_t *p = guest_memory_ptr(&m->vm.mem, 0x100000, 64 * 4096);
    memset(p, 0xee, 64 * 4096);
}

static bool same_device(struct machine *a, struct machine *b, const char *name)
{
    struct error err = { 0 };
    struct state_buf sa, sb;
    state_buf_init(&sa);
    state_buf_init(&sb);
    assert_int_equal(registered_device_save(device_registry_find(&a->devices, name), &sa, &err), 0);
    assert_int_equal(registered_device_save(device_registry_find(&b->devices, name), &sb, &err), 0);
    bool same = sa.len == sb.len && memcmp(sa.data, sb.data, sa.len) == 0;
    state_buf_free(&sa);
    state_buf_free(&sb);
    return same;
}

/* ---- the simulated guest ---- */

struct sim_guest {
    struct machine *m;
    uint64_t rate;              /* pages per second, 0: as fast as it can */
    uint64_t pos;               /* the next page it increments */
    int stop;
    bool running;
    pthread_t t;
    uint64_t writes;
    uint64_t max_ns;            /* the longest single write (a post-copy fault) */
    int throttle;               /* percent of its time it sleeps (auto-converge) */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One write of the guest: the next page goes up by one. */
static void sim_step(struct sim_guest *g)
{
    uint8_t *base = guest_memory_ptr(&g->m->vm.mem, RANGE_BASE, RANGE_PAGES * 4096ull);
    uint64_t t = now_ns();
    base[g->pos * 4096]++;
    guest_memory_mark_dirty(&g->m->vm.mem, RANGE_BASE + g->pos * 4096, 1);
    t = now_ns() - t;
    g->max_ns = t > g->max_ns ? t : g->max_ns;
    g->pos = (g->pos + 1) % RANGE_PAGES;
    g->writes++;
}

static void *sim_main(void *opaque)
{
    struct sim_guest *g = opaque;
    uint64_t t0 = now_ns(), n = 0;
    /* The machine's vCPU 0 (a bare machine has no thread of its own):
     * its post-copy faults count as that vCPU's blocktime. */
    __atomic_store_n(&g->m->vm.vcpus[0].tid, gettid(), __ATOMIC_RELAXED);
    while (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
        sim_step(g);
        if (g->rate && ++n % 16 == 0) {
            /* Throttled, each write takes 100/(100-throttle) of its time. */
            int th = __atomic_load_n(&g->throttle, __ATOMIC_ACQUIRE);
            uint64_t due = n * 1000000000ull / g->rate * 100 / (uint64_t)(100 - th), spent = now_ns() - t0;
            if (due > spent) {
                struct timespec ts = { 0, (long)(due - spent < 50000000 ? due - spent : 50000000) };
                nanosleep(&ts, NULL);
            }
        }
    }
    return NULL;
}

static void sim_start(struct sim_guest *g)
{
    if (g->running) {
        return;
    }
    __atomic_store_n(&g->stop, 0, __ATOMIC_RELEASE);
    assert_int_equal(pthread_create(&g->t, NULL, sim_main, g), 0);
    g->running = true;
}

static void sim_stop(struct sim_guest *g)
{
    if (!g->running) {
        return;
    }
    __atomic_store_n(&g->stop, 1, __ATOMIC_RELEASE);
    pthread_join(g->t, NULL);
    g->running = false;
}

/* The source's hooks: the guest thread is its vCPU. */
struct side {
    struct sim_guest guest;
    int stops, starts;
    enum migration_status last;
    int passes;
    struct sim_guest *handoff;      /* destination: the source's guest, to go on from */
    int max_throttle;
    int cut_fd;                     /* >= 0: cut the connection as post-copy begins */
    int channel_fd;                 /* post-copy preempt: the second connection to hand over */
    bool dirty_every_pass;          /* a page dirty at every pass's end, however little the guest ran */
};

static void src_stop(void *opaque)
{
    struct side *s = opaque;
    bool was_running = s->guest.running;
    sim_stop(&s->guest);
    if (was_running) {
        /* A last write as it stops, as a vCPU has: the stop always finds a
         * page dirty, however little the guest thread ran on a loaded host
         * since the last pass (the downtime's bytes are then never 0). */
        sim_step(&s->guest);
    }
    machine_pause(s->guest.m);
    s->stops++;
}

static void src_start(void *opaque)
{
    struct side *s = opaque;
    machine_resume(s->guest.m);
    sim_start(&s->guest);
    s->starts++;
}

/* Auto-converge: the guest thread gets (100 - percent)% of its time. */
static void src_throttle(void *opaque, int percent)
{
    struct side *s = opaque;
    __atomic_store_n(&s->guest.throttle, percent, __ATOMIC_RELEASE);
    s->max_throttle = percent > s->max_throttle ? percent : s->max_throttle;
}

static void on_status(void *opaque, enum migration_status st)
{
    struct side *s = opaque;
    s->last = st;
    if (st == MIGRATION_POSTCOPY_ACTIVE && s->cut_fd >= 0) {
        shutdown(s->cut_fd, SHUT_RDWR);
        s->cut_fd = -1;     /* once: the number may be reused */
    }
}

static void on_pass(void *opaque, uint64_t pass)
{
    struct side *s = opaque;
    s->passes++;
    if (s->dirty_every_pass) {
        guest_memory_mark_dirty(&s->guest.m->vm.mem, RANGE_BASE, 1);
    }
}

/* The destination's guest goes on where the source's stopped. */
static void dst_start(void *opaque)
{
    struct side *s = opaque;
    s->starts++;
    if (s->handoff) {
        s->guest.pos = s->handoff->pos;
        sim_start(&s->guest);
    }
}

static struct migration_hooks src_hooks(struct side *s)
{
    return (struct migration_hooks){ .stop = src_stop, .start = src_start, .status = on_status, .pass = on_pass,
                                     .throttle = src_throttle, .opaque = s };
}

static struct migration_hooks dst_hooks(struct side *s)
{
    return (struct migration_hooks){ .start = dst_start, .status = on_status, .opaque = s };
}

/* ---- checks ---- */

/* QEMU's migration-test check of the range; returns the number of steps. */
static int assert_no_stale_page(struct machine *m)
{
    uint8_t *p = guest_memory_ptr(&m->vm.mem, RANGE_BASE, RANGE_PAGES * 4096ull);
    int steps = 0;
    for (unsigned i = 1; i < RANGE_PAGES; i++) {
        uint8_t prev = p[(i - 1) * 4096], cur = p[i * 4096];
        if (cur == prev) {
            continue;
        }
        if ((uint8_t)(prev - cur) != 1 || ++steps > 1) {
            fail_msg("stale page %u: %u after %u", i, cur, prev);
        }
    }
    return steps;
}

static void assert_same_ram(struct machine *a, struct machine *b)
{
    for (int i = 0; i < a->vm.mem.count; i++) {
        struct guest_region *ra = &a->vm.mem.regions[i], *rb = &b->vm.mem.regions[i];
        for (uint64_t off = 0; off < ra->size; off += 4096) {
            if (memcmp(ra->hva + off, rb->hva + off, 4096) != 0) {
                fail_msg("page 0x%llx differs", (unsigned long long)(ra->gpa + off));
            }
        }
    }
}

/* ---- connections ---- */

static void socket_pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

/* Through migration_listen/connect: fds[0] the source's, fds[1] the
 * destination's. */
static void uri_pair(const char *uri, int fds[2])
{
    struct error err = { 0 };
    int l = migration_listen(uri, &err);
    if (l < 0) {
        fail_msg("listen %s: %s", uri, err.msg);
    }
    char real[128];
    snprintf(real, sizeof(real), "%s", uri);
    if (strncmp(uri, "tcp:", 4) == 0) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
        snprintf(real, sizeof(real), "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
    }
    fds[0] = migration_connect(real, &err);
    if (fds[0] < 0) {
        fail_msg("connect %s: %s", real, err.msg);
    }
    fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fds[1] >= 0);
    close(l);
}

/* ---- one migration ---- */

struct run {
    struct machine *a, *b;
    struct side src, dst;
    struct migration_params p;
    struct migration_source *s;
    struct migration_dest *d;
    struct migration_stats ss, ds;
    int sret, dret;
    struct error serr, derr;
};

static void run_init(struct run *r, const struct machine_config *dst_cfg, uint64_t guest_rate)
{
    memset(r, 0, sizeof(*r));
    r->a = bare_machine(&bare_config);
    r->b = bare_machine(dst_cfg);
    use_devices(r->a);
    scribble(r->b);
    r->src.guest = (struct sim_guest){ .m = r->a, .rate = guest_rate };
    r->dst.guest = (struct sim_guest){ .m = r->b, .rate = guest_rate };
    r->src.cut_fd = r->dst.cut_fd = -1;
    migration_params_default(&r->p);
    sim_start(&r->src.guest);
}

static void run_start(struct run *r, int fds[2])
{
    struct error err = { 0 };
    struct migration_hooks sh = src_hooks(&r->src), dh = dst_hooks(&r->dst);
    assert_int_equal(migration_dest_start(&r->d, r->b, fds[1], &dh, &err), 0);
    assert_int_equal(migration_source_start(&r->s, r->a, fds[0], &r->p, &sh, &err), 0);
}

static void run_wait(struct run *r)
{
    r->sret = migration_source_wait(r->s, &r->serr);
    r->dret = migration_dest_wait(r->d, &r->derr);
    migration_source_stats(r->s, &r->ss);
    migration_dest_stats(r->d, &r->ds);
    sim_stop(&r->dst.guest);
}

static void run_free(struct run *r)
{
    sim_stop(&r->src.guest);
    sim_stop(&r->dst.guest);
    migration_source_free(r->s);
    migration_dest_free(r->d);
    bare_destroy(r->a);
    bare_destroy(r->b);
}

static void assert_completed(struct run *r)
{
    if (r->sret < 0 || r->dret < 0) {
        fail_msg("migration failed: source: %s; destination: %s", r->serr.msg, r->derr.msg);
    }
    assert_int_equal(r->ss.status, MIGRATION_COMPLETED);
    assert_int_equal(r->ds.status, MIGRATION_COMPLETED);
    assert_int_equal(r->src.last, MIGRATION_COMPLETED);
    assert_int_equal(r->dst.starts, 1);
    assert_int_equal(machine_run_state(r->a), MACHINE_PAUSED);   /* postmigrate */
    assert_true(same_device(r->a, r->b, "uart"));
    assert_true(same_device(r->a, r->b, "cmos-rtc"));
    assert_true(same_device(r->a, r->b, "virtio.0"));
}

/* ---- pre-copy ---- */

/* Every byte on the wire is a page's (gpa and data, or the gpa alone for
 * a zero page), its batch's framing, or the fixed part (setup, config,
 * device state, end: ~1 KiB for a bare machine). Batches are full but for
 * at most one per pass, so the bound holds however many passes a loaded
 * host makes: the flat 1 MiB allowance of before ran out after ~600000
 * re-sent pages (1.75 bytes of framing each), which a run that does not
 * converge for a while (the measured bandwidth below the guest's 80 MB/s
 * of dirty pages) reaches. */
static void assert_wire_bytes(const struct migration_stats *st)
{
    const uint64_t framing = VMSTATE_SECTION_HEADER_SIZE + 8, fixed_max = 64 << 10;
    uint64_t pages = st->normal + st->duplicate;
    uint64_t page_bytes = st->normal * (8 + GUEST_PAGE_SIZE) + st->duplicate * 8;
    uint64_t batches_min = (pages + MIG_BATCH_PAGES - 1) / MIG_BATCH_PAGES;
    assert_true(st->transferred >= page_bytes + batches_min * framing);
    assert_true(st->transferred <= page_bytes + (batches_min + st->dirty_sync_count + 1) * framing + fixed_max);
}

static void precopy_over(int fds[2])
{
    struct run r;
    run_init(&r, &bare_config, 20000);
    r.p.max_bandwidth = 256ull << 20;
    r.p.converge.downtime_limit_ms = 20;
    run_start(&r, fds);
    run_wait(&r);
    assert_completed(&r);
    assert_same_ram(r.a, r.b);
    assert_no_stale_page(r.b);
    /* Zero pages go as flags only: far less than guest RAM on the wire. */
    assert_true(r.ss.duplicate > (MEMORY / 4096) / 2);
    assert_true(r.ss.normal >= RANGE_PAGES);
    assert_wire_bytes(&r.ss);
    assert_true(r.ss.dirty_sync_count >= 1);
    assert_int_equal(r.src.passes, (int)r.ss.dirty_sync_count);
    assert_true(r.ss.remaining == 0);
    /* QEMU's byte counts by phase: the guest ran while most went; the
     * last pass went during the downtime; nothing after. */
    assert_true(r.ss.precopy_bytes > r.ss.downtime_bytes && r.ss.downtime_bytes > 0);
    assert_int_equal(r.ss.postcopy_bytes, 0);
    assert_true(r.ss.precopy_bytes + r.ss.downtime_bytes <= r.ss.transferred);
    assert_true(r.ss.pages_per_second > 0);
    print_message("pre-copy: %llu passes, %llu bytes, %llu data pages, %llu zero pages, downtime %llu ms, "
                  "total %llu ms\n", (unsigned long long)r.ss.dirty_sync_count, (unsigned long long)r.ss.transferred,
                  (unsigned long long)r.ss.normal, (unsigned long long)r.ss.duplicate,
                  (unsigned long long)r.ss.downtime_ms, (unsigned long long)r.ss.total_time_ms);
    run_free(&r);
}

static void test_precopy_socketpair(void **state)
{
    int fds[2];
    socket_pair(fds);
    precopy_over(fds);
}

static void test_precopy_tcp(void **state)
{
    int fds[2];
    uri_pair("tcp:127.0.0.1:0", fds);
    precopy_over(fds);
}

static void test_precopy_unix(void **state)
{
    char path[64];
    int fds[2];
    snprintf(path, sizeof(path), "unix:/tmp/cowvisor-mig-%d.sock", getpid());
    uri_pair(path, fds);
    unlink(path + 5);
    precopy_over(fds);
}

/* A guest dirtying faster than the link passes more than once, and
 * max-bandwidth holds: the bytes took at least bytes/limit. */
static void test_precopy_bandwidth_limit(void **state)
{
    struct run r;
    int fds[2];
    socket_pair(fds);
    run_init(&r, &bare_config, 4000);
    r.p.max_bandwidth = 32ull << 20;
    r.p.converge.downtime_limit_ms = 5;
    run_start(&r, fds);
    run_wait(&r);
    assert_completed(&r);
    assert_same_ram(r.a, r.b);
    assert_no_stale_page(r.b);
    uint64_t min_ms = r.ss.transferred * 1000 / r.p.max_bandwidth;
    assert_true(r.ss.total_time_ms + 5 >= min_ms * 8 / 10);
    assert_true(r.ss.dirty_sync_count >= 2);
    run_free(&r);
}

/* Auto-converge: a guest that dirties faster than the link never fits the
 * downtime limit unthrottled; the throttle rises until it does. */
static void test_auto_converge(void **state)
{
    struct run r;
    int fds[2];
    socket_pair(fds);
    run_init(&r, &bare_config, 40000);              /* 160 MB/s of dirty pages */
    r.p.max_bandwidth = 64ull << 20;
    r.p.converge.downtime_limit_ms = 10;
    r.p.converge.auto_converge = true;
    r.p.converge.throttle_initial = 20;
    r.p.converge.throttle_increment = 20;
    run_start(&r, fds);
    run_wait(&r);
    assert_completed(&r);
    assert_same_ram(r.a, r.b);
    assert_no_stale_page(r.b);
    assert_true(r.src.max_throttle >= 20);
    assert_int_equal(r.src.guest.throttle, 0);      /* lifted at the end */
    print_message("auto-converge: throttle up to %d%%, %llu passes, downtime %llu ms\n", r.src.max_throttle,
                  (unsigned long long)r.ss.dirty_sync_count, (unsigned long long)r.ss.downtime_ms);
    run_free(&r);
}

/* Waits until the source has done passes dirty-log passes (or ended). */
static void wait_passes(struct run *r, uint64_t passes)
{
    struct migration_stats st;
    for (int i = 0; i < 3000; i++) {
        migration_source_stats(r->s, &st);
        if (st.dirty_sync_count >= passes || migration_source_done(r->s)) {
            return;
        }
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
}

/* migrate-set-parameters reaches a running migration, as in QEMU: with
 * downtime-limit 0 a guest that keeps writing never lets pre-copy stop
 * (each pass finds a page dirty, even when the guest thread did not run
 * on a loaded host); raised meanwhile, the migration completes on its next
 * pass. */
static void test_downtime_limit_raised_while_running(void **state)
{
    struct run r;
    struct error err = { 0 };
    int fds[2];
    socket_pair(fds);
    run_init(&r, &bare_config, 20000);
    r.p.max_bandwidth = 64ull << 20;
    r.p.converge.downtime_limit_ms = 0;
    r.src.dirty_every_pass = true;
    run_start(&r, fds);
    wait_passes(&r, 4);
    assert_false(migration_source_done(r.s));
    struct migration_stats st;
    migration_source_stats(r.s, &st);
    assert_int_equal(st.status, MIGRATION_ACTIVE);
    assert_true(st.dirty_sync_count >= 4);
    /* Out of range: refused, the migration goes on unchanged. */
    struct migration_params p = r.p;
    p.converge.downtime_limit_ms = CONVERGE_MAX_DOWNTIME_MS + 1;
    assert_int_equal(migration_source_set_params(r.s, &p, &err), -EINVAL);
    assert_string_equal(err.msg, "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms");
    p.converge.downtime_limit_ms = CONVERGE_MAX_DOWNTIME_MS;
    assert_int_equal(migration_source_set_params(r.s, &p, &err), 0);
    /* A deadline, not a measure: without the change it never ends. */
    wait_passes(&r, UINT64_MAX);
    if (!migration_source_done(r.s)) {
        migration_source_cancel(r.s);
        run_wait(&r);
        fail_msg("pre-copy did not stop after downtime-limit was raised (%llu passes)",
                 (unsigned long long)r.ss.dirty_sync_count);
    }
    run_wait(&r);
    assert_completed(&r);
    assert_same_ram(r.a, r.b);
    assert_no_stale_page(r.b);
    print_message("downtime-limit raised after %llu passes, completed after %llu\n",
                  (unsigned long long)st.dirty_sync_count, (unsigned long long)r.ss.dirty_sync_count);
    run_free(&r);
}

/* Same host: guest RAM's memfds pass over the UNIX socket; no page is
 * copied and the destination maps the source's very pages. */
static void test_same_host_memfd(void **state)
{
    struct run r;
    int fds[2];
    socket_pair(fds);
    run_init(&r, &bare_config, 20000);
    r.p.share_memfd = true;
    run_start(&r, fds);
    run_wait(&r);
    assert_completed(&r);
    assert_same_ram(r.a, r.b);
    assert_no_stale_page(r.b);
    assert_int_equal(r.ss.normal + r.ss.duplicate, 0);
    assert_true(r.ss.transferred > 0 && r.ss.transferred < (64 << 10));   /* the device state */
    struct stat sa, sb;
    assert_int_equal(fstat(r.a->vm.mem.regions[0].memfd, &sa), 0);
    assert_int_equal(fstat(r.b->vm.mem.regions[0].memfd, &sb), 0);
    assert_true(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev);
    /* One memory: what the destination writes, the source's mapping shows. */
    uint8_t *pb = guest_memory_ptr(&r.b->vm.mem, 0x300000, 1), *pa = guest_memory_ptr(&r.a->vm.mem, 0x300000, 1);
    *pb = 0x77;
    assert_int_equal(*pa, 0x77);
    print_message("same-host: %llu bytes, downtime %llu ms, total %llu ms\n", (unsigned long long)r.ss.transferred,
                  (unsigned long long)r.ss.downtime_ms, (unsigned long long)r.ss.total_time_ms);
    run_free(&r);
}

/* ---- refusals, cancel, broken streams ---- */

static void wrong_destination_refused(const struct machine_config *dst_cfg, const char *why)
{
    struct run r;
    int fds[2];
    socket_pair(fds);
    run_init(&r, dst_cfg, 1000);
    run_start(&r, fds);
    run_wait(&r);
    assert_int_equal(r.sret, -EINVAL);
    assert_non_null(strstr(r.serr.msg, "destination:"));
    if (!strstr(r.serr.msg, why)) {
        fail_msg("refused for '%s', not for what differs ('%s')", r.serr.msg, why);
    }
    assert_int_equal(r.ss.status, MIGRATION_FAILED);
    assert_int_equal(r.ds.status, MIGRATION_FAILED);
    /* The source never stopped; the destination never ran. */
    assert_int_equal(r.src.stops, 0);
    assert_true(r.src.guest.running);
    assert_int_equal(r.dst.starts, 0);
    assert_int_equal(machine_run_state(r.a), MACHINE_RUNNING);
    run_free(&r);
}

/* A destination built otherwise (memory size, vCPUs, devices) refuses
 * before the source stops, naming what differs. */
static void test_wrong_destination_refused(void **state)
{
    wrong_destination_refused(&small_config, "--memory 32 MiB, this VM has --memory 16 MiB");
    struct machine_config cfg = bare_config;
    cfg.cpus = 2;
    wrong_destination_refused(&cfg, "--cpus 1, this VM has --cpus 2");
    cfg = bare_config;
    cfg.nrng = 2;
    cfg.rng[1] = TRANSPORT_MMIO;
    wrong_destination_refused(&cfg, "1 virtio-rng device(s), this VM has 2");
}

static void test_cancel(void **state)
{
    struct run r;
    int fds[2];
    socket_pair(fds);
    run_init(&r, &bare_config, 1000);
    r.p.max_bandwidth = 4ull << 20;     /* 8 MiB of data: about 2 s */
    run_start(&r, fds);
    struct timespec ts = { 0, 200000000 };
    nanosleep(&ts, NULL);
    assert_int_equal(migration_source_cancel(r.s), 0);
    run_wait(&r);
    assert_int_equal(r.sret, -ECANCELED);
    assert_int_equal(r.ss.status, MIGRATION_CANCELLED);
    assert_true(r.dret < 0);
    assert_int_equal(r.dst.starts, 0);
    assert_true(r.src.guest.running);
    assert_int_equal(machine_run_state(r.a), MACHINE_RUNNING);
    run_free(&r);
}

/* While the migration runs, what would change the devices it sends is
 * refused with QEMU's words; once it is over, not any more (disks:
 * test_migration_disks). */
static void test_changes_refused_while_migrating(void **state)
{
    struct run r;
    struct error err = { 0 };
    int fds[2];
    socket_pair(fds);
    run_init(&r, &bare_config, 1000);
    r.p.max_bandwidth = 4ull << 20;     /* 8 MiB of data: about 2 s */
    run_start(&r, fds);
    assert_true(machine_migrating(r.a));
    assert_int_equal(machine_device_add_virtio_blk(r.a, "hd1", "n0", &err), -EBUSY);
    assert_string_equal(err.msg, "device_add not allowed while migrating");
    error_clear(&err);
    assert_int_equal(machine_device_del(r.a, "nothing", &err), -ENODEV);     /* QEMU looks it up first */
    error_clear(&err);
    assert_int_equal(migration_source_cancel(r.s), 0);
    run_wait(&r);
    assert_false(machine_migrating(r.a));
    assert_int_equal(machine_device_add_virtio_blk(r.a, "hd1", "n0", &err), -ENOENT);   /* no such node */
    error_clear(&err);
    run_free(&r);
}

/* A relay between source and destination that corrupts one byte of the
 * forward stream at offset at, or cuts it there. */
struct relay {
    int src, dst;               /* its ends: towards the source, towards the destination */
    uint64_t at;
    bool cut;
    pthread_t t;
};

static void *relay_main(void *opaque)
{
    struct relay *rl = opaque;
    struct pollfd pfd[2] = { { rl->src, POLLIN, 0 }, { rl->dst, POLLIN, 0 } };
    uint64_t fwd = 0;
    uint8_t buf[65536];
    for (;;) {
        if (poll(pfd, 2, 5000) <= 0) {
            break;
        }
        if (pfd[0].revents) {
            ssize_t n = read(rl->src, buf, sizeof(buf));
            if (n <= 0) {
                break;
            }
            if (fwd <= rl->at && rl->at < fwd + (uint64_t)n) {
                if (rl->cut) {
                    n = (ssize_t)(rl->at - fwd);
                    if (n > 0 && write(rl->dst, buf, (size_t)n) != n) {
                        break;
                    }
                    break;
                }
                buf[rl->at - fwd] ^= 0x40;
            }
            fwd += (uint64_t)n;
            if (write(rl->dst, buf, (size_t)n) != n) {
                break;
            }
        }
        if (pfd[1].revents) {
            ssize_t n = read(rl->dst, buf, sizeof(buf));
            if (n <= 0 || write(rl->src, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    close(rl->src);
    close(rl->dst);
    return NULL;
}

static void broken_stream(uint64_t at, bool cut, const char *dest_error, const char *or_error)
{
    struct run r;
    int a[2], b[2];
    socket_pair(a);
    socket_pair(b);
    struct relay rl = { a[1], b[0], at, cut, 0 };
    assert_int_equal(pthread_create(&rl.t, NULL, relay_main, &rl), 0);
    int fds[2] = { a[0], b[1] };
    run_init(&r, &bare_config, 1000);
    run_start(&r, fds);
    run_wait(&r);
    pthread_join(rl.t, NULL);
    assert_true(r.sret < 0);
    assert_true(r.dret < 0);
    if (!strstr(r.derr.msg, dest_error) && !(or_error && strstr(r.derr.msg, or_error))) {
        fail_msg("destination said '%s', expected '%s'", r.derr.msg, dest_error);
    }
    assert_int_equal(r.ss.status, MIGRATION_FAILED);
    assert_int_equal(r.dst.starts, 0);
    /* The source goes on as before. */
    assert_true(r.src.guest.running);
    assert_int_equal(machine_run_state(r.a), MACHINE_RUNNING);
    run_free(&r);
}

static void test_corrupt_stream(void **state)
{
    /* A page's bytes (checksum) or its entry (address) */
    broken_stream(300000, false, "checksum", "not guest RAM");
}

static void test_truncated_stream(void **state)
{
    broken_stream(300000, true, "ends early", NULL);
}

/* ---- post-copy ---- */

static void postcopy_over(int fds[2])
{
    struct run r;
    run_init(&r, &bare_config, 0);      /* flat out: faster than the link */
    r.dst.handoff = &r.src.guest;       /* the destination's guest goes on */
    r.p.postcopy_ram = true;
    r.p.max_bandwidth = 16ull << 20;
    /* The background stream takes about a second over the guest's range:
     * the destination's guest faults on a page before it arrives, however
     * late it is scheduled on a loaded host (unlimited, the stream could
     * bring every page first and no fault would happen). */
    r.p.max_postcopy_bandwidth = 8ull << 20;
    r.p.converge.downtime_limit_ms = 1;
    run_start(&r, fds);
    struct timespec ts = { 0, 100000000 };
    nanosleep(&ts, NULL);
    struct error err = { 0 };
    assert_int_equal(migration_source_start_postcopy(r.s, &err), 0);
    /* While the destination runs, its guest goes on writing; let it make
     * some progress, then wait for the rest of the pages. */
    run_wait(&r);
    if (r.sret < 0 || r.dret < 0) {
        fail_msg("post-copy failed: source: %s; destination: %s", r.serr.msg, r.derr.msg);
    }
    assert_int_equal(r.ss.status, MIGRATION_COMPLETED);
    assert_int_equal(r.ds.status, MIGRATION_COMPLETED);
    assert_int_equal(r.dst.starts, 1);
    assert_true(r.ds.postcopy_requests > 0);
    assert_true(r.ss.postcopy_requests > 0);
    assert_true(r.dst.guest.writes > 0);
    assert_no_stale_page(r.b);
    assert_true(same_device(r.a, r.b, "uart"));
    /* Outside the range the guest writes, RAM is the source's. */
    uint8_t *pa = guest_memory_ptr(&r.a->vm.mem, 0, RANGE_BASE), *pb = guest_memory_ptr(&r.b->vm.mem, 0, RANGE_BASE);
    assert_memory_equal(pa, pb, RANGE_BASE);
    assert_true(r.ds.postcopy_faults > 0 && r.ds.postcopy_faults <= r.ds.postcopy_requests);
    assert_true(r.ss.precopy_bytes > 0 && r.ss.postcopy_bytes > 0);
    assert_true(r.ss.precopy_bytes + r.ss.downtime_bytes + r.ss.postcopy_bytes <= r.ss.transferred);
    assert_true(r.ds.fault_p50_us > 0 && r.ds.fault_p50_us <= r.ds.fault_p99_us);
    /* The guest thread is vCPU 0: its waits are the vCPU's (QEMU's
     * postcopy-vcpu-blocktime), and with one vCPU the time all vCPUs
     * waited at once (postcopy-blocktime) is exactly that vCPU's. */
    assert_true(r.ds.postcopy_ran);
    assert_int_equal(r.ds.postcopy_vcpus, 1);
    assert_true(r.ds.postcopy_vcpu_faults > 0);
    assert_int_equal(r.ds.postcopy_all_vcpus_blocktime_ms, r.ds.postcopy_vcpu_blocktime_ms[0]);
    print_message("post-copy: %llu page requests, downtime %llu ms, fault to page: p50 <= %llu us, p99 <= %llu us, "
                  "blocktime %llu ms, longest guest write %llu us\n",
                  (unsigned long long)r.ds.postcopy_requests, (unsigned long long)r.ss.downtime_ms,
                  (unsigned long long)r.ds.fault_p50_us, (unsigned long long)r.ds.fault_p99_us,
                  (unsigned long long)r.ds.postcopy_blocktime_ms, (unsigned long long)(r.dst.guest.max_ns / 1000));
    run_free(&r);
}

static void test_postcopy_socketpair(void **state)
{
    int fds[2];
    socket_pair(fds);
    postcopy_over(fds);
}

static void test_postcopy_tcp(void **state)
{
    int fds[2];
    uri_pair("tcp:127.0.0.1:0", fds);
    postcopy_over(fds);
}

/* Post-copy from the start: nearly every page is discarded on the
 * destination, in long runs (one call each) broken by the few pages
 * sent before the switch. Whatever the destination held before (all of
 * its RAM scribbled over here) must be gone: after completion its RAM is
 * the source's, page for page. */
static void test_postcopy_discards_all_stale(void **state)
{
    struct run r;
    int fds[2];
    struct error err = { 0 };
    socket_pair(fds);
    run_init(&r, &bare_config, 0);
    memset(guest_memory_ptr(&r.b->vm.mem, 0, MEMORY), 0xee, MEMORY);
    r.p.postcopy_ram = true;
    run_start(&r, fds);
    assert_int_equal(migration_source_start_postcopy(r.s, &err), 0);
    run_wait(&r);
    assert_completed(&r);
    assert_same_ram(r.a, r.b);
    assert_no_stale_page(r.b);
    run_free(&r);
}

/* postcopy-preempt: the source's open_channel hook hands over the second
 * connection (a socketpair here, made in advance). */
static int preset_channel(void *opaque, struct error *err)
{
    struct side *s = opaque;
    int fd = s->channel_fd;
    s->channel_fd = -1;
    return fd >= 0 ? fd : error_set(err, -ENOTCONN, "no second connection");
}

/* Requested pages come on their own connection; the guest's pages all
 * arrive as in plain post-copy. */
static void test_postcopy_preempt(void **state)
{
    int fds[2], ch[2];
    struct run r;
    struct error err = { 0 };
    socket_pair(fds);
    socket_pair(ch);
    run_init(&r, &bare_config, 0);
    r.dst.handoff = &r.src.guest;
    r.p.postcopy_ram = r.p.postcopy_preempt = true;
    r.p.converge.downtime_limit_ms = 1;
    /* As in postcopy_over: unlimited, the stream could bring every page
     * before the guest faults on one (seen under load). */
    r.p.max_postcopy_bandwidth = 8ull << 20;
    r.src.channel_fd = ch[0];
    struct migration_hooks sh = src_hooks(&r.src), dh = dst_hooks(&r.dst);
    sh.open_channel = preset_channel;
    assert_int_equal(migration_dest_start(&r.d, r.b, fds[1], &dh, &err), 0);
    assert_int_equal(migration_dest_add_channel(r.d, ch[1], &err), 0);
    assert_int_equal(migration_source_start(&r.s, r.a, fds[0], &r.p, &sh, &err), 0);
    struct timespec ts = { 0, 100000000 };
    nanosleep(&ts, NULL);
    assert_int_equal(migration_source_start_postcopy(r.s, &err), 0);
    run_wait(&r);
    if (r.sret < 0 || r.dret < 0) {
        fail_msg("post-copy failed: source: %s; destination: %s", r.serr.msg, r.derr.msg);
    }
    assert_no_stale_page(r.b);
    assert_true(r.ss.postcopy_preempt_pages > 0);
    assert_true(r.ss.postcopy_preempt_pages <= r.ss.postcopy_requests);
    assert_true(r.ss.postcopy_bytes >= r.ss.postcopy_preempt_pages * 4096);     /* the channel's pages count */
    print_message("post-copy preempt: %llu requests, %llu on the channel, fault to page: p50 <= %llu us, "
                  "p99 <= %llu us, blocktime %llu ms\n", (unsigned long long)r.ds.postcopy_requests,
                  (unsigned long long)r.ss.postcopy_preempt_pages, (unsigned long long)r.ds.fault_p50_us,
                  (unsigned long long)r.ds.fault_p99_us, (unsigned long long)r.ds.postcopy_blocktime_ms);
    run_free(&r);
}

/* A vCPU of the destination fetching its own pages: it reads every page
 * through the self-fetch view while the background stream is held to
 * 4 MB/s, so most reads miss and ask for their page themselves. Each page
 * read is the source's (nothing lost, nothing stale, none placed twice
 * with other bytes), and the migration completes with the same RAM. */
struct view_check {
    struct run *r;
    unsigned fetched, wrong, unreadable;
    uint64_t first_gpa, last_gpa;
    int done;       /* atomic */
};

static void *view_check_main(void *opaque)
{
    struct view_check *c = opaque;
    for (uint64_t gpa = c->first_gpa; gpa < c->last_gpa; gpa += 4096) {
        const uint8_t *want = guest_memory_ptr(&c->r->a->vm.mem, gpa, 4096);    /* the stopped source's */
        int v = view_read(c->r->d, gpa + 7, &c->fetched);
        c->unreadable += v < 0;
        c->wrong += v >= 0 && v != want[7];
    }
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The migration completes, and the reader fetched pages and read each
 * as the source has it. */
static void assert_view_check_ends_well(struct view_check *c, const char *what)
{
    run_wait(c->r);
    if (c->r->sret < 0 || c->r->dret < 0) {
        fail_msg("%s failed: source: %s; destination: %s", what, c->r->serr.msg, c->r->derr.msg);
    }
    assert_int_equal(c->unreadable, 0);
    assert_int_equal(c->wrong, 0);
    assert_true(c->fetched > 0);
}

static void postcopy_with_view(struct run *r, int fds[2], int ch[2])
{
    struct error err = { 0 };
    run_init(r, &bare_config, 0);
    scribble(r->a);
    r->p.postcopy_ram = r->p.postcopy_preempt = true;
    r->p.converge.downtime_limit_ms = 1;
    r->p.max_postcopy_bandwidth = 4ull << 20;
    r->src.channel_fd = ch[0];
    struct migration_hooks sh = src_hooks(&r->src), dh = dst_hooks(&r->dst);
    sh.open_channel = preset_channel;
    assert_int_equal(migration_dest_start(&r->d, r->b, fds[1], &dh, &err), 0);
    assert_int_equal(migration_dest_add_channel(r->d, ch[1], &err), 0);
    assert_int_equal(migration_source_start(&r->s, r->a, fds[0], &r->p, &sh, &err), 0);
    assert_int_equal(migration_source_start_postcopy(r->s, &err), 0);
    for (int i = 0; i < 2000 && !r->dst.starts; i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    assert_true(r->dst.starts > 0);
    view_reader_install();
}

static void test_postcopy_self_fetch(void **state)
{
    int fds[2], ch[2];
    struct run r;
    socket_pair(fds);
    socket_pair(ch);
    postcopy_with_view(&r, fds, ch);
    if (!migration_dest_view(r.d, 0)) {
        skip();     /* the kernel refused a SIGBUS userfaultfd: the fault thread serves every miss */
    }
    struct view_check c = { .r = &r, .first_gpa = 0, .last_gpa = MEMORY };
    view_check_main(&c);
    assert_view_check_ends_well(&c, "post-copy");
    assert_true(r.ds.postcopy_requests >= c.fetched / 2);   /* a fetch of a page that came meanwhile sends none */
    /* The reader's waits count in postcopy-blocktime as a fault's would
     * (the fault thread saw none of them: it reads the main mapping). */
    assert_true(r.ds.postcopy_faults >= c.fetched / 2);
    assert_true(r.ds.fault_p50_us > 0);
    assert_same_ram(r.a, r.b);
    print_message("self-fetch: %u of %u pages fetched by the reader, %llu requests, %llu faults timed, "
                  "blocktime %llu ms\n", c.fetched, (unsigned)(MEMORY / 4096),
                  (unsigned long long)r.ds.postcopy_requests, (unsigned long long)r.ds.postcopy_faults,
                  (unsigned long long)r.ds.postcopy_blocktime_ms);
    run_free(&r);
}

/* Waits (at most 20 s) until both sides report st. */
static void wait_both(struct run *r, enum migration_status st)
{
    for (int i = 0; i < 2000; i++) {
        migration_source_stats(r->s, &r->ss);
        migration_dest_stats(r->d, &r->ds);
        if (r->ss.status == st && r->ds.status == st) {
            return;
        }
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    fail_msg("source %s, destination %s; expected both %s", migration_status_name(r->ss.status),
             migration_status_name(r->ds.status), migration_status_name(st));
}

/* The connection breaks once post-copy runs: the guest runs on the
 * destination, so both sides pause (postcopy-paused) instead of failing;
 * the source stays stopped, and the destination's guest waits on its
 * missing pages rather than read zeros. */
static void postcopy_cut(struct run *r, int fds[2])
{
    struct error err = { 0 };
    socket_pair(fds);
    run_init(r, &bare_config, 0);
    r->dst.handoff = &r->src.guest;
    r->p.postcopy_ram = true;
    r->p.max_bandwidth = 16ull << 20;
    r->dst.cut_fd = fds[1];    /* once the destination has the devices and runs */
    run_start(r, fds);
    assert_int_equal(migration_source_start_postcopy(r->s, &err), 0);
    wait_both(r, MIGRATION_POSTCOPY_PAUSED);
    assert_int_equal(r->src.starts, 0);
    assert_int_equal(machine_run_state(r->a), MACHINE_PAUSED);
}

/* Nobody recovers: cancelling the paused source gives the guest up. */
static void test_postcopy_paused_given_up(void **state)
{
    struct run r;
    int fds[2];
    postcopy_cut(&r, fds);
    assert_int_equal(migration_source_cancel(r.s), 0);
    assert_int_equal(migration_source_wait(r.s, &r.serr), -ECANCELED);
    /* The guest there is stopped first; then guest RAM is let go. */
    __atomic_store_n(&r.dst.guest.stop, 1, __ATOMIC_RELEASE);
    migration_dest_free(r.d);
    r.d = NULL;
    run_free(&r);
}

/* migrate-recover + migrate resume=true: a new connection, the
 * destination's list of missing pages, and the migration completes with no
 * page lost. */
static void test_postcopy_recover(void **state)
{
    struct run r;
    int fds[2], again[2];
    struct error err = { 0 };
    postcopy_cut(&r, fds);
    socket_pair(again);
    /* Destination first (migrate-recover), then the source (resume). */
    assert_int_equal(migration_dest_resume(r.d, again[1], &err), 0);
    assert_int_equal(migration_source_resume(r.s, again[0], &err), 0);
    run_wait(&r);
    if (r.sret < 0 || r.dret < 0) {
        fail_msg("recovery failed: source: %s; destination: %s", r.serr.msg, r.derr.msg);
    }
    assert_int_equal(r.ss.status, MIGRATION_COMPLETED);
    assert_int_equal(r.ds.status, MIGRATION_COMPLETED);
    assert_int_equal(r.src.starts, 0);
    assert_no_stale_page(r.b);
    uint8_t *pa = guest_memory_ptr(&r.a->vm.mem, 0, RANGE_BASE), *pb = guest_memory_ptr(&r.b->vm.mem, 0, RANGE_BASE);
    assert_memory_equal(pa, pb, RANGE_BASE);
    assert_true(same_device(r.a, r.b, "uart"));
    run_free(&r);
}

/* A vCPU fetching its own page when the connection breaks: its request
 * is lost with the old connection, it waits through the pause, asks again
 * after the recovery and reads the source's bytes. */
static void test_postcopy_self_fetch_recover(void **state)
{
    struct run r;
    int fds[2], again[2];
    struct error err = { 0 };
    pthread_t t;
    postcopy_cut(&r, fds);
    if (!migration_dest_view(r.d, 0)) {
        skip();
    }
    view_reader_install();
    /* Past the range the destination's guest writes: the source's bytes. */
    struct view_check c = { .r = &r, .first_gpa = RANGE_BASE + RANGE_PAGES * 4096ull, .last_gpa = MEMORY };
    assert_int_equal(pthread_create(&t, NULL, view_check_main, &c), 0);
    struct timespec ts = { 0, 200000000 };
    nanosleep(&ts, NULL);
    assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_ACQUIRE), 0);     /* waiting on a page while paused */
    socket_pair(again);
    assert_int_equal(migration_dest_resume(r.d, again[1], &err), 0);
    assert_int_equal(migration_source_resume(r.s, again[0], &err), 0);
    pthread_join(t, NULL);
    assert_view_check_ends_well(&c, "recovery");
    assert_no_stale_page(r.b);
    run_free(&r);
}

/* A destination standing in for one that fails in post-copy: it drains
 * the stream, accepts the setup, and once post-copy runs says its stream
 * ended with pages missing (what migration_dest sends in that case). */
static void *drain_main(void *opaque)
{
    int fd = *(int *)opaque;
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

static void send_rp(int fd, enum mig_rp_type type, int64_t arg, const char *text)
{
    struct mig_rp_msg msg = { .type = type, .arg = (uint64_t)arg };
    struct error err = { 0 };
    snprintf(msg.text, sizeof(msg.text), "%s", text);
    assert_int_equal(mig_rp_send(fd, &msg, &err), 0);
}

/* The destination failed in post-copy (it cannot go on; nothing will
 * recover it): the source fails too, with the destination's reason,
 * instead of pausing until cancelled; its guest stays stopped. */
static void test_postcopy_dest_error_fails_source(void **state)
{
    struct run r;
    int fds[2];
    struct error err = { 0 };
    pthread_t drain;
    socket_pair(fds);
    run_init(&r, &bare_config, 0);
    r.p.postcopy_ram = true;
    r.p.converge.downtime_limit_ms = 1;
    r.p.max_postcopy_bandwidth = 4ull << 20;
    struct migration_hooks sh = src_hooks(&r.src);
    assert_int_equal(pthread_create(&drain, NULL, drain_main, &fds[1]), 0);
    assert_int_equal(migration_source_start(&r.s, r.a, fds[0], &r.p, &sh, &err), 0);
    assert_int_equal(migration_source_start_postcopy(r.s, &err), 0);
    send_rp(fds[1], MIG_RP_SETUP_OK, 0, "");
    for (int i = 0; i < 2000 && (migration_source_stats(r.s, &r.ss), r.ss.status != MIGRATION_POSTCOPY_ACTIVE); i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(r.ss.status, MIGRATION_POSTCOPY_ACTIVE);
    send_rp(fds[1], MIG_RP_ERROR, -EPROTO, "post-copy: the stream ended with pages missing (1, the first at 0x1000)");
    for (int i = 0; i < 1000 && !migration_source_done(r.s); i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    migration_source_stats(r.s, &r.ss);
    if (!migration_source_done(r.s)) {
        fail_msg("the source is still %s 10 s after the destination failed", migration_status_name(r.ss.status));
    }
    assert_int_equal(migration_source_wait(r.s, &r.serr), -EPROTO);
    assert_int_equal(r.ss.status, MIGRATION_FAILED);
    assert_int_equal(r.src.last, MIGRATION_FAILED);        /* the MIGRATION event */
    assert_non_null(strstr(r.ss.error, "destination: post-copy: the stream ended with pages missing"));
    assert_int_equal(r.src.starts, 0);
    assert_int_equal(machine_run_state(r.a), MACHINE_PAUSED);
    shutdown(fds[1], SHUT_RDWR);
    pthread_join(drain, NULL);
    close(fds[1]);
    run_free(&r);
}

/* A list of missing pages belongs to a post-copy recovery: one that comes
 * out of turn (here in pre-copy, with bits past the end of a RAM whose
 * last bitmap word is partial) is ignored. Taken in, the pages past the
 * end counted in the discard list but were never written: the switch to
 * post-copy failed ("'mig-postcopy' is shorter than announced"), and in
 * pre-copy the return path wrote into the sending thread's bitmap while
 * it cleared bits without a lock. */
static void test_resume_bits_out_of_turn_ignored(void **state)
{
    static const struct machine_config odd = {
        .cpus = 1, .memory = MEMORY + 3 * 4096, .nrng = 1, .rng = { TRANSPORT_MMIO },
    };
    struct run r;
    int fds[2];
    struct error err = { 0 };
    pthread_t drain;
    socket_pair(fds);
    run_init(&r, &odd, 0);
    sim_stop(&r.src.guest);         /* the source is the one whose RAM matters here */
    bare_destroy(r.a);
    r.a = r.src.guest.m = bare_machine(&odd);
    sim_start(&r.src.guest);
    r.p.postcopy_ram = true;
    r.p.converge.downtime_limit_ms = 1;     /* pre-copy does not end on its own: the switch comes */
    struct migration_hooks sh = src_hooks(&r.src);
    assert_int_equal(pthread_create(&drain, NULL, drain_main, &fds[1]), 0);
    assert_int_equal(migration_source_start(&r.s, r.a, fds[0], &r.p, &sh, &err), 0);
    send_rp(fds[1], MIG_RP_SETUP_OK, 0, "");
    for (int i = 0; i < 2000 && (migration_source_stats(r.s, &r.ss), r.ss.status != MIGRATION_ACTIVE); i++) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(r.ss.status, MIGRATION_ACTIVE);       /* its page bitmap exists */
    uint64_t words = (odd.memory / 4096 + 63) / 64;
    struct mig_rp_msg bits = { .type = MIG_RP_RESUME_BITS, .arg = 1ull << 48 | (words - 1) };
    memset(bits.text, 0xff, 8);                     /* the last word, every bit: 61 past the end */
    assert_int_equal(mig_rp_send(fds[1], &bits, &err), 0);
    send_rp(fds[1], MIG_RP_RESUME_END, 0, "");
    struct timespec ts = { 0, 50000000 };           /* the return path reads them first */
    nanosleep(&ts, NULL);
    assert_int_equal(migration_source_start_postcopy(r.s, &err), 0);
    send_rp(fds[1], MIG_RP_DONE, 0, "");
    if (migration_source_wait(r.s, &r.serr) < 0) {
        fail_msg("the source failed: %s", r.serr.msg);
    }
    migration_source_stats(r.s, &r.ss);
    assert_true(r.ss.postcopy_bytes > 0);       /* it went post-copy, discard list and all */
    shutdown(fds[1], SHUT_RDWR);
    pthread_join(drain, NULL);
    close(fds[1]);
    run_free(&r);
}

/* The list of missing pages is binary: words with zero bytes (pages that
 * arrived), the last byte of the message included, must reach the source
 * whole, or the pages lost in flight at the break are never sent again
 * (issue #12). An error's text is still a string, of printable ASCII. */
static void test_return_path_bitmap_bytes(void **state)
{
    int fds[2];
    struct error err = { 0 };
    struct mig_rp_msg out = { .type = MIG_RP_RESUME_BITS, .arg = 16 }, in;
    socket_pair(fds);
    for (unsigned k = 0; k < MIG_RP_RESUME_WORDS; k++) {
        st_le64((uint8_t *)out.text + k * 8, k % 2 ? 0xff00ff00ffffff00ull : 0);
    }
    st_le64((uint8_t *)out.text + (MIG_RP_RESUME_WORDS - 1) * 8, 0x8000000000000001ull);
    assert_int_equal(mig_rp_send(fds[0], &out, &err), 0);
    assert_int_equal(mig_rp_recv(fds[1], &in, &err), 0);
    assert_int_equal(in.type, MIG_RP_RESUME_BITS);
    assert_memory_equal(in.text, out.text, MIG_RP_RESUME_WORDS * 8);
    struct mig_rp_msg e = { .type = MIG_RP_ERROR, .arg = (uint64_t)-EIO };
    memset(e.text, 'x', sizeof(e.text));
    assert_int_equal(mig_rp_send(fds[0], &e, &err), 0);
    assert_int_equal(mig_rp_recv(fds[1], &in, &err), 0);
    assert_int_equal(strlen(in.text), sizeof(in.text) - 1);
    /* An error's text reaches the log and query-migrate's error-desc:
     * control bytes (an escape sequence) and bytes past ASCII (here a
     * UTF-8 sequence cut by the message's end, invalid in JSON) become
     * '?'. */
    memset(e.text, 0, sizeof(e.text));
    snprintf(e.text, sizeof(e.text), "disk \x1b[2J/img-\xc3\xa9\xc3");
    assert_int_equal(mig_rp_send(fds[0], &e, &err), 0);
    assert_int_equal(mig_rp_recv(fds[1], &in, &err), 0);
    assert_string_equal(in.text, "disk ?[2J/img-???");
    close(fds[0]);
    close(fds[1]);
}

static void test_postcopy_needs_capability(void **state)
{
    struct run r;
    int fds[2];
    struct error err = { 0 };
    socket_pair(fds);
    run_init(&r, &bare_config, 1000);
    run_start(&r, fds);
    assert_int_equal(migration_source_start_postcopy(r.s, &err), -EINVAL);
    run_wait(&r);
    assert_completed(&r);
    run_free(&r);
}

/* ---- hostile streams: the destination fails with a reason, never crashes ---- */

typedef void (*stream_body)(struct vmstate_writer *w, struct machine *src);

static void hostile(stream_body body, const char *expect)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct migration_dest *d;
    struct error err = { 0 };
    struct vmstate_writer w;
    int fds[2];
    socket_pair(fds);
    assert_int_equal(migration_dest_start(&d, b, fds[1], NULL, &err), 0);
    if (vmstate_writer_begin(&w, vmstate_pipe_io(&fds[0]), &err) == 0) {
        body(&w, a);        /* write errors (the destination gave up) do not matter */
        vmstate_writer_finish(&w, &err);
    }
    vmstate_writer_free(&w);
    shutdown(fds[0], SHUT_WR);
    struct error derr = { 0 };
    assert_true(migration_dest_wait(d, &derr) < 0);
    if (!strstr(derr.msg, expect)) {
        fail_msg("destination said '%s', expected '%s'", derr.msg, expect);
    }
    migration_dest_free(d);
    close(fds[0]);
    bare_destroy(a);
    bare_destroy(b);
}

static void good_start(struct vmstate_writer *w, struct machine *src)
{
    struct error err = { 0 };
    machine_state_save_config(src, w, &err);
    mig_setup_write(w, &src->vm.mem, false, &err);
}

/* A "mig-ram" section with count pages announced and the given entries. */
static void ram_section(struct vmstate_writer *w, uint32_t count, const uint64_t *entries, int n, bool data)
{
    struct error err = { 0 };
    uint8_t b[8], page[4096] = { 1 };
    vmstate_section_begin(w, MIG_SECTION_RAM, 1, 4 + (uint64_t)n * (8 + (data ? 4096 : 0)), &err);
    st_le32(b, count);
    vmstate_section_write(w, b, 4, &err);
    for (int i = 0; i < n; i++) {
        st_le64(b, entries[i]);
        vmstate_section_write(w, b, 8, &err);
        if (data) {
            vmstate_section_write(w, page, sizeof(page), &err);
        }
    }
    vmstate_section_end(w, &err);
}

static void body_huge_count(struct vmstate_writer *w, struct machine *m)
{
    static const uint64_t e[] = { 0x1000 | MIG_PAGE_ZERO };
    good_start(w, m);
    ram_section(w, 0xffffffffu, e, 1, false);
}

static void body_outside_ram(struct vmstate_writer *w, struct machine *m)
{
    static const uint64_t e[] = { MEMORY };
    good_start(w, m);
    ram_section(w, 1, e, 1, true);
}

static void body_unaligned(struct vmstate_writer *w, struct machine *m)
{
    static const uint64_t e[] = { 0x1800 | MIG_PAGE_ZERO };
    good_start(w, m);
    ram_section(w, 1, e, 1, false);
}

static void body_trailing_bytes(struct vmstate_writer *w, struct machine *m)
{
    static const uint64_t e[] = { 0x1000 | MIG_PAGE_ZERO, 0x2000 | MIG_PAGE_ZERO };
    good_start(w, m);
    ram_section(w, 1, e, 2, false);
}

static void body_no_devices(struct vmstate_writer *w, struct machine *m)
{
    good_start(w, m);
}

static void body_unknown_section(struct vmstate_writer *w, struct machine *m)
{
    struct error err = { 0 };
    good_start(w, m);
    vmstate_write_section(w, "bogus", 1, "x", 1, &err);
}

static void body_bad_discard(struct vmstate_writer *w, struct machine *m)
{
    struct error err = { 0 };
    uint8_t b[12];
    good_start(w, m);
    st_le32(b, 1000);           /* 1000 pages announced, one given */
    st_le64(b + 4, 0x1000);
    vmstate_write_section(w, MIG_SECTION_POSTCOPY, 1, b, sizeof(b), &err);
}

/* Post-copy that forgets a page and ends without sending it: the
 * destination must not complete (its guest would read zeros there). */
static void body_page_never_sent(struct vmstate_writer *w, struct machine *m)
{
    struct error err = { 0 };
    uint8_t b[12];
    uint64_t zero[MIG_BATCH_PAGES];
    good_start(w, m);
    for (uint64_t gpa = 0; gpa < MEMORY; gpa += sizeof(zero) / 8 * 4096) {      /* pre-copy: every page */
        for (unsigned i = 0; i < MIG_BATCH_PAGES; i++) {
            zero[i] = (gpa + i * 4096) | MIG_PAGE_ZERO;
        }
        ram_section(w, MIG_BATCH_PAGES, zero, MIG_BATCH_PAGES, false);
    }
    st_le32(b, 1);
    st_le64(b + 4, 0x1000);
    vmstate_write_section(w, MIG_SECTION_POSTCOPY, 1, b, sizeof(b), &err);
    machine_state_save(m, w, &err);
}

static void body_other_protocol(struct vmstate_writer *w, struct machine *m)
{
    struct error err = { 0 };
    uint8_t b[9 + 16] = { 0 };
    machine_state_save_config(m, w, &err);
    st_le32(b, 99);
    st_le32(b + 4, 1);
    vmstate_write_section(w, MIG_SECTION_SETUP, 1, b, sizeof(b), &err);
}

static void body_devices_twice(struct vmstate_writer *w, struct machine *m)
{
    struct error err = { 0 };
    good_start(w, m);
    machine_state_save(m, w, &err);
    machine_state_save(m, w, &err);
}

static void test_hostile_streams(void **state)
{
    hostile(body_huge_count, "shorter than its");
    hostile(body_outside_ram, "not guest RAM");
    hostile(body_unaligned, "not guest RAM");
    hostile(body_trailing_bytes, "after a page batch");
    hostile(body_no_devices, "ends before the device state");
    hostile(body_unknown_section, "unexpected section 'bogus'");
    hostile(body_bad_discard, "announces 1000 pages");
    hostile(body_page_never_sent, "pages missing (1, the first at 0x1000)");
    hostile(body_other_protocol, "protocol version 99");
    hostile(body_devices_twice, "section for device 'config'");
}

static void test_bad_uri(void **state)
{
    struct error err = { 0 };
    assert_int_equal(migration_connect("exec:cat", &err), -EINVAL);
    assert_non_null(strstr(err.msg, "unknown migration protocol"));
    assert_int_equal(migration_connect("tcp:nohostport", &err), -EINVAL);
    assert_true(migration_connect("unix:/nonexistent/dir/sock", &err) < 0);
}

/* argv[1]: run only the tests whose names match it (a cmocka pattern). */
int main(int argc, char **argv)
{
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);   /* the relay writes to sockets that may be gone */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precopy_socketpair),
        cmocka_unit_test(test_precopy_tcp),
        cmocka_unit_test(test_precopy_unix),
        cmocka_unit_test(test_precopy_bandwidth_limit),
        cmocka_unit_test(test_auto_converge),
        cmocka_unit_test(test_downtime_limit_raised_while_running),
        cmocka_unit_test(test_same_host_memfd),
        cmocka_unit_test(test_wrong_destination_refused),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_changes_refused_while_migrating),
        cmocka_unit_test(test_corrupt_stream),
        cmocka_unit_test(test_truncated_stream),
        cmocka_unit_test(test_postcopy_socketpair),
        cmocka_unit_test(test_postcopy_tcp),
        cmocka_unit_test(test_postcopy_preempt),
        cmocka_unit_test(test_postcopy_self_fetch),
        cmocka_unit_test(test_postcopy_discards_all_stale),
        cmocka_unit_test(test_postcopy_paused_given_up),
        cmocka_unit_test(test_postcopy_recover),
        cmocka_unit_test(test_postcopy_self_fetch_recover),
        cmocka_unit_test(test_postcopy_dest_error_fails_source),
        cmocka_unit_test(test_return_path_bitmap_bytes),
        cmocka_unit_test(test_resume_bits_out_of_turn_ignored),
        cmocka_unit_test(test_postcopy_needs_capability),
        cmocka_unit_test(test_hostile_streams),
        cmocka_unit_test(test_bad_uri),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
