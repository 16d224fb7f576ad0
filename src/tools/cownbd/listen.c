/* The listening socket: TCP through getaddrinfo (names and service names
 * work like in qemu-nbd) or a UNIX socket path. */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cownbd.h"

static int listen_unix(const char *path, int backlog, struct error *err)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        return error_set(err, -ENAMETOOLONG, "UNIX socket path '%s' is too long", path);
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Failed to create Unix socket");
    }
    /* A stale socket of an earlier run would make bind fail. */
    if (unlink(path) < 0 && errno != ENOENT) {
        int e = errno;
        close(fd);
        return error_set_errno(err, -e, "Failed to unlink socket %s", path);
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, -e, "Failed to bind socket to %s", path);
    }
    if (listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return error_set_errno(err, -e, "Failed to listen on socket");
    }
    return fd;
}

static int listen_inet(const char *host, const char *port, int backlog, struct error *err)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        return error_set(err, -EINVAL, "address resolution failed for %s:%s: %s", host, port,
                         gai_strerror(rc));
    }
    int fd = -1, last_errno = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return error_set_errno(err, -last_errno, "Failed to bind socket");
    }
    return fd;
}

int cownbd_listen(const struct cownbd_opts *o, int backlog, struct error *err)
{
    if (o->socket_path) {
        return listen_unix(o->socket_path, backlog, err);
    }
    return listen_inet(o->bind, o->port, backlog, err);
}
