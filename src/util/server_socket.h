/* A listening socket from a QEMU chardev-style address, shared by the QMP
 * monitor and the console: unix:PATH or tcp:[HOST]:PORT, with server[=on]
 * and nowait / wait=off. UNIX sockets are created mode 0600 (only the
 * owner may drive the VM) unless perm= says otherwise. */
#ifndef UTIL_SERVER_SOCKET_H
#define UTIL_SERVER_SOCKET_H

#include <stdbool.h>

#include "util/error.h"

struct server_socket {
    int fd;                 /* listening, non-blocking, close-on-exec */
    bool wait;              /* wait for the first client before starting */
    bool is_unix;
    char path[108];         /* UNIX: unlinked at close */
    char where[160];        /* for messages: the address as given */
};

/* what names the option in messages ("--qmp"). implied_server: the
 * address is a server without saying so, and does not wait (a console's
 * unix:PATH). */
int server_socket_open(struct server_socket *ss, const char *spec, const char *what, bool implied_server,
                       struct error *err);
void server_socket_close(struct server_socket *ss);

#endif
