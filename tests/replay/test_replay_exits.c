/* The exit clock on the vCPU's side (issue 13), without KVM, on the fake
 * exit sequence of fake_exits.h. Recorded, then replayed three times: the
 * same decisions, vectors, counter and TSC values at every exit; a guest
 * that differs at one exit diverges there; a replay that runs on past the
 * log ends there. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "fake_exits.h"
#include "hw/acpi_tables.h"

static const struct machine_config config = { .cpus = 1, .memory = 16ull << 20, .record_replay = true };

static char log_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(log_path, sizeof(log_path), "/tmp/test_replay_exits.XXXXXX");
    int fd = mkstemp(log_path);
    assert_true(fd >= 0);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(log_path);
    return 0;
}

/* A whole run: nsteps exits; returns the first STOP/END step or nsteps. */
static int run(enum machine_replay_mode mode, int nsteps, int bump_at, struct trace *t, int64_t *events,
               struct error *err)
{
    struct machine *m = bare_machine(&config);
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    memset(t, 0, sizeof(*t));
    assert_int_equal(machine_replay_start(m, mode, log_path, NULL, NULL, 0, err), 0);
    int n;
    for (n = 0; n < nsteps; n++) {
        int act = one_exit(m, kr, n, n == bump_at ? 0x10 : 0, t, err);
        if (act == REPLAY_ACT_STOP || act == REPLAY_ACT_END) {
            break;
        }
    }
    struct error end_err = { 0 };
    *events = machine_replay_finish(m, &(int){ 0 }, n < nsteps ? &end_err : err);
    free(kr);
    bare_destroy(m);
    return n;
}

/* The whole script recorded into log_path: its events. */
static int64_t record_script(struct trace *rec)
{
    struct error err = { 0 };
    int64_t recorded;
    assert_int_equal(run(MACHINE_REPLAY_RECORD, NSTEPS, -1, rec, &recorded, &err), NSTEPS);
    assert_true(recorded > NSTEPS);
    return recorded;
}

static void record_then_replay_three_times(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct trace rec, rep;
    int64_t replayed, recorded = record_script(&rec);
    /* The recording itself did what the PIT and PIC say. */
    assert_int_equal(rec.read[8] | rec.read[9] << 8, PIT_PERIOD - EXIT_CLOCK_TICKS_PER_EXIT);  /* a device sees the time before its exit counts */
    assert_true(rec.window[9] && rec.window[13]);       /* IRQ 0 at IF=0: a window asked for */
    assert_false(rec.window[8]);
    assert_int_equal(rec.action[14], REPLAY_ACT_INJECT);
    assert_int_equal(rec.vector[14], 0x20);
    assert_true(rec.action[15] == REPLAY_ACT_GO && rec.window[15]);
    assert_int_equal(rec.action[17], REPLAY_ACT_INJECT);
    assert_int_equal(rec.read[10], (uint64_t)10 * EXIT_CLOCK_TICKS_PER_EXIT * EXIT_CLOCK_TSC_HZ / EXIT_CLOCK_HZ);
    assert_true(rec.read[20] > 1000000 && rec.read[20] < 1000000 + 100000);  /* the written TSC goes on */
    assert_int_equal(rec.read[21], ~0ull);
    assert_int_equal(rec.action[24], REPLAY_ACT_INJECT);    /* woken by the timer */
    assert_int_equal(rec.vector[24], 0x20);
    assert_int_equal(rec.action[25], REPLAY_ACT_GO);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run(MACHINE_REPLAY_PLAY, NSTEPS, -1, &rep, &replayed, &err), NSTEPS);
        assert_int_equal(replayed, recorded);
        assert_memory_equal(&rec, &rep, sizeof(rec));
    }
}

static uint32_t log_version(const char *path)
{
    uint8_t head[12];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, sizeof(head), f), sizeof(head));
    fclose(f);
    return (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 | (uint32_t)head[11] << 24;
}

static void copy_to_log(const char *from)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, log_path);
    assert_int_equal(system(cmd), 0);
}

/* The script recorded by the version 2 writer (crc32 checks, hashes a byte
 * at a time) replays: the same decisions as a version 3 recording. */
