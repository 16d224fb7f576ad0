/* The stdio console shared by the guest's serial port and the monitor, as
 * QEMU's -nographic mux: Ctrl-A c switches between them, Ctrl-A x quits,
 * Ctrl-A h (or ?) prints the escapes, Ctrl-A Ctrl-A is one Ctrl-A. On the
 * monitor's side a line editor echoes what is typed and hands each line to
 * the monitor (a layer above the machine, through a hook). */
#ifndef COWVISOR_CONSOLE_MUX_H
#define COWVISOR_CONSOLE_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs one monitor line and returns what it prints (malloc'ed, lines
 * ending "\r\n"), or NULL for nothing. line is NULL when the monitor is
 * first shown: the reply is its greeting. */
typedef char *(*console_monitor_fn)(void *opaque, const char *line);

#define CONSOLE_MUX_LINE_MAX 1024

struct console_mux {
    int out;                        /* the terminal */
    bool escape;                    /* Ctrl-A seen: the next key is a command */
    bool monitor_focus;             /* keys go to the monitor, not the guest */
    bool monitor_opened;            /* its greeting was printed */
    console_monitor_fn monitor;     /* NULL: Ctrl-A c stays with the guest */
    void *monitor_opaque;
    char line[CONSOLE_MUX_LINE_MAX];
    size_t len;
    size_t shown;                   /* how much of line the terminal shows */
};

void console_mux_init(struct console_mux *mx, int out);
void console_mux_set_monitor(struct console_mux *mx, console_monitor_fn fn, void *opaque);

/* Takes n bytes typed on the terminal and leaves in buf, in place, those
 * for the guest; returns their count. *quit is set on Ctrl-A x. */
size_t console_mux_input(struct console_mux *mx, uint8_t *buf, size_t n, bool *quit);

/* The terminal in raw mode (QEMU's -nographic: Ctrl-C goes to the guest),
 * and back. Returns false when fd is not a terminal. */
struct termios;
bool console_tty_raw(int fd, struct termios *saved);
void console_tty_restore(int fd, const struct termios *saved);

#endif
