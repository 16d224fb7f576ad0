/* Listening sockets from chardev-style addresses (see server_socket.h). */
#include "util/server_socket.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/options.h"

/* server, wait/nowait and perm: the options both address kinds take. */
static int parse_flags(struct options *o, const char *what, bool implied, bool *wait, mode_t *perm,
                       struct error *err)
{
    bool server = implied;
    int ret = 0;
    *wait = !implied;
    if (options_get(o, "server")) {
        ret = options_get_bool(o, "server", &server, err);
    }
    if (ret == 0 && options_get(o, "nowait")) {
        *wait = false;
    }
    if (ret == 0 && options_get(o, "wait")) {
        ret = options_get_bool(o, "wait", wait, err);
    }
    const char *p = options_get(o, "perm");
    if (ret == 0 && p) {
        char *end;
        long v = strtol(p, &end, 8);
        if (*end || !*p || v < 0 || v > 0777) {
            ret = error_set(err, -EINVAL, "%s: perm must be octal (e.g. 0660), not '%s'", what, p);
        }
        *perm = (mode_t)v;
    }
    if (ret == 0) {
        ret = options_check_unused(o, what, err);
    }
    if (ret == 0 && !server) {
        ret = error_set(err, -ENOTSUP, "%s: connecting out (without 'server') is not supported", what);
    }
    return ret;
}

static int open_unix(struct server_socket *ss, const char *path, mode_t perm, const char *what, struct error *err)
{
    if (!path || !*path) {
        return error_set(err, -EINVAL, "%s: unix: needs a socket path", what);
    }
    if (strlen(path) >= sizeof(ss->path)) {
        return error_set(err, -ENAMETOOLONG, "%s: socket path too long", what);
    }
    snprintf(ss->path, sizeof(ss->path), "%s", path);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, path, strlen(path));
    ss->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (ss->fd < 0) {
        return error_set_errno(err, -errno, "%s: socket", what);
    }
    unlink(path);
    /* Linux gives the socket file the socket inode's mode (less the
     * umask): set before bind, so no other user can connect in between. */
    if (fchmod(ss->fd, perm) < 0 || bind(ss->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chmod(path, perm) < 0 || listen(ss->fd, 4) < 0) {
        int ret = error_set_errno(err, -errno, "%s: cannot listen on '%s'", what, path);
        close(ss->fd);
        ss->fd = -1;
        return ret;
    }
    ss->is_unix = true;
    return 0;
}

/* HOST:PORT, [V6HOST]:PORT or :PORT (all addresses). */
static int open_tcp(struct server_socket *ss, const char *addr, const char *what, struct error *err)
{
    char host[128];
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || !colon[1] || (size_t)(colon - addr) >= sizeof(host)) {
        return error_set(err, -EINVAL, "%s: tcp: needs HOST:PORT, not '%s'", what, addr ? addr : "");
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res;
    int gai = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (gai) {
        return error_set(err, -EINVAL, "%s: address '%s': %s", what, addr, gai_strerror(gai));
    }
    int ret = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai && ss->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        int one = 1;
        if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4) == 0) {
            ss->fd = fd;
            break;
        }
        ret = -errno;
        if (fd >= 0) {
            close(fd);
        }
    }
    freeaddrinfo(res);
    if (ss->fd < 0) {
        errno = -ret;
        return error_set_errno(err, ret, "%s: cannot listen on '%s'", what, addr);
    }
    return 0;
}

int server_socket_open(struct server_socket *ss, const char *spec, const char *what, bool implied_server,
                       struct error *err)
{
    memset(ss, 0, sizeof(*ss));
    ss->fd = -1;
    bool is_unix = strncmp(spec, "unix:", 5) == 0;
    if (!is_unix && strncmp(spec, "tcp:", 4) != 0) {
        return error_set(err, -EINVAL, "%s: unix:PATH or tcp:HOST:PORT (with server,nowait), not '%s'", what, spec);
    }
    snprintf(ss->where, sizeof(ss->where), "%s", spec);
    struct options o = { 0 };
    int ret = options_parse(&o, spec + (is_unix ? 5 : 4), "addr", err);
    mode_t perm = 0600;
    const char *addr = ret == 0 ? options_get(&o, "addr") : NULL;
    if (ret == 0) {
        ret = parse_flags(&o, what, implied_server, &ss->wait, &perm, err);
    }
    if (ret == 0 && !is_unix && options_get(&o, "perm")) {
        ret = error_set(err, -EINVAL, "%s: perm= is for unix: sockets", what);
    }
    if (ret == 0) {
        ret = is_unix ? open_unix(ss, addr, perm, what, err) : open_tcp(ss, addr, what, err);
    }
    options_free(&o);
    return ret;
}

void server_socket_close(struct server_socket *ss)
{
    if (ss->fd >= 0) {
        close(ss->fd);
        ss->fd = -1;
    }
    if (ss->is_unix && ss->path[0]) {
        unlink(ss->path);
    }
}
