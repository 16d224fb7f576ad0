/* Record/replay (issue 13) on bare machines: the machine's real devices
 * over guest memory without a KVM VM, driven by a scripted "guest" (device
 * register accesses from the test, one exit each). A run is recorded, then
 * replayed on a fresh machine with no host input at all, and the two are
 * compared device by device and byte for byte in guest memory. Tampered,
 * truncated and corrupt logs, and logs of another configuration, are refused. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "machine/machine_int.h"
#include "machine/machine_replay.h"
#include "replay/replay.h"
#include "replay/replay_kvm.h"
#include "replay/replay_log.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_rng.h"
#include "vmm/host_input.h"

#define MEMORY (16ull << 20)
#define OUT 0x300000            /* where the scripted guest stores what it read */

static const struct machine_config bare_config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

static void assert_same_machine(struct machine *a, struct machine *b)
{
    struct error err = { 0 };
    assert_int_equal(a->devices.count, b->devices.count);
    for (int i = 0; i < a->devices.count; i++) {
        struct state_buf sa, sb;
        state_buf_init(&sa);
        state_buf_init(&sb);
        assert_int_equal(registered_device_save(&a->devices.devices[i], &sa, &err), 0);
        assert_int_equal(registered_device_save(&b->devices.devices[i], &sb, &err), 0);
        if (sa.len != sb.len || memcmp(sa.data, sb.data, sa.len) != 0) {
            fail_msg("device '%s' differs after the replay", a->devices.devices[i].name);
        }
        state_buf_free(&sa);
        state_buf_free(&sb);
    }
    assert_int_equal(a->vm.mem.count, b->vm.mem.count);
    for (int i = 0; i < a->vm.mem.count; i++) {
        assert_int_equal(a->vm.mem.regions[i].size, b->vm.mem.regions[i].size);
        assert_memory_equal(a->vm.mem.regions[i].hva, b->vm.mem.regions[i].hva, a->vm.mem.regions[i].size);
    }
}

/* ---- the scripted guest ---- */

struct script {
    int console_feed;           /* record: the test's end of the console pipe */
    int net_fd;                 /* record: the VMM's end of the "tap" */
    int net_feed;               /* record: the other end */
    uint64_t rip_bump;          /* a "modified guest": added to every RIP from exit 3 */
    bool skip_rng;              /* a "modified guest": does not ask for entropy */
};

static uint8_t *gmem(struct machine *m, uint64_t gpa, uint64_t len)
{
    uint8_t *p = guest_memory_ptr(&m->vm.mem, gpa, len);
    assert_non_null(p);
    return p;
}

/* Exit number n: the VMM's part (clock, exit check, due console input). */
static int exit_at(struct machine *m, struct replay *rp, const struct script *s, uint32_t n, uint64_t addr,
                   uint64_t value, struct error *err)
{
    replay_advance(rp);
    struct replay_exit e = {
        .reason = 2, .size = 1, .rip = 0x100000 + 16 * n + (n >= 3 ? s->rip_bump : 0),
        .reg_hash = replay_hash(0, &n, sizeof(n)), .addr = addr, .value = value,
    };
    int ret = replay_exit(rp, &e, err);
    machine_replay_console(m, rp);
    return ret;
}

static void setup_rng_queue(struct machine *m)
{
    struct virtio_mmio *t = m->virtio[0].mmio;
    virtio_mmio_write(t, 0x70, 4, 3);
    virtio_mmio_write(t, 0x24, 4, 1);
    virtio_mmio_write(t, 0x20, 4, 1);
    virtio_mmio_write(t, 0x70, 4, 0xb);
    virtio_mmio_write(t, 0x30, 4, 0);
    virtio_mmio_write(t, 0x38, 4, 16);
    virtio_mmio_write(t, 0x80, 4, 0x10000);
    virtio_mmio_write(t, 0x90, 4, 0x11000);
    virtio_mmio_write(t, 0xa0, 4, 0x12000);
    virtio_mmio_write(t, 0x44, 4, 1);
    virtio_mmio_write(t, 0x70, 4, 0xf);
}

