/* The console's input with a guest that takes nothing: keys still reach
 * the monitor (Ctrl-A c), nothing typed for the guest is dropped, and when
 * nothing more can be taken the input is unwatched (no busy main loop). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "bare_machine.h"
#include "machine/machine_int.h"

static char lines[8][64];
static int nlines;

static char *monitor(void *opaque, const char *line)
{
    (void)opaque;
    if (line && nlines < 8) {
        snprintf(lines[nlines++], sizeof(lines[0]), "%s", line);
    }
    return NULL;
}

static void put(int fd, const char *s, size_t n)
{
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

static void test_full_guest_fifo(void **state)
{
    (void)state;
    struct machine_config cfg = { .cpus = 1, .memory = 16 << 20 };
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    int p[2];
    assert_int_equal(pipe(p), 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(null >= 0);
    m->console.in = p[0];
    m->console.is_tty = true;
    console_mux_init(&m->console.mux, null);
    machine_set_console_monitor(m, monitor, NULL);
    assert_int_equal(machine_console_start(m, &err), 0);

    char many[200];
    memset(many, 'a', sizeof(many));
    put(p[1], many, UART_RX_FIFO);
    machine_console_input(m, p[0]);
    assert_false(uart_can_receive(&m->uart));               /* the guest's FIFO is full */

    /* Ten more keys for the guest, then the monitor: all in one read. */
    put(p[1], many, 10);
    put(p[1], "\001chelp\r", 7);
    machine_console_input(m, p[0]);
    assert_int_equal(nlines, 1);
    assert_string_equal(lines[0], "help");
    assert_int_equal(m->console.pending_len, 10);           /* kept, not dropped */
    struct itimerspec t;
    assert_int_equal(timerfd_gettime(m->console.retry_timer, &t), 0);
    assert_true(t.it_interval.tv_nsec > 0);                 /* handed over as the FIFO drains */

    /* Back to the guest; its buffer fills; then the input is unwatched
     * and the retry timer runs. */
    put(p[1], "\001c", 2);
    put(p[1], many, sizeof(m->console.pending));
    for (int i = 0; i < 4 && !m->console.input_paused; i++) {
        machine_console_input(m, p[0]);
    }
    assert_true(m->console.input_paused);
    assert_int_equal(m->console.pending_len, sizeof(m->console.pending));
    assert_int_equal(timerfd_gettime(m->console.retry_timer, &t), 0);
    assert_true(t.it_interval.tv_nsec > 0);

    /* The guest reads its FIFO, the console feeds it what waited: every
     * byte typed for the guest arrives. */
    size_t got = 0;
    for (int round = 0; round < 4; round++) {
        while (uart_read(&m->uart, 5, 1) & 1) {             /* LSR: data ready */
            assert_int_equal(uart_read(&m->uart, 0, 1), 'a');
            got++;
        }
        machine_console_input(m, p[0]);
    }
    assert_int_equal(got, UART_RX_FIFO + 10 + sizeof(m->console.pending));
    close(p[1]);
    machine_console_close(m);
    close(null);
    bare_destroy(m);
}

/* review7: an input unwatched while the guest's buffer is full still
 * wakes the main loop when its writer goes away (epoll reports EPOLLHUP
 * whatever the events asked): with a guest that reads nothing the loop
 * would run the input's callback at once, forever (a busy loop). */
static void test_hangup_while_paused(void **state)
{
    (void)state;
    struct machine_config cfg = { .cpus = 1, .memory = 16 << 20 };
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    int p[2];
    assert_int_equal(pipe(p), 0);
    m->console.in = p[0];
    assert_int_equal(machine_console_start(m, &err), 0);
    char many[400];
    memset(many, 'a', sizeof(many));
    put(p[1], many, sizeof(many));
    for (int i = 0; i < 8 && !m->console.input_paused; i++) {
        machine_console_input(m, p[0]);
    }
    assert_true(m->console.input_paused);
    close(p[1]);                                /* the writer is done: EOF waits in the pipe */
    int spins = 0;
    for (int i = 0; i < 100; i++) {
        struct epoll_event ev[4];
        int n = epoll_wait(m->loop.epfd, ev, 4, 0);
        for (int k = 0; k < n; k++) {
            const int *handler_fd = ev[k].data.ptr;     /* struct event_handler starts with its fd */
            if (*handler_fd == p[0]) {
                spins++;
                machine_console_input(m, p[0]);     /* as event_loop_run dispatches it */
            }
        }
        if (n <= 0) {
            break;
        }
    }
    print_message("input callback ran %d times with the guest reading nothing\n", spins);
    assert_int_equal(spins, 0);
    machine_console_close(m);
    bare_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_guest_fifo),
        cmocka_unit_test(test_hangup_while_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
