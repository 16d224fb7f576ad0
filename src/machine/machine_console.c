/* The machine's console: stdio, a file or a UNIX socket that one client
 * at a time connects to. Output goes to COM1 and virtio-console; input,
 * from the main loop, to COM1. */
#include "machine/machine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
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
    c->in = c->out = c->listen = -1;
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

static void console_input(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    uint8_t buf[64];
    /* Take no more than the UART can hold; the rest waits in the fd. */
    ssize_t n = uart_can_receive(&m->uart) ? host_input_console(fd, buf, 16) : 0;
    if (n > 0 && m->console.is_tty) {
        bool quit = false;
        n = (ssize_t)console_mux_input(&m->console.mux, buf, (size_t)n, &quit);
        if (quit) {
            machine_quit(m);
        }
        if (n == 0) {
            return;
        }
    }
    if (n > 0) {
        uart_receive(&m->uart, buf, (size_t)n);
    } else if (n == 0 && uart_can_receive(&m->uart)) {
        event_loop_remove(&m->loop, fd);    /* end of input */
        if (fd != STDIN_FILENO) {
            close(fd);
            /* A vCPU may be transmitting to it right now. */
            uart_set_output(&m->uart, -1);
            m->console.in = -1;
        }
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        event_loop_remove(&m->loop, fd);
    }
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
}
