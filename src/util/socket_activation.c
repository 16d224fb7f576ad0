/* systemd's socket activation: which fds were passed, checked. */
#include "util/socket_activation.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* A decimal number and nothing else, or -1. */
static long parse_count(const char *s)
{
    char *end;
    errno = 0;
    long v = s && *s >= '0' && *s <= '9' ? strtol(s, &end, 10) : -1;
    return v < 0 || errno || *end ? -1 : v;
}

/* The fd is a listening stream socket, now close-on-exec. */
static int check_fd(int fd, struct error *err)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
        return error_set_errno(err, -errno, "Socket activation failed: invalid file descriptor fd = %d", fd);
    }
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) {
        return error_set_errno(err, -errno, "Failed to use socket activation: fd %d", fd);
    }
    if (!listening) {
        return error_set(err, -EINVAL, "Failed to use socket activation: fd %d is not a listening socket", fd);
    }
    return 0;
}

int socket_activation_fds(struct error *err)
{
    /* As systemd and QEMU: variables for another process, or that do not
     * parse, mean no activation. */
    long pid = parse_count(getenv("LISTEN_PID"));
    long n = parse_count(getenv("LISTEN_FDS"));
    if (pid != (long)getpid() || n < 0) {
        return 0;
    }
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    if (n > INT_MAX - SOCKET_ACTIVATION_FIRST_FD) {
        return error_set(err, -EINVAL, "Socket activation failed: LISTEN_FDS=%ld is too many", n);
    }
    for (int i = 0; i < (int)n; i++) {
        int ret = check_fd(SOCKET_ACTIVATION_FIRST_FD + i, err);
        if (ret < 0) {
            return ret;
        }
    }
    return (int)n;
}
