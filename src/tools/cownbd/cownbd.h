/* cownbd: a drop-in qemu-nbd 7.2 serving one image over NBD. */
#ifndef COWNBD_H
#define COWNBD_H

#include <stdbool.h>

#include "block/blockdev.h"
#include "nbd/nbd_export.h"
#include "util/error.h"

struct cownbd_opts {
    const char *filename;
    const char *bind;               /* default 0.0.0.0 */
    const char *port;               /* default 10809 */
    const char *socket_path;        /* UNIX socket instead of TCP */
    int activated_fd;               /* a service manager's listening socket, or -1 */
    const char *format;             /* NULL: probe */
    bool image_opts;                /* --image-opts: filename is an option string */
    const char *pid_file;
    int shared;                     /* clients at once; 0: unlimited */
    bool persistent;
    bool snapshot;
    bool fork;
    bool verbose;
    unsigned open_flags;            /* BDEV_READ_ONLY, BDEV_NO_CACHE */
    struct nbd_export_opts exp;
    const char *bitmaps[NBD_MAX_EXPORT_BITMAPS];   /* -B, the last first (as qemu-nbd) */
};

/* "cownbd: message" on stderr, like QEMU's error_report. */
void cownbd_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The listening socket (TCP or UNIX), ready to accept. */
int cownbd_listen(const struct cownbd_opts *o, int backlog, struct error *err);
/* Opens the image, or with -s a temporary qcow2 overlay on it. */
int cownbd_open_image(const struct cownbd_opts *o, struct blockdev **out, struct error *err);
/* --fork: the caller continues in the daemon; the original process exits
 * once the daemon closes its stderr (0 if the daemon printed nothing). */
int cownbd_daemonize(struct error *err);
/* The daemon's end of the start-up: detaches stderr from the parent. */
void cownbd_daemon_ready(void);
int cownbd_write_pid_file(const char *path, struct error *err);
/* Accepts and serves clients until the last one leaves (unless persistent)
 * or a signal asks to stop. */
int cownbd_serve(int listen_fd, const struct nbd_export *exp, const struct cownbd_opts *o);

#endif