/* One descriptor of len bytes at gpa, made available and notified. */
static void rng_request(struct machine *m, uint16_t idx, uint64_t gpa, uint32_t len)
{
    uint8_t *desc = gmem(m, 0x10000 + 16 * (idx % 16), 16);
    memcpy(desc, &gpa, 8);
    memcpy(desc + 8, &len, 4);
    uint16_t flags = 2, next = 0;
    memcpy(desc + 12, &flags, 2);
    memcpy(desc + 14, &next, 2);
    uint16_t *avail = (uint16_t *)gmem(m, 0x11000, 4 + 2 * 16);
    avail[2 + idx % 16] = idx % 16;
    __atomic_store_n(&avail[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
    virtio_mmio_write(m->virtio[0].mmio, 0x50, 4, 0);
}

/* The guest's run: reads the RTC, takes entropy, console input that arrives
 * at two exits, a network frame and a block completion, 12 exits in all. */
static int run_guest(struct machine *m, struct replay *rp, const struct script *s, struct error *err)
{
    bool record = replay_mode(rp) == REPLAY_RECORD;
    uint8_t *out = gmem(m, OUT, 4096);
    int ret;
    setup_rng_queue(m);
    uart_write(&m->uart, 3, 1, 0x03);
#define EXIT(n, addr, value) do { if ((ret = exit_at(m, rp, s, n, addr, value, err)) < 0) return ret; } while (0)
    /* 1, 2: the RTC's seconds and minutes. */
    EXIT(1, 0x70, 0);
    cmos_rtc_write(&m->rtc, 0, 1, 0x00);
    out[0] = (uint8_t)cmos_rtc_read(&m->rtc, 1, 1);
    EXIT(2, 0x70, 2);
    cmos_rtc_write(&m->rtc, 0, 1, 0x02);
    out[1] = (uint8_t)cmos_rtc_read(&m->rtc, 1, 1);
    /* 3: entropy into guest memory. */
    EXIT(3, VIRTIO_MMIO_BASE + 0x50, 0);
    if (!s->skip_rng) {
        rng_request(m, 0, OUT + 64, 48);
    }
    /* Console input arrives before exit 4; the guest polls the UART. */
    if (record) {
        assert_int_equal(write(s->console_feed, "hello", 5), 5);
    }
    EXIT(4, 0x3fd, 0);
    for (int i = 0; i < 8 && (uart_read(&m->uart, 5, 1) & 1); i++) {
        out[128 + i] = (uint8_t)uart_read(&m->uart, 0, 1);
    }
    /* 5: a network frame received into guest memory. */
    EXIT(5, 0xd0000000, 1);
    if (record) {
        assert_int_equal(write(s->net_feed, "frame-0123456789", 16), 16);
    }
    struct iovec iov[2] = { { gmem(m, OUT + 256, 10), 10 }, { gmem(m, OUT + 512, 100), 100 } };
    ssize_t got = host_input_net(record ? s->net_fd : -1, iov, 2);
    out[200] = (uint8_t)got;
    /* 6: a block request completes (no disk on a bare machine: the seam's call as virtio-blk makes it). */
    EXIT(6, 0xd0001000, 0);
    host_input_block_completion(m, 7, 4096);
    /* 7: more console input; 8: the guest reads it. */
    if (record) {
        assert_int_equal(write(s->console_feed, "xy", 2), 2);
    }
    EXIT(7, 0x3fd, 0);
    EXIT(8, 0x3f8, 0);
    for (int i = 0; i < 8 && (uart_read(&m->uart, 5, 1) & 1); i++) {
        out[144 + i] = (uint8_t)uart_read(&m->uart, 0, 1);
    }
    /* 9-12: entropy again, the RTC, two quiet exits. */
    EXIT(9, VIRTIO_MMIO_BASE + 0x50, 0);
    rng_request(m, s->skip_rng ? 0 : 1, OUT + 1024, 200);
    EXIT(10, 0x70, 0);
    out[2] = (uint8_t)cmos_rtc_read(&m->rtc, 1, 1);
    EXIT(11, 0x80, 0x11);
    EXIT(12, 0x80, 0x12);
#undef EXIT
    return replay_status(rp, err);
}

/* ---- logs in memfds ---- */

static int new_log(void)
{
    int fd = memfd_create("replay-log", MFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* A copy of fd's content in a new memfd at offset 0 (the engine takes it). */
static int reopen(int fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int r = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(r >= 0);
    return r;
}

static void header_for(const struct machine_config *cfg, struct replay_header *h)
{
    struct error err = { 0 };
    assert_int_equal(machine_replay_header(cfg, REPLAY_START_BOOT, NULL, REPLAY_LOG_VERSION, h, &err), 0);
}

/* Records the script on a fresh machine into a new memfd (returned); *events: how many. */
static int record(struct machine **out, int64_t *events)
{
    struct error err = { 0 };
    struct replay_header h;
    struct replay *rp;
    struct machine *m = bare_machine(&bare_config);
    int cons[2], net[2];
    assert_int_equal(pipe2(cons, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, net), 0);
    m->console.in = cons[0];
    struct script s = { .console_feed = cons[1], .net_fd = net[0], .net_feed = net[1] };
    int log = new_log();
    header_for(&bare_config, &h);
    assert_int_equal(replay_record_begin(&rp, dup(log), &h, &err), 0);
    assert_int_equal(replay_mode(rp), REPLAY_RECORD);
    if (run_guest(m, rp, &s, &err) < 0) {
        fail_msg("record: %s", err.msg);
    }
    *events = replay_end(rp, &err);
    if (*events < 0) {
        fail_msg("record: %s", err.msg);
    }
    close(cons[0]);
    close(cons[1]);
    close(net[0]);
    close(net[1]);
    m->console.in = -1;
    *out = m;
    return log;
}

/* Replays log on a fresh machine; returns replay_end's result (err filled on failure). */
static int64_t replay(int log, const struct machine_config *cfg, const struct script *s, struct machine **out,
                      struct error *err)
{
    struct replay_header h;
    struct replay *rp;
    header_for(cfg, &h);
    int ret = replay_replay_begin(&rp, reopen(log), &h, err);
    if (ret < 0) {
        *out = NULL;
        return ret;
    }
    struct machine *m = bare_machine(&bare_config);
    struct error run_err = { 0 };
    run_guest(m, rp, s, &run_err);
    int64_t n = replay_end(rp, err);
    *out = m;
    return n;
}

static const struct script plain = { .console_feed = -1, .net_fd = -1, .net_feed = -1 };

/* ---- tests ---- */

static void test_record_replay_identical(void **state)
{
    struct error err = { 0 };
    int64_t recorded;
    struct machine *a, *b;
    int log = record(&a, &recorded);
    /* 12 exits, 3 clock reads, 2 entropy, 2 console, 1 frame, 1 block completion. */
    assert_int_equal(recorded, 12 + 3 + 2 + 2 + 1 + 1);
    const uint8_t *out = gmem(a, OUT, 4096);
    assert_memory_equal(out + 128, "hello", 5);
    assert_memory_equal(out + 144, "xy", 2);
    assert_memory_equal(out + 256, "frame-0123", 10);
    assert_int_equal(out[200], 16);
    for (int round = 0; round < 3; round++) {
        int64_t replayed = replay(log, &bare_config, &plain, &b, &err);
        if (replayed < 0) {
            fail_msg("replay %d: %s", round + 1, err.msg);
        }
        assert_int_equal(replayed, recorded);
        assert_same_machine(a, b);
        bare_destroy(b);
    }
    bare_destroy(a);
    close(log);
}

/* Rewrites log event by event through edit (which may change the event); returns the new log. */
static int rewrite(int log, void (*edit)(struct replay_event *ev, uint64_t index))
{
    struct error err = { 0 };
    struct replay_reader r;
    struct replay_writer w;
    struct replay_header h;
    struct replay_event ev;
    int in = reopen(log), out = new_log();
    assert_int_equal(replay_reader_begin(&r, in, &h, &err), 0);
    assert_int_equal(replay_writer_begin(&w, out, &h, &err), 0);
    int ret;
    for (uint64_t i = 0; (ret = replay_reader_next(&r, &ev, &err)) == 1; i++) {
        edit(&ev, i);
        assert_int_equal(replay_writer_event(&w, ev.kind, ev.ordinal, ev.data, ev.len, &err), 0);
    }
    assert_int_equal(ret, 0);
    assert_int_equal(replay_writer_finish(&w, &err), 0);
    replay_reader_free(&r);
    close(in);
    return out;
}

/* The second clock read moves from exit 2 to exit 3. */
static void move_clock(struct replay_event *ev, uint64_t index)
{
    static int clocks;
    if (index == 0) {
        clocks = 0;
    }
    if (ev->kind == REPLAY_EV_CLOCK && ++clocks == 2) {
        ev->ordinal = 3;
    }
}

/* The value of exit 11 (a port write) changes. */
static void change_exit_value(struct replay_event *ev, uint64_t index)
{
    (void)index;
    if (ev->kind == REPLAY_EV_EXIT && ev->ordinal == 11) {
        struct replay_exit e;
        memcpy(&e, ev->data, sizeof(e));
        e.value = 0x99;
        memcpy(ev->data, &e, sizeof(e));
    }
}

static void assert_diverged(int64_t ret, const struct error *err, const char *at)
{
    assert_true(ret < 0);
    if (!strstr(err->msg, "diverged") || !strstr(err->msg, at) || !strstr(err->msg, "expected") ||
        !strstr(err->msg, "actual")) {
        fail_msg("not the divergence expected (%s): %s", at, err->msg);
    }
}

static void test_tampered_log_diverges(void **state)
{
    struct error err = { 0 };
    int64_t recorded;
    struct machine *a, *b;
    int log = record(&a, &recorded);

    int moved = rewrite(log, move_clock);
    int64_t ret = replay(moved, &bare_config, &plain, &b, &err);
    assert_diverged(ret, &err, "at exit 2:");
    assert_non_null(strstr(err.msg, "clock (8 bytes) at exit 3"));
    bare_destroy(b);
    close(moved);

    error_clear(&err);
    int value = rewrite(log, change_exit_value);
    ret = replay(value, &bare_config, &plain, &b, &err);
    assert_diverged(ret, &err, "at exit 11:");
    assert_non_null(strstr(err.msg, "value 0x99"));
    assert_non_null(strstr(err.msg, "value 0x11"));
    bare_destroy(b);
    close(value);

    bare_destroy(a);
    close(log);
}

static void test_modified_guest_diverges(void **state)
{
    struct error err = { 0 };
    int64_t recorded;
    struct machine *a, *b;
    int log = record(&a, &recorded);

    struct script rip = plain;
    rip.rip_bump = 4;
    int64_t ret = replay(log, &bare_config, &rip, &b, &err);
    assert_diverged(ret, &err, "at exit 3:");
    assert_non_null(strstr(err.msg, "rip 0x100030"));
    assert_non_null(strstr(err.msg, "rip 0x100034"));
    bare_destroy(b);

    error_clear(&err);
    struct script no_rng = plain;
    no_rng.skip_rng = true;
    ret = replay(log, &bare_config, &no_rng, &b, &err);
    /* The entropy the log has at exit 3 is never asked for. */
    assert_diverged(ret, &err, "at exit 3:");
    assert_non_null(strstr(err.msg, "expected entropy (48 bytes)"));
    bare_destroy(b);

    bare_destroy(a);
    close(log);
}

static void test_other_configuration_refused(void **state)
{
    struct error err = { 0 };
    int64_t recorded;
    struct machine *a, *b;
    int log = record(&a, &recorded);
    struct machine_config other = bare_config;
    other.memory = 32ull << 20;
    assert_true(replay(log, &other, &plain, &b, &err) < 0);
    assert_null(b);
    assert_non_null(strstr(err.msg, "another configuration"));

    /* Another starting point. */
    struct replay_header h;
    struct replay *rp;
    error_clear(&err);
    assert_int_equal(machine_replay_header(&bare_config, REPLAY_START_LOADVM, "snap1", REPLAY_LOG_VERSION, &h, &err), 0);
    assert_true(replay_replay_begin(&rp, reopen(log), &h, &err) < 0);
    assert_non_null(strstr(err.msg, "starts from boot, this run from --loadvm snap1"));

    /* Another kernel: a file's content changes the hash. */
    char path[] = "/tmp/replay-kernel-XXXXXX";
    int kfd = mkstemp(path);
    assert_true(kfd >= 0);
    assert_int_equal(write(kfd, "kernel-1", 8), 8);
    struct machine_config k = bare_config;
    k.kernel = path;
    struct replay_header h1, h2;
    assert_int_equal(machine_replay_header(&k, REPLAY_START_BOOT, NULL, REPLAY_LOG_VERSION, &h1, &err), 0);
    assert_int_equal(pwrite(kfd, "2", 1, 7), 1);
    assert_int_equal(machine_replay_header(&k, REPLAY_START_BOOT, NULL, REPLAY_LOG_VERSION, &h2, &err), 0);
    assert_int_equal(h1.config_hash, h2.config_hash);
    assert_true(h1.kernel_hash != h2.kernel_hash);
    close(kfd);
    unlink(path);

    bare_destroy(a);
    close(log);
}

/* Every truncation and every flipped byte of a log is refused by the reader with a clear message. */
static void test_corrupt_log_refused(void **state)
{
    int64_t recorded;
    struct machine *a;
    int log = record(&a, &recorded);
    struct stat st;
    assert_int_equal(fstat(log, &st), 0);
    size_t size = (size_t)st.st_size;
    uint8_t *orig = malloc(size);
    assert_non_null(orig);
    assert_int_equal(pread(log, orig, size, 0), (ssize_t)size);
    for (size_t cut = 0; cut <= size; cut += (cut < 64 ? 1 : 7)) {
        for (int flip = 0; flip < 2; flip++) {
            if (flip && cut == size) {
                continue;
            }
            int fd = new_log();
            if (flip) {
                uint8_t *copy = malloc(size);
                memcpy(copy, orig, size);
                copy[cut] ^= 0x20;
                assert_int_equal(write(fd, copy, size), (ssize_t)size);
                free(copy);
            } else {
                assert_int_equal(write(fd, orig, cut), (ssize_t)cut);
            }
            lseek(fd, 0, SEEK_SET);
            struct error err = { 0 };
            struct replay_reader r;
            struct replay_header h;
            struct replay_event ev;
            int ret = replay_reader_begin(&r, fd, &h, &err);
            uint64_t n = 0;
            while (ret == 0 && (ret = replay_reader_next(&r, &ev, &err)) == 1) {
                n++;
                ret = 0;
            }
            replay_reader_free(&r);
            close(fd);
            if (!flip && cut == size) {
                assert_int_equal(ret, 0);
                assert_int_equal(n, (uint64_t)recorded);
                continue;
            }
            if (ret >= 0) {
                fail_msg("a log %s at byte %zu was accepted", flip ? "flipped" : "cut", cut);
            }
            if (!strstr(err.msg, "truncated") && !strstr(err.msg, "corrupt") && !strstr(err.msg, "magic") &&
                !strstr(err.msg, "version") && !strstr(err.msg, "header")) {
                fail_msg("an unclear refusal at byte %zu: %s", cut, err.msg);
            }
        }
    }
    free(orig);
    bare_destroy(a);
    close(log);
}

/* An event of REPLAY_MAX_PAYLOAD bytes whose numbers are padded to their
 * longest (10 bytes each, still decoding to small values) and whose check
 * is right: refused, not read past the reader's event buffer (ASan). And a
 * number with bits past the 64th. */
static void test_padded_numbers_refused(void **state)
{
    (void)state;
    int64_t recorded;
    struct machine *a;
    int log = record(&a, &recorded);
    struct error err = { 0 };
    struct replay_reader r;
    struct replay_header h;
    int fd = reopen(log);
    assert_int_equal(replay_reader_begin(&r, fd, &h, &err), 0);
    size_t header = (size_t)r.offset;
    replay_reader_free(&r);
    close(fd);

    uint8_t *head = malloc(header);
    size_t most = header + 1 + 20 + REPLAY_MAX_PAYLOAD + 4;
    uint8_t *bad = calloc(1, most);
    assert_non_null(head);
    assert_non_null(bad);
    assert_int_equal(pread(log, head, header, 0), (ssize_t)header);
    for (int variant = 0; variant < 2; variant++) {
        memcpy(bad, head, header);
        uint8_t *ev = bad + header, *p = ev;
        *p++ = REPLAY_EV_ENTROPY;
        uint64_t len = variant == 0 ? REPLAY_MAX_PAYLOAD : 1;
        for (int i = 0; i < 9; i++) {           /* step 0, padded; or bits past 64 */
            *p++ = 0x80;
        }
        *p++ = variant == 0 ? 0x00 : 0x7f;
        for (int i = 0; i < 9; i++, len >>= 7) {
            *p++ = (uint8_t)(len & 0x7f) | 0x80;
        }
        *p++ = (uint8_t)len;
        p += variant == 0 ? REPLAY_MAX_PAYLOAD : 1;
        uint32_t check = (uint32_t)replay_hash(0, ev, (size_t)(p - ev));
        memcpy(p, &check, 4);                   /* little-endian, as the log */
        p += 4;
        fd = new_log();
        assert_int_equal(write(fd, bad, (size_t)(p - bad)), (ssize_t)(p - bad));
        lseek(fd, 0, SEEK_SET);
        struct replay_event e;
        error_clear(&err);
        assert_int_equal(replay_reader_begin(&r, fd, &h, &err), 0);
        assert_true(replay_reader_next(&r, &e, &err) < 0);
        assert_non_null(strstr(err.msg, "corrupt"));
        assert_non_null(strstr(err.msg, "64 bits"));
        replay_reader_free(&r);
        close(fd);
    }
    free(bad);
    free(head);
    bare_destroy(a);
    close(log);
}

/* Without a feeder or an observer the seam reads the host as before. */
/* A disk image's hash covers all of it, read in pieces: a byte changed past
 * the first read changes it, put back gives the same hash again. Version 2
 * hashes otherwise (its logs are checked against their own hash). */
static void test_file_hash_covers_the_whole_file(void **state)
{
    (void)state;
    struct error err = { 0 };
    char path[] = "/tmp/test_replay_hash.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t size = (5u << 19) + 17;                       /* 2.5 MiB + 17: several reads of either size */
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    for (size_t i = 0; i < size; i++) {
        buf[i] = (uint8_t)(i * 131 + (i >> 12));
    }
    assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
    uint64_t h3, h2, again;
    assert_int_equal(replay_hash_file(path, REPLAY_LOG_VERSION, &h3, &err), 0);
    assert_int_equal(replay_hash_file(path, 2, &h2, &err), 0);
    assert_true(h3 != h2 && h3 != 0);
    {
        size_t at = (2u << 20) + 5;
        uint8_t flipped = buf[at] ^ 1;
        assert_int_equal(pwrite(fd, &flipped, 1, (off_t)at), 1);
        assert_int_equal(replay_hash_file(path, REPLAY_LOG_VERSION, &again, &err), 0);
        assert_true(again != h3);
        assert_int_equal(replay_hash_file(path, 2, &again, &err), 0);
        assert_true(again != h2);
        assert_int_equal(pwrite(fd, &buf[at], 1, (off_t)at), 1);
    }
    assert_int_equal(replay_hash_file(path, REPLAY_LOG_VERSION, &again, &err), 0);
    assert_int_equal(again, h3);
    assert_int_equal(replay_hash_file(NULL, REPLAY_LOG_VERSION, &again, &err), 0);
    assert_int_equal(again, 0);
    unlink(path);
    assert_true(replay_hash_file(path, REPLAY_LOG_VERSION, &again, &err) < 0);
    assert_non_null(strstr(err.msg, path));
    close(fd);
    free(buf);
}

static void test_seam_untouched_when_off(void **state)
{
    int64_t t = host_input_clock();
    assert_true(t > 1600000000);
    uint8_t b[16];
    assert_int_equal(host_input_entropy(b, sizeof(b)), 16);
}

/* The exit record: the same exit gives the same record; a different RIP,
 * register, port, value or direction a different one. */
static void test_kvm_exit_record(void **state)
{
    static uint8_t page[4096] __attribute__((aligned(64)));
    struct kvm_run *run = (struct kvm_run *)page;
    struct kvm_regs regs = { .rip = 0x1234, .rax = 0x41, .rflags = 0x2 | (1u << 16) };
    struct replay_exit a, b;
    run->exit_reason = KVM_EXIT_IO;
    run->io.direction = KVM_EXIT_IO_OUT;
    run->io.size = 1;
    run->io.port = 0x3f8;
    run->io.count = 1;
    run->io.data_offset = 1024;
    page[1024] = 'A';
    replay_kvm_exit(run, &regs, replay_hash, &a);
    assert_int_equal(a.reason, KVM_EXIT_IO);
    assert_int_equal(a.rip, 0x1234);
    assert_int_equal(a.addr, 0x3f8);
    assert_int_equal(a.size, 1);
    assert_int_equal(a.value & 0xff, 'A');
    replay_kvm_exit(run, &regs, replay_hash, &b);
    assert_memory_equal(&a, &b, sizeof(a));
    regs.rflags &= ~(1u << 16);                 /* RF does not count */
    replay_kvm_exit(run, &regs, replay_hash, &b);
    assert_memory_equal(&a, &b, sizeof(a));
    regs.rbx = 1;
    replay_kvm_exit(run, &regs, replay_hash, &b);
    assert_true(a.reg_hash != b.reg_hash);
    regs.rbx = 0;
    page[1024] = 'B';
    replay_kvm_exit(run, &regs, replay_hash, &b);
    assert_true(a.value != b.value);
    page[1024] = 'A';
    run->io.direction = KVM_EXIT_IO_IN;
    replay_kvm_exit(run, &regs, replay_hash, &b);
    assert_true(a.value != b.value);

    memset(page, 0, sizeof(page));
    run->exit_reason = KVM_EXIT_MMIO;
    run->mmio.phys_addr = 0xd0000050;
    run->mmio.len = 4;
    run->mmio.is_write = 1;
    memcpy(run->mmio.data, "\x01\x00\x00\x00", 4);
    replay_kvm_exit(run, &regs, replay_hash, &a);
    assert_int_equal(a.addr, 0xd0000050);
    assert_int_equal(a.size, 4);
    assert_int_equal(a.value, 1ull | 1ull << 63);
}

static void test_kvm_cpuid_masked(void **state)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 6 * sizeof(struct kvm_cpuid_entry2));
    assert_non_null(c);
    c->nent = 6;
    c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0xffffffff, .edx = 0xffffffff };
    c->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .ebx = 0xffffffff };
    c->entries[2] = (struct kvm_cpuid_entry2){ .function = 7, .index = 1, .ebx = 0xffffffff };
    c->entries[3] = (struct kvm_cpuid_entry2){ .function = 0x80000007, .edx = 0xffffffff };
    c->entries[4] = (struct kvm_cpuid_entry2){ .function = 0x40000001, .eax = 0xffffffff };
    c->entries[5] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd, .ebx = 0xffffffff };
    assert_int_equal(replay_kvm_mask_cpuid(c), 1 + 1 + 1 + 7);
    assert_int_equal(c->entries[0].ecx, 0xffffffff & ~(1u << 30));      /* RDRAND */
    assert_int_equal(c->entries[0].edx, 0xffffffff);
    assert_int_equal(c->entries[1].ebx, 0xffffffff & ~(1u << 18));      /* RDSEED */
    assert_int_equal(c->entries[2].ebx, 0xffffffff);                    /* another subleaf */
    assert_int_equal(c->entries[3].edx, 0xffffffff & ~(1u << 8));       /* invariant TSC */
    uint32_t kvm = c->entries[4].eax;
    assert_int_equal(kvm & (1u << 0 | 1u << 3 | 1u << 24 | 1u << 5 | 1u << 4), 0);
    assert_true(kvm & (1u << 1));                                       /* NOP_IO_DELAY stays */
    assert_int_equal(c->entries[5].ebx, 0xffffffff);
    assert_int_equal(replay_kvm_mask_cpuid(c), 0);                      /* idempotent */
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seam_untouched_when_off),
        cmocka_unit_test(test_file_hash_covers_the_whole_file),
        cmocka_unit_test(test_record_replay_identical),
        cmocka_unit_test(test_tampered_log_diverges),
        cmocka_unit_test(test_modified_guest_diverges),
        cmocka_unit_test(test_other_configuration_refused),
        cmocka_unit_test(test_corrupt_log_refused),
        cmocka_unit_test(test_padded_numbers_refused),
        cmocka_unit_test(test_kvm_exit_record),
        cmocka_unit_test(test_kvm_cpuid_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