static void a_version_2_log_replays(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct trace rec, rep;
    int64_t replayed, recorded = record_script(&rec);
    assert_int_equal(log_version(log_path), REPLAY_LOG_VERSION);
    copy_to_log(FIXTURES "/exits-v2.log");
    assert_int_equal(log_version(log_path), 2);
    if (run(MACHINE_REPLAY_PLAY, NSTEPS, -1, &rep, &replayed, &err) != NSTEPS || replayed < 0) {
        fail_msg("the version 2 log: %s", err.msg);
    }
    assert_int_equal(replayed, recorded);
    assert_memory_equal(&rec, &rep, sizeof(rec));
    /* Its register hashes are version 2's: another guest still diverges. */
    assert_int_equal(run(MACHINE_REPLAY_PLAY, NSTEPS, 12, &rep, &replayed, &err), 12);
    assert_non_null(strstr(err.msg, "diverged at exit 13"));
}

static void another_rip_diverges_there(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct trace rec, rep;
    int64_t events;
    assert_int_equal(run(MACHINE_REPLAY_RECORD, NSTEPS, -1, &rec, &events, &err), NSTEPS);
    assert_int_equal(run(MACHINE_REPLAY_PLAY, NSTEPS, 12, &rep, &events, &err), 12);
    assert_int_equal(rep.action[12], REPLAY_ACT_STOP);
    assert_non_null(strstr(err.msg, "diverged at exit 13"));   /* ordinals count from 1 */
    assert_non_null(strstr(err.msg, "rip 0x100030"));
    assert_non_null(strstr(err.msg, "rip 0x100040"));
}

static void replay_past_the_log_ends(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct trace rec, rep;
    int64_t recorded, replayed;
    assert_int_equal(run(MACHINE_REPLAY_RECORD, 16, -1, &rec, &recorded, &err), 16);
    assert_int_equal(run(MACHINE_REPLAY_PLAY, NSTEPS, -1, &rep, &replayed, &err), 16);
    assert_int_equal(rep.action[16], REPLAY_ACT_END);
    assert_int_equal(replayed, recorded);
}

/* Break points (--replay-break, QMP replay-break): only while replaying,
 * only ahead of the replay; hit once, at their exit. */
static void break_points(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct trace t;
    int64_t events;
    assert_int_equal(run(MACHINE_REPLAY_RECORD, NSTEPS, -1, &t, &events, &err), NSTEPS);
    struct machine *m = bare_machine(&config);
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    assert_int_equal(machine_replay_start(m, MACHINE_REPLAY_PLAY, log_path, NULL, NULL, 3, &err), 0);
    int hits[NSTEPS] = { 0 };
    for (int n = 0; n < NSTEPS; n++) {
        assert_int_not_equal(one_exit(m, kr, n, 0, &t, &err), REPLAY_ACT_STOP);
        hits[n] = machine_replay_at_break(m);
        if (n == 5) {
            assert_true(machine_replay_set_break(m, 6, &err) < 0);     /* exit 6 is behind */
            assert_non_null(strstr(err.msg, "cannot set breakpoint at the instruction in the past (exit 6: the replay is at exit 6)"));
            assert_int_equal(machine_replay_set_break(m, 20, &err), 0);
        }
        if (n == 7) {
            assert_int_equal(machine_replay_set_break(m, 0, &err), 0);     /* deleted */
            assert_int_equal(machine_replay_set_break(m, 12, &err), 0);
        }
    }
    for (int n = 0; n < NSTEPS; n++) {
        assert_int_equal(hits[n], n == 2 || n == 11);   /* exits 3 and 12 (ordinals count from 1) */
    }
    assert_true(machine_replay_finish(m, &(int){ 0 }, &err) > 0);
    free(kr);
    bare_destroy(m);
    /* Not while recording. */
    m = bare_machine(&config);
    assert_int_equal(machine_replay_start(m, MACHINE_REPLAY_RECORD, log_path, NULL, NULL, 0, &err), 0);
    assert_true(machine_replay_set_break(m, 100, &err) < 0);
    assert_non_null(strstr(err.msg, "setting the breakpoint is allowed only in play mode"));
    assert_true(machine_replay_finish(m, &(int){ 0 }, &err) >= 0);
    bare_destroy(m);
}

/* Record: console input that ends (EOF) is not read again, and an idle
 * vCPU no longer polls it (it would return at once, forever). */
