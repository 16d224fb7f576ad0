/* A hostile destination against the source: the return path carries
 * messages a fake destination makes up with a fixed seed (fuzz_stream.c's
 * generator): page requests for edge addresses, lists of missing pages
 * with edge regions, counts and words, errors with edge codes and
 * unterminated texts, confirmations out of turn, unknown types, a message
 * cut short, the connection closed at any point, in pre-copy and in
 * post-copy (with and without the preempt channel), and across post-copy
 * pauses and resumes. The fake destination drains whatever the source
 * sends. Each run must end (completed, failed with a message, or paused
 * and then cancelled) without a crash, a hang or a sanitizer report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../machine/bare_machine.h"
#include "fuzz_stream.h"
#include "status_events.h"
#include "migration/migration.h"
#include "migration/migration_wire.h"
#include "util/bswap.h"
#include "util/log.h"

#define MEMORY (8ull << 20)
#define RUNS 150            /* FUZZ_MUTATIONS and FUZZ_SEED for longer runs by hand */

static const struct machine_config config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

static void pause_us(long us)
{
    struct timespec ts = { 0, us * 1000 };
    nanosleep(&ts, NULL);
}

/* ---- draining what the source sends ---- */

struct drain {
    int fd;
    pthread_t thread;
};

static void *drain_main(void *opaque)
{
    struct drain *d = opaque;
    static __thread char buf[65536];
    while (read(d->fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

static void drain_start(struct drain *d, int fd)
{
    d->fd = fd;
    assert_int_equal(pthread_create(&d->thread, NULL, drain_main, d), 0);
}

/* Ends the connection (the source sees it closed) and the drain. */
static void drain_stop(struct drain *d)
{
    shutdown(d->fd, SHUT_RDWR);
    pthread_join(d->thread, NULL);
    close(d->fd);
}

/* ---- made-up return-path messages ---- */

static void send_raw(int fd, const uint8_t *buf, size_t len)
{
    if (send(fd, buf, len, MSG_NOSIGNAL) < 0) {
        return;     /* the source closed: its run ends anyway */
    }
}

static void send_msg(int fd, uint32_t type, uint64_t arg, bool random_text)
{
    uint8_t buf[MIG_RP_SIZE] = { 0 };
    st_le32(buf, type);
    st_le64(buf + 8, arg);
    for (size_t i = 16; random_text && i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(fuzz_rnd(4) ? 0xff : fuzz_rnd(256));      /* many bits: many pages */
    }
    send_raw(fd, buf, sizeof(buf));
}

static uint64_t some_gpa(void)
{
    switch (fuzz_rnd(4)) {
    case 0:
        return fuzz_edge(MEMORY);
    case 1:
        return fuzz_rnd(MEMORY / 4096) * 4096 + fuzz_rnd(4096);    /* unaligned, mostly */
    default:
        return fuzz_rnd(MEMORY / 4096) * 4096;
    }
}

/* A list entry of missing pages: region, word count and first word, each
 * valid or at an edge. */
static uint64_t resume_arg(void)
{
    uint64_t region = fuzz_rnd(3) ? 0 : fuzz_rnd(256);
    uint64_t n = fuzz_rnd(3) ? 1 + fuzz_rnd(MIG_RP_RESUME_WORDS) : fuzz_rnd(256);
    uint64_t first = fuzz_rnd(2) ? fuzz_rnd(MEMORY / 4096 / 64 + 2) : fuzz_edge(MEMORY) & 0xffffffffffffull;
    return region << 56 | n << 48 | first;
}

/* One message the fake destination sends; false when it closed. */
static bool hostile_message(int fd, char *log, size_t log_len)
{
    unsigned kind = (unsigned)fuzz_rnd(10);
    size_t at = strlen(log);
    snprintf(log + at, log_len - at, " %u", kind);
    switch (kind) {
    case 0:
    case 1:
        send_msg(fd, MIG_RP_PAGE_REQ, some_gpa(), false);
        return true;
    case 2:
    case 3:
        send_msg(fd, MIG_RP_RESUME_BITS, resume_arg(), true);
        return true;
    case 4:
        send_msg(fd, MIG_RP_RESUME_END, fuzz_edge(MEMORY), false);
        return true;
    case 5:
        send_msg(fd, MIG_RP_SETUP_OK, fuzz_edge(MEMORY), true);
        return true;
    case 6: {
        static const int64_t codes[] = { 0, -1, -EPROTO, -4095, -4096, INT64_MIN, 1, 4096 };
        send_msg(fd, MIG_RP_ERROR, (uint64_t)codes[fuzz_rnd(8)], true);
        return true;
    }
    case 7:
        send_msg(fd, fuzz_rnd(2) ? 0 : (uint32_t)fuzz_edge(MEMORY), fuzz_edge(MEMORY), true);
        return true;
    case 8: {                   /* a message cut short, then the end */
        uint8_t buf[MIG_RP_SIZE] = { MIG_RP_PAGE_REQ };
        send_raw(fd, buf, 1 + fuzz_rnd(MIG_RP_SIZE - 1));
        shutdown(fd, SHUT_RDWR);
        return false;
    }
    default:
        shutdown(fd, SHUT_RDWR);
        return false;
    }
}

/* ---- one run ---- */

struct run {
    struct machine *m;
    struct migration_source *s;
    int channel[2];             /* post-copy preempt's second connection */
    struct drain main, preempt;
    bool preempt_draining;
};

static int open_channel(void *opaque, struct error *err)
{
    struct run *r = opaque;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->channel) < 0) {
        return error_set_errno(err, -errno, "socketpair");
    }
    drain_start(&r->preempt, r->channel[1]);
    r->preempt_draining = true;
    return r->channel[0];
}

/* A few messages, post-copy asked for at some point, then either the
 * confirmation or an end the source must survive. */
static void converse(struct run *r, int fd, bool setup, char *log, size_t log_len)
{
    struct error err = { 0 };
    if (setup) {
        if (fuzz_rnd(10)) {
            send_msg(fd, MIG_RP_SETUP_OK, 0, false);
        } else if (!hostile_message(fd, log, log_len)) {
            return;
        }
    }
    for (uint64_t n = fuzz_rnd(8); n--;) {
        if (fuzz_rnd(3) == 0) {
            migration_source_start_postcopy(r->s, &err);
            pause_us((long)fuzz_rnd(3000));
        }
        if (!hostile_message(fd, log, log_len)) {
            return;
        }
    }
    if (fuzz_rnd(2)) {
        pause_us((long)fuzz_rnd(5000));
        send_msg(fd, MIG_RP_DONE, 0, false);
    }
}

/* Until the source ends or pauses again; a hang fails. */
static bool wait_end_or_pause(struct run *r, int seen, const char *log)
{
    int ret = status_events_wait(seen, 20000);
    if (ret < 0) {
        struct migration_stats st;
        migration_source_stats(r->s, &st);
        fail_msg("run [%s]: the source neither ended nor paused in 20 s (%s)", log, migration_status_name(st.status));
    }
    return ret == 1;
}

/* Ends a connection: the fake destination goes away, a little after the
 * source ended or paused, if it does so on its own. */
static void finish_connection(struct drain *d, int seen)
{
    status_events_wait(seen, 50);
    drain_stop(d);
}

static void run_once(struct run *r, int i, int *completed, int *failed, int *resumes)
{
    struct migration_params p;
    struct error err = { 0 };
    char log[512] = "";
    int fds[2];
    migration_params_default(&p);
    p.postcopy_ram = fuzz_rnd(4) != 0;
    p.postcopy_preempt = p.postcopy_ram && fuzz_rnd(2);
    struct migration_hooks h = { .open_channel = open_channel, .status = status_events_hook, .opaque = r };
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    drain_start(&r->main, fds[1]);
    snprintf(log, sizeof(log), "run %d postcopy %d preempt %d:", i, p.postcopy_ram, p.postcopy_preempt);
    status_events_reset();
    assert_int_equal(migration_source_start(&r->s, r->m, fds[0], &p, &h, &err), 0);
    converse(r, fds[1], true, log, sizeof(log));
    finish_connection(&r->main, 0);
    for (int resume = 0; !wait_end_or_pause(r, resume, log); resume++) {
        if (resume == 2) {
            assert_int_equal(migration_source_cancel(r->s), 0);     /* paused: a cancel is allowed */
            continue;
        }
        int again[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, again), 0);
        if (migration_source_resume(r->s, again[0], &err) < 0) {
            fail_msg("run [%s]: resume refused while paused: %s", log, err.msg);
        }
        (*resumes)++;
        drain_start(&r->main, again[1]);
        strncat(log, " | resume", sizeof(log) - strlen(log) - 1);
        converse(r, again[1], false, log, sizeof(log));
        finish_connection(&r->main, resume + 1);
    }
    struct migration_stats st;
    int ret = migration_source_wait(r->s, &err);
    migration_source_stats(r->s, &st);
    if (ret < 0 && !err.msg[0]) {
        fail_msg("run [%s] failed with no message", log);
    }
    if (ret < 0 && !st.error[0]) {
        fail_msg("run [%s] failed and query-migrate shows no error", log);
    }
    for (const char *c = st.error; *c; c++) {
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) {
            fail_msg("run [%s]: the error shows byte 0x%02x, which the destination chose", log, (unsigned char)*c);
        }
    }
    *completed += ret == 0;
    *failed += ret < 0;
    migration_source_free(r->s);
    r->s = NULL;
    if (r->preempt_draining) {
        drain_stop(&r->preempt);
        r->preempt_draining = false;
    }
}

static void test_hostile_return_path(void **state)
{
    struct run r = { .m = bare_machine(&config) };
    int runs = fuzz_mutations(RUNS), completed = 0, failed = 0, resumes = 0;
    fuzz_seed_from_env();
    for (int i = 0; i < runs; i++) {
        run_once(&r, i, &completed, &failed, &resumes);
    }
    print_message("%d hostile destinations: %d completed, %d failed, %d resumes\n", runs, completed, failed,
                  resumes);
    assert_true(completed > 0 && failed > 0 && resumes > 0);
    bare_destroy(r.m);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_return_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
