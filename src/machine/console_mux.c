/* The stdio console's escapes and monitor side, with QEMU's words and
 * terminal output (chardev/char-mux.c, util/readline.c, monitor/hmp.c) so
 * that people and scripts used to -nographic find what they expect. */
#include "machine/console_mux.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define ESCAPE_CHAR 0x01    /* Ctrl-A */
#define PROMPT "(qemu) "

void console_mux_init(struct console_mux *mx, int out)
{
    memset(mx, 0, sizeof(*mx));
    mx->out = out;
}

void console_mux_set_monitor(struct console_mux *mx, console_monitor_fn fn, void *opaque)
{
    mx->monitor = fn;
    mx->monitor_opaque = opaque;
}

/* A terminal that went away loses what it was sent; the VM goes on. The
 * terminal may be non-blocking (stdin's O_NONBLOCK is stdout's too when
 * they are one open terminal): a full one is waited for. */
static void put(struct console_mux *mx, const char *s, size_t len)
{
    while (mx->out >= 0 && len) {
        ssize_t n = write(mx->out, s, len);
        if (n > 0) {
            s += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = mx->out, .events = POLLOUT };
            if (poll(&p, 1, 1000) <= 0) {
                return;
            }
        } else if (n == 0 || errno != EINTR) {
            return;
        }
    }
}

static void puts_(struct console_mux *mx, const char *s)
{
    put(mx, s, strlen(s));
}

/* QEMU's order and words; it ends lines "\n\r" here, unlike the monitor.
 * Only the escapes cowvisor has (no -snapshot, timestamps or break). */
static void print_help(struct console_mux *mx)
{
    puts_(mx, "\n\r"
              "C-a h    print this help\n\r"
              "C-a x    exit emulator\n\r"
              "C-a c    switch between console and monitor\n\r"
              "C-a C-a  sends C-a\n\r");
}

/* Hands the monitor's reply to the terminal and frees it. */
static void put_reply(struct console_mux *mx, char *text)
{
    if (text) {
        puts_(mx, text);
        free(text);
    }
}

/* QEMU's readline redraw: back over what is shown, the line again, then
 * erase to the end of the line. */
static void redraw(struct console_mux *mx)
{
    for (size_t i = 0; i < mx->shown; i++) {
        puts_(mx, "\033[D");
    }
    put(mx, mx->line, mx->len);
    puts_(mx, "\033[K");
    mx->shown = mx->len;
}

static void monitor_in(struct console_mux *mx)
{
    mx->len = mx->shown = 0;
    if (!mx->monitor_opened) {
        put_reply(mx, mx->monitor(mx->monitor_opaque, NULL));
        mx->monitor_opened = true;
    }
    puts_(mx, PROMPT);
}

static void toggle_focus(struct console_mux *mx)
{
    if (!mx->monitor) {
        return;     /* the guest's console is the only one */
    }
    mx->monitor_focus = !mx->monitor_focus;
    if (mx->monitor_focus) {
        monitor_in(mx);
    } else {
        puts_(mx, "\r\n");
    }
}

static void run_line(struct console_mux *mx)
{
    puts_(mx, "\r\n");
    mx->line[mx->len] = '\0';
    mx->len = mx->shown = 0;
    /* The line is copied: the monitor may print through the mux. */
    char line[CONSOLE_MUX_LINE_MAX];
    memcpy(line, mx->line, sizeof(line));
    put_reply(mx, mx->monitor(mx->monitor_opaque, line));
    if (mx->monitor_focus) {
        puts_(mx, PROMPT);
    }
}

/* One key for the monitor's line editor: printable characters, backspace
 * and Enter; other control keys (and escape sequences' bytes) are dropped. */
static void monitor_key(struct console_mux *mx, uint8_t c)
{
    if (c == '\r' || c == '\n') {
        run_line(mx);
    } else if (c == 0x7f || c == '\b') {
        if (mx->len > 0) {
            mx->len--;
            redraw(mx);
        }
    } else if (c >= ' ' && c < 0x7f && mx->len + 1 < sizeof(mx->line)) {
        mx->line[mx->len++] = (char)c;
        redraw(mx);
    }
}

/* The key after Ctrl-A. Returns true when it is a Ctrl-A to pass on. */
static bool escape_command(struct console_mux *mx, uint8_t c, bool *quit)
{
    switch (c) {
    case ESCAPE_CHAR:
        return true;
    case 'h':
    case '?':
        print_help(mx);
        break;
    case 'x':
        puts_(mx, "QEMU: Terminated\n\r");
        *quit = true;
        break;
    case 'c':
        toggle_focus(mx);
        break;
    }
    return false;
}

size_t console_mux_input(struct console_mux *mx, uint8_t *buf, size_t n, bool *quit)
{
    size_t k = 0;
    for (size_t i = 0; i < n && !*quit; i++) {
        uint8_t c = buf[i];
        if (mx->escape) {
            mx->escape = false;
            if (!escape_command(mx, c, quit)) {
                continue;
            }
        } else if (c == ESCAPE_CHAR) {
            mx->escape = true;
            continue;
        }
        if (mx->monitor_focus) {
            monitor_key(mx, c);
        } else {
            buf[k++] = c;
        }
    }
    return k;
}

bool console_tty_raw(int fd, struct termios *saved)
{
    if (!isatty(fd) || tcgetattr(fd, saved) != 0) {
        return false;
    }
    struct termios raw = *saved;
    /* As QEMU's -nographic: Ctrl-C goes to the guest, Ctrl-A x quits. */
    raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO | ISIG);
    return tcsetattr(fd, TCSANOW, &raw) == 0;
}

void console_tty_restore(int fd, const struct termios *saved)
{
    tcsetattr(fd, TCSANOW, saved);
}
