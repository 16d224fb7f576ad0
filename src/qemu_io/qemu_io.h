/* qemu-io's command language on a blockdev (the commands of QEMU's
 * qemu-io-cmds.c: read, write, aio, discard, map, info, ...), used by the
 * cowio program and by cowvisor's HMP qemu-io. State shared by the command
 * files, and the helpers they all use to parse and print the way qemu-io
 * 7.2 does (tests compare our output with its output line by line): on
 * stdout and stderr, as QEMU prints them in both places. */
#ifndef QEMU_IO_QEMU_IO_H
#define QEMU_IO_QEMU_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "block/blockdev.h"

/* qemu's BDRV_REQUEST_MAX_BYTES: INT_MAX rounded down to a sector. */
#define COWIO_MAX_REQUEST 2147483136LL

/* How the image is opened; main's options and the open command fill it. */
struct cowio_open {
    const char *format;     /* NULL: probe */
    unsigned flags;         /* BDEV_* open flags */
    bool writethrough;      /* flush after every write (qemu-io's default) */
    bool no_flush;          /* cache=unsafe: flush requests are ignored */
    bool copy_on_read;
    bool compress;          /* driver=compress: data writes go out compressed */
    bool snapshot;          /* -s: writes go to a temporary overlay */
};

/* A finished aio request whose report qemu-io would print when its event
 * loop next runs; we print it at the same points. */
struct cowio_pending {
    struct cowio_pending *next;
    char *text;
};

struct cowio {
    struct blockdev *bd;            /* NULL when no image is open */
    struct cowio_open open;         /* options of the open image */
    char *open_opts;                /* its option string (-o, --image-opts), or NULL */
    bool image_opts;                /* --image-opts given */
    bool misalign;
    bool quit;
    struct cowio_pending *pending;  /* newest first, then those of aio threads in order */
    struct cowio_aio *aio;          /* requests on their own threads (aio_thread.c) */
    /* Where QEMU's qemu_printf text goes (info's format-specific part):
     * NULL, stdout; under HMP, the monitor's reply, as in QEMU. */
    FILE *monitor;
};

extern const char *cowio_progname;

/* "qemu-io: message" on stderr, like qemu's error_report. */
void cowio_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Commands. */
struct cowio_cmd {
    const char *name;
    const char *altname;
    int (*func)(struct cowio *io, int argc, char **argv);
    int argmin, argmax;         /* argmax -1: unlimited */
    bool global;                /* runs without an open image (help, quit, open) */
    bool wants_write;           /* needs a writable image */
    bool no_drain;              /* does not run the event loop (pending aio stays pending) */
    bool aio;                   /* an aio request: may run on its own thread */
    const char *args;
    const char *oneline;
    void (*help)(void);
};

/* Runs one command line; returns a negative errno when it failed. */
int cowio_run_command(struct cowio *io, const char *line);
/* A program's own commands (cowio's open, close, quit, ...: not QEMU's
 * HMP qemu-io's), found by later lookups. A NULL-terminated table that
 * outlives the process's commands. */
void cowio_add_commands(const struct cowio_cmd *const *table);
void cowio_usage_of(const struct cowio_cmd *cmd);
const struct cowio_cmd *cowio_find_command(const char *name);

/* Command tables of each file (NULL terminated). */
extern const struct cowio_cmd *const cowio_read_cmds[];
extern const struct cowio_cmd *const cowio_write_cmds[];
extern const struct cowio_cmd *const cowio_misc_cmds[];
extern const struct cowio_cmd *const cowio_core_cmds[];

/* Numbers (parse.c). */
int64_t cowio_cvtnum(const char *s);
void cowio_print_cvtnum_err(int64_t rc, const char *arg);
int cowio_parse_pattern(const char *arg);

/* The options of read, write, readv, writev, aio_read and aio_write
 * (io_opts.c): what each letter set. */
struct cowio_io_opts {
    bool vmstate, compressed, machine, fua, no_fallback, quiet, unmap, zero, dump;  /* -b -c -C -f -n -q -u -z -v */
    bool has_pattern;           /* -P */
    int pattern;
    bool has_start, has_len;    /* read's -s and -l: the range the pattern is checked in */
    int64_t pat_start, pat_len;
    const char *file;           /* write's -s: the file the data comes from (NULL: none) */
};
#define COWIO_OPT_S_FILE 1u     /* -s names a file (write), not an offset (read) */
#define COWIO_OPT_VECTOR 2u     /* an offset and one length or more (readv, ...), not exactly one */
/* getopt over argv with letters (getopt's syntax: the options cmd takes);
 * an unknown letter or a wrong count of arguments after them prints cmd's
 * usage. 0: parsed, optind at the offset; 1: -i met (the caller reports
 * an invalid request, as qemu-io at once); negative: refused. */
int cowio_parse_io_opts(int argc, char **argv, const struct cowio_cmd *cmd, const char *letters, unsigned flags,
                        struct cowio_io_opts *o);

/* Output (report.c). */
void cowio_cvtstr(double value, char *str, size_t size);
void cowio_print_report(FILE *out, const char *op, const struct timespec *elapsed, int64_t offset,
                        int64_t count, int64_t total, int ops, bool machine);
void cowio_dump_buffer(FILE *out, const void *buf, int64_t offset, int64_t len);
struct timespec cowio_elapsed(const struct timespec *start);
/* Queues printf-formatted text for the next cowio_drain. */
void cowio_defer(struct cowio *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* aio requests on threads while blkdebug breakpoints are in play
 * (aio_thread.c). A command calls cowio_aio_begin once parsed. */
bool cowio_aio_wanted(struct cowio *io);
int cowio_aio_spawn(struct cowio *io, const struct cowio_cmd *ct, int argc, char **argv);
void cowio_aio_begin(void);
/* Whether the caller runs a request on its own aio thread. */
bool cowio_aio_on_thread(void);
bool cowio_aio_all_done(void *io);
/* Waits for them all; resume: first lets stopped ones go on (closing). */
void cowio_aio_join(struct cowio *io, bool resume);

/* Prints the queued aio reports. */
void cowio_drain(struct cowio *io);

/* Buffers aligned for O_DIRECT (and misaligned on purpose with -m). */
void *cowio_alloc(struct cowio *io, size_t len, int fill);
void cowio_free(struct cowio *io, void *buf);
/* Frees the buffer cowio_free keeps for reuse (at exit). */
void cowio_free_spare(void);

/* I/O with the open's semantics (io.c). */
int cowio_do_read(struct cowio *io, uint64_t off, void *buf, size_t len);
int cowio_do_write(struct cowio *io, uint64_t off, const void *buf, size_t len, bool fua);
int cowio_after_write(struct cowio *io, bool fua);
/* Argument checks shared by the data commands; they print qemu-io's complaint. */
bool cowio_parse_num(const char *arg, int64_t *out);
bool cowio_sector_aligned(int64_t offset, int64_t count);
bool cowio_pattern_ok(const uint8_t *buf, int64_t len, int pattern);
/* The total of a vectored request's length arguments. */
int cowio_vector_length(char **args, int n, int64_t *total);

#endif
