/* The machine's console: stdio, a file or a UNIX socket that one client
 * at a time connects to. Output goes to COM1 and virtio-console; input,
 * from the main loop, to COM1. */
#include "machine/machine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "util/log.h"
#include "util/server_socket.h"
#include "vmm/host_input.h"

static struct termios saved_termios;

static int open_stdio(struct console *c)
{
    c->in = STDIN_FILENO;
    c->out = STDOUT_FILENO;
    c->is_tty = console_tty_raw(STDIN_FILENO, &saved_termios);
    return 0;
}

/* unix:PATH or tcp:HOST:PORT (server implied; UNIX sockets mode 0600). */
static int open_listener(struct console *c, const char *spec, struct error *err)
{
    struct server_socket ss;
    int ret = server_socket_open(&ss, spec, "--console", true, err);
    if (ret == 0) {
        c->listen = ss.fd;
    }
    return ret;
}

int machine_console_open(struct machine *m, struct error *err)
{
    struct console *c = &m->console;
    const char *spec = m->cfg->console ? m->cfg->console : "stdio";
    c->in = c->out = c->listen = c->retry_timer = -1;
    console_mux_init(&c->mux, STDOUT_FILENO);
    if (strcmp(spec, "stdio") == 0) {
        return open_stdio(c);
    }
    if (strncmp(spec, "file:", 5) == 0) {
        c->out = open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (c->out < 0) {
            return error_set_errno(err, -errno, "--console: cannot open '%s'", spec + 5);
        }
        return 0;
    }
    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "tcp:", 4) == 0) {
        return open_listener(c, spec, err);
    }
    return error_set(err, -EINVAL, "--console must be stdio, file:PATH, unix:PATH or tcp:HOST:PORT, not '%s'", spec);
}

/* Hands the UART what fits of the bytes typed for the guest. */
static void feed_guest(struct machine *m)
{
    struct console *c = &m->console;
    size_t n = c->pending_len ? uart_receive(&m->uart, c->pending, c->pending_len) : 0;
    memmove(c->pending, c->pending + n, c->pending_len - n);
    c->pending_len -= n;
}

static void end_of_input(struct machine *m, int fd)
{
    event_loop_remove(&m->loop, fd);
    if (fd != STDIN_FILENO) {
        close(fd);
        /* A vCPU may be transmitting to it right now. */
        uart_set_output(&m->uart, -1);
        m->console.in = -1;
    }
}

/* While bytes wait for the guest, a timer hands them over as its FIFO
 * drains (every 10 ms: the UART tells no one when the guest reads). */
static void arm_retry(struct console *c, bool on)
{
    struct itimerspec t = { { 0, 0 }, { 0, 0 } };
    if (on) {
        t.it_interval.tv_nsec = t.it_value.tv_nsec = 10000000;
    }
    if (c->retry_timer >= 0 && on != c->retry_armed) {
        timerfd_settime(c->retry_timer, 0, &t, NULL);
        c->retry_armed = on;
    }
}

static void console_input(void *opaque, int fd, uint32_t events);

/* Nothing more can be read for the guest: stop watching the input (it
 * would be ready again at once, a busy loop) until the guest takes some.
 * Out of the epoll set, not only with no events asked: epoll reports a
 * hang-up whatever was asked, and a writer gone would wake us for ever. */
static void pause_input(struct machine *m, int fd)
{
    struct console *c = &m->console;
    if (c->retry_timer >= 0) {
        event_loop_remove(&m->loop, fd);
        c->input_paused = true;
        arm_retry(c, true);
    }
}

static void retry_input(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    struct console *c = &m->console;
    uint64_t ticks;
    (void)events;
    if (read(fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN) {
        return;
    }
    feed_guest(m);
    if (c->input_paused && c->pending_len < sizeof(c->pending) && c->in >= 0) {
        if (event_loop_add(&m->loop, c->in, EPOLLIN, console_input, m, NULL) < 0) {
            log_warn("console input is no longer watched: out of memory");
        }
        c->input_paused = false;
    }
    arm_retry(c, c->input_paused || c->pending_len > 0);
}

void machine_console_input(struct machine *m, int fd)
{
    struct console *c = &m->console;
    feed_guest(m);
    size_t room = sizeof(c->pending) - c->pending_len;
    /* With the guest's buffer full, a key still reaches the monitor or
     * completes an escape (a byte at a time: one key switches focus). */
    bool to_mux = c->is_tty && (c->mux.monitor_focus || c->mux.escape);
    size_t want = room ? room : to_mux ? 1 : 0;
    if (want == 0) {
        pause_input(m, fd);
        return;
    }
    uint8_t buf[sizeof(c->pending)];
    ssize_t n = host_input_console(fd, buf, want);
    if (n == 0) {
        end_of_input(m, fd);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            event_loop_remove(&m->loop, fd);
        }
        return;
    }
    if (c->is_tty) {
        bool quit = false;
        n = (ssize_t)console_mux_input(&c->mux, buf, (size_t)n, &quit);
        if (quit) {
            machine_quit(m);
        }
    }
    size_t take = (size_t)n < room ? (size_t)n : room;     /* room 0: a Ctrl-A Ctrl-A too many */
    memcpy(c->pending + c->pending_len, buf, take);
    c->pending_len += take;
    feed_guest(m);
    arm_retry(c, c->pending_len > 0);
}

static void console_input(void *opaque, int fd, uint32_t events)
{
    (void)events;
    machine_console_input(opaque, fd);
}

static void console_accept(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0 || m->console.in >= 0) {
        if (c >= 0) {
            close(c);   /* one client at a time */
        }
        return;
    }
    m->console.in = c;
    uart_set_output(&m->uart, c);
    event_loop_add(&m->loop, c, EPOLLIN, console_input, m, NULL);
}

int machine_console_start(struct machine *m, struct error *err)
{
    struct console *c = &m->console;
    c->retry_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int ret = c->retry_timer < 0 ? 0 : event_loop_add(&m->loop, c->retry_timer, EPOLLIN, retry_input, m, err);
    if (ret < 0) {
        return ret;
    }
    if (c->in >= 0) {
        fcntl(c->in, F_SETFL, fcntl(c->in, F_GETFL) | O_NONBLOCK);
        if (event_loop_add(&m->loop, c->in, EPOLLIN, console_input, m, NULL) < 0) {
            log_debug("console input is not pollable; ignoring it");
        }
    }
    if (c->listen >= 0) {
        return event_loop_add(&m->loop, c->listen, EPOLLIN, console_accept, m, err);
    }
    return 0;
}

void machine_set_console_monitor(struct machine *m, console_monitor_fn fn, void *opaque)
{
    console_mux_set_monitor(&m->console.mux, fn, opaque);
}

void machine_console_close(struct machine *m)
{
    struct console *c = &m->console;
    if (c->is_tty) {
        console_tty_restore(STDIN_FILENO, &saved_termios);
    }
    if (c->out > STDERR_FILENO) {
        close(c->out);
    }
    if (c->in > STDERR_FILENO && c->in != c->out) {
        close(c->in);
    }
    if (c->listen >= 0) {
        close(c->listen);
    }
    if (c->retry_timer >= 0) {
        close(c->retry_timer);
        c->retry_timer = -1;
    }
}
