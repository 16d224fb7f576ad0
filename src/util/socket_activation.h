/* systemd's socket activation (sd_listen_fds(3)): a service manager hands
 * its listening sockets over as fds 3, 4, ... with LISTEN_PID (ours) and
 * LISTEN_FDS (how many) in the environment, as qemu-nbd accepts them. */
#ifndef UTIL_SOCKET_ACTIVATION_H
#define UTIL_SOCKET_ACTIVATION_H

#include "util/error.h"

#define SOCKET_ACTIVATION_FIRST_FD 3

/* How many sockets were passed (0: none, or they were meant for another
 * process); the variables are unset so no child sees them, the fds made
 * close-on-exec. Fails when a passed fd is not an open listening socket. */
int socket_activation_fds(struct error *err);

#endif