static void console_end_is_remembered(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct trace t;
    int cons[2];
    assert_int_equal(pipe2(cons, O_NONBLOCK | O_CLOEXEC), 0);
    struct machine *m = bare_machine(&config);
    m->console.in = cons[0];
    assert_int_equal(write(cons[1], "z", 1), 1);
    close(cons[1]);
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    assert_int_equal(machine_replay_start(m, MACHINE_REPLAY_RECORD, log_path, NULL, NULL, 0, &err), 0);
    assert_int_equal(one_exit(m, kr, 0, 0, &t, &err), REPLAY_ACT_GO);
    assert_false(machine_replay_console_closed(m));     /* "z" was read, the end not yet seen */
    assert_int_equal(one_exit(m, kr, 1, 0, &t, &err), REPLAY_ACT_GO);
    assert_true(machine_replay_console_closed(m));
    assert_true(machine_replay_finish(m, &(int){ 0 }, &err) > 0);
    m->console.in = -1;
    close(cons[0]);
    free(kr);
    bare_destroy(m);
}

static void pio_out(struct machine *m, uint16_t port, uint8_t v)
{
    bus_write(&m->vm.pio, port, &v, 1);
}

/* Record/replay's virtio-mmio devices each have an 8259 pin of their own:
 * with the ACPI SCI holding its pin high (an event the guest has not
 * cleared yet), every device's rising line is still an interrupt (a device
 * sharing pin 9 with the SCI made no edge: lost). */
static void mmio_pins_are_not_the_sci(void **state)
{
    (void)state;
    struct machine *m = bare_machine(&config);
    /* Both 8259s as Linux sets them up, every pin unmasked. */
    static const uint8_t init[][2] = { { 0x20, 0x11 }, { 0x21, 0x20 }, { 0x21, 0x04 }, { 0x21, 0x01 },
                                       { 0xa0, 0x11 }, { 0xa1, 0x28 }, { 0xa1, 0x02 }, { 0xa1, 0x01 },
                                       { 0x21, 0x00 }, { 0xa1, 0x00 } };
    for (size_t i = 0; i < sizeof(init) / sizeof(init[0]); i++) {
        pio_out(m, init[i][0], init[i][1]);
    }
    struct irq_line sci = machine_irq_line(m, ACPI_SCI_IRQ);
    irq_line_set(&sci, 1);
    assert_int_equal(pic_acknowledge(&m->replay->pic), 0x28 + ACPI_SCI_IRQ - 8);
    pio_out(m, 0xa0, 0x20);
    pio_out(m, 0x20, 0x20);
    assert_false(pic_has_interrupt(&m->replay->pic));
    for (int n = 0; n < machine_mmio_max(m); n++) {
        unsigned pin = machine_mmio_irq(m, n);
        assert_true(pin < 16);
        struct irq_line line = machine_irq_line(m, pin);
        irq_line_set(&line, 1);
        assert_true(pic_has_interrupt(&m->replay->pic));
        uint8_t vector = pic_acknowledge(&m->replay->pic);
        assert_int_equal(vector, (pin < 8 ? 0x20 : 0x28) + (pin & 7));
        irq_line_set(&line, 0);
        if (pin >= 8) {
            pio_out(m, 0xa0, 0x20);
        }
        pio_out(m, 0x20, 0x20);
    }
    irq_line_set(&sci, 0);
    bare_destroy(m);
}

static uint8_t pio_in(struct machine *m, uint16_t port)
{
    uint8_t v = 0;
    bus_read(&m->vm.pio, port, &v, 1);
    return v;
}

/* Port 0x61 in record/replay mode: bits 0-3 as written, the refresh bit
 * toggling every 18 ticks of the exit clock, counter 2's output in bit 5,
 * the i8042 beside it still answering. */
static void port_b_follows_the_exit_clock(void **state)
{
    (void)state;
    struct machine *m = bare_machine(&config);
    struct machine_replay *r = m->replay;
    pio_out(m, 0x61, 0xf3);
    assert_int_equal(pio_in(m, 0x61) & 0xcf, 0x03);
    uint8_t first = pio_in(m, 0x61) & 0x10;
    r->clock.ticks += 18;
    assert_int_not_equal(pio_in(m, 0x61) & 0x10, first);
    r->clock.ticks += 18;
    assert_int_equal(pio_in(m, 0x61) & 0x10, first);
    /* Counter 2, mode 0, 100 ticks: OUT2 low until they passed. */
    pit_set_time(&r->pit, r->clock.ticks);
    pio_out(m, 0x43, 0xb0);
    pio_out(m, 0x42, 100);
    pio_out(m, 0x42, 0);
    pit_set_time(&r->pit, r->clock.ticks + 99);
    assert_int_equal(pio_in(m, 0x61) & 0x20, 0);
    pit_set_time(&r->pit, r->clock.ticks + 100);
    assert_int_equal(pio_in(m, 0x61) & 0x20, 0x20);
    assert_int_equal(pio_in(m, 0x64) & 0x01, 0);       /* the i8042's status: no output byte */
    bare_destroy(m);
}

