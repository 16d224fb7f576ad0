/* The two transports QEMU's -incoming and migrate take: tcp:HOST:PORT and
 * unix:PATH. */
#include "migration/migration.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int unix_addr(const char *path, struct sockaddr_un *sa, struct error *err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (!*path || strlen(path) >= sizeof(sa->sun_path)) {
        return error_set(err, -EINVAL, "bad UNIX socket path '%s'", path);
    }
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

/* tcp:HOST:PORT (HOST may be [v6] or empty) into getaddrinfo results. */
static int tcp_addr(const char *spec, bool passive, struct addrinfo **res, struct error *err)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof(host) || !colon[1]) {
        return error_set(err, -EINVAL, "migration URI 'tcp:%s' lacks HOST:PORT", spec);
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
    int rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, res);
    if (rc != 0) {
        return error_set(err, -EINVAL, "address '%s': %s", spec, gai_strerror(rc));
    }
    return 0;
}

static int tcp_socket(const struct addrinfo *ai, bool listen_, struct error *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        return error_set_errno(err, -errno, "socket");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));    /* page requests must not wait */
    if (listen_) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
            int e = -errno;
            close(fd);
            return error_set_errno(err, e, "listening for the migration");
        }
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int e = -errno;
        close(fd);
        return error_set_errno(err, e, "connecting to the migration destination");
    }
    return fd;
}

static int open_uri(const char *uri, bool listen_, struct error *err)
{
    if (strncmp(uri, "unix:", 5) == 0) {
        struct sockaddr_un sa;
        int ret = unix_addr(uri + 5, &sa, err);
        if (ret < 0) {
            return ret;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return error_set_errno(err, -errno, "socket");
        }
        if (listen_) {
            unlink(sa.sun_path);
        }
        if (listen_ ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0
                    : connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            int e = -errno;
            close(fd);
            return error_set_errno(err, e, "%s %s", listen_ ? "listening on" : "connecting to", uri);
        }
        return fd;
    }
    if (strncmp(uri, "tcp:", 4) == 0) {
        struct addrinfo *res;
        int ret = tcp_addr(uri + 4, listen_, &res, err);
        if (ret < 0) {
            return ret;
        }
        ret = tcp_socket(res, listen_, err);
        freeaddrinfo(res);
        return ret;
    }
    return error_set(err, -EINVAL, "unknown migration protocol: %s", uri);
}

int migration_connect(const char *uri, struct error *err)
{
    return open_uri(uri, false, err);
}

int migration_listen(const char *uri, struct error *err)
{
    return open_uri(uri, true, err);
}