/* One exit reading port 0x61 at rip, through the exit clock. */
static int port_b_exit(struct machine *m, struct kvm_run *run, uint64_t rip, uint8_t *value, struct error *err)
{
    memset(run, 0, 8192);
    fake_io_exit(run, true, 0x61);
    bus_read(&m->vm.pio, 0x61, (uint8_t *)run + FAKE_IO_DATA, 1);
    *value = *((uint8_t *)run + FAKE_IO_DATA);
    struct kvm_regs regs = { .rip = rip, .rflags = 2 };
    uint8_t vector;
    return machine_replay_exit(m, run, &regs, &vector, err);
}

/* The values a guest reads from port 0x61 (the refresh bit toggling with
 * the exits) are logged with each exit and come back in replay; a replay
 * that reads another value there diverges at that exit, naming the port. */
static void port_b_reads_replay(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    uint8_t rec[12], rep[12];
    for (int pass = 0; pass < 3; pass++) {
        struct machine *m = bare_machine(&config);
        enum machine_replay_mode mode = pass == 0 ? MACHINE_REPLAY_RECORD : MACHINE_REPLAY_PLAY;
        assert_int_equal(machine_replay_start(m, mode, log_path, NULL, NULL, 0, &err), 0);
        uint8_t *out = pass == 0 ? rec : rep;
        int act = REPLAY_ACT_GO;
        for (int n = 0; n < 12 && act == REPLAY_ACT_GO; n++) {
            if (pass == 2 && n == 7) {
                m->replay->port_b = 0x01;           /* a replay whose port reads differently */
            }
            act = port_b_exit(m, kr, 0x2000 + (uint64_t)n, &out[n], &err);
        }
        if (pass < 2) {
            assert_int_equal(act, REPLAY_ACT_GO);
            assert_true(machine_replay_finish(m, &(int){ 0 }, &err) > 0);
        } else {
            assert_int_equal(act, REPLAY_ACT_STOP);
            assert_non_null(strstr(err.msg, "diverged at exit 8"));
            assert_non_null(strstr(err.msg, "addr 0x61"));
            machine_replay_finish(m, &(int){ 0 }, &err);
        }
        bare_destroy(m);
        if (pass == 1) {
            assert_memory_equal(rec, rep, sizeof(rec));
        }
    }
    bool toggled = false;
    for (int n = 1; n < 12; n++) {
        toggled = toggled || ((rec[n] ^ rec[0]) & 0x10);
    }
    assert_true(toggled);
    free(kr);
}

/* One port access by a guest that can take interrupts, through the bus and
 * the exit clock: the clock's decision, *io the byte read or written. */
static int guest_io(struct machine *m, struct kvm_run *run, bool in, uint16_t port, uint8_t *io, uint64_t rip,
                    uint8_t *vector, struct error *err)
{
    memset(run, 0, 8192);
    fake_io_exit(run, in, port);
    run->if_flag = 1;
    run->ready_for_interrupt_injection = 1;
    uint8_t *data = (uint8_t *)run + FAKE_IO_DATA;
    *data = *io;
    if (in) {
        bus_read(&m->vm.pio, port, data, 1);
        *io = *data;
    } else {
        bus_write(&m->vm.pio, port, data, 1);
    }
    struct kvm_regs regs = { .rip = rip, .rflags = 0x202 };
    *vector = 0;
    return machine_replay_exit(m, run, &regs, vector, err);
}

/* A guest sets IRQ 5 level-triggered in the ELCR (port 0x4d0) while a device
 * holds the line high: it is injected again after each EOI until the line
 * drops. Recorded and replayed twice with the same decisions; a replay
 * whose ELCR write differs diverges at that exit. */
static void elcr_replays(void **state)
{
    (void)state;
    struct error err = { 0 };
    struct kvm_run *kr = calloc(1, 8192);
    assert_non_null(kr);
    static const struct { bool in; uint16_t port; uint8_t value; } steps[] = {
        { false, 0x20, 0x11 }, { false, 0x21, 0x20 }, { false, 0x21, 0x04 }, { false, 0x21, 0x01 },
        { false, 0x21, 0xdf },                          /* only IRQ 5 unmasked */
        { false, 0x4d0, 0x20 }, { true, 0x4d0, 0 },     /* 6: the device raises IRQ 5 after this exit */
        { false, 0x20, 0x20 }, { false, 0x20, 0x20 },   /* EOIs: 9 lowers the line after its EOI */
        { false, 0x20, 0x20 }, { false, 0x80, 0 },
    };
    enum { N = sizeof(steps) / sizeof(steps[0]) };
    int rec[N], rep[N];
    uint8_t rec_vec[N], rep_vec[N], read_back = 0;
    for (int pass = 0; pass < 4; pass++) {
        struct machine *m = bare_machine(&config);
        struct irq_line line = machine_irq_line(m, 5);
        enum machine_replay_mode mode = pass == 0 ? MACHINE_REPLAY_RECORD : MACHINE_REPLAY_PLAY;
        assert_int_equal(machine_replay_start(m, mode, log_path, NULL, NULL, 0, &err), 0);
        int *act = pass == 0 ? rec : rep;
        uint8_t *vec = pass == 0 ? rec_vec : rep_vec;
        int n;
        for (n = 0; n < N; n++) {
            uint8_t io = pass == 3 && n == 5 ? 0x00 : steps[n].value;   /* pass 3: the ELCR left edge */
            act[n] = guest_io(m, kr, steps[n].in, steps[n].port, &io, 0x3000 + (uint64_t)n, &vec[n], &err);
            if (act[n] == REPLAY_ACT_STOP) {
                break;
            }
            read_back = n == 6 ? io : read_back;
            if (n == 6 || n == 9) {
                irq_line_set(&line, n == 6);
            }
        }
        if (pass < 3) {
            assert_int_equal(n, N);
            assert_int_equal(read_back, 0x20);
            assert_true(machine_replay_finish(m, &(int){ 0 }, &err) > 0);
        } else {
            assert_int_equal(n, 5);
            assert_non_null(strstr(err.msg, "diverged at exit 6"));
            assert_non_null(strstr(err.msg, "addr 0x4d0"));
            machine_replay_finish(m, &(int){ 0 }, &err);
        }
        bare_destroy(m);
        if (pass == 1 || pass == 2) {
            assert_memory_equal(rec, rep, sizeof(rec));
            assert_memory_equal(rec_vec, rep_vec, sizeof(rec_vec));
        }
    }
    /* Raised after step 6 (the read back), injected at 7, again after each EOI while high (8, 9), not after it dropped. */
    assert_int_equal(rec[6], REPLAY_ACT_GO);
    for (int n = 7; n <= 9; n++) {
        assert_int_equal(rec[n], REPLAY_ACT_INJECT);
        assert_int_equal(rec_vec[n], 0x25);
    }
    assert_int_equal(rec[10], REPLAY_ACT_GO);
    free(kr);
}

static void non_synchronous_exits_do_not_count(void **state)
{
    (void)state;
    assert_false(exit_clock_counts(KVM_EXIT_INTR));
    assert_false(exit_clock_counts(KVM_EXIT_FAIL_ENTRY));
    assert_true(exit_clock_counts(KVM_EXIT_IO));
    assert_true(exit_clock_counts(KVM_EXIT_X86_RDMSR));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(record_then_replay_three_times, setup, teardown),
        cmocka_unit_test_setup_teardown(another_rip_diverges_there, setup, teardown),
        cmocka_unit_test_setup_teardown(a_version_2_log_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(replay_past_the_log_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(break_points, setup, teardown),
        cmocka_unit_test_setup_teardown(console_end_is_remembered, setup, teardown),
        cmocka_unit_test(non_synchronous_exits_do_not_count),
        cmocka_unit_test_setup_teardown(elcr_replays, setup, teardown),
        cmocka_unit_test(mmio_pins_are_not_the_sci),
        cmocka_unit_test(port_b_follows_the_exit_clock),
        cmocka_unit_test_setup_teardown(port_b_reads_replay, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
