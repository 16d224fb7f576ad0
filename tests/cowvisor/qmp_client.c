/* The tests' QMP client (see qmp_client.h). */
#include "qmp_client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int connect_tcp(const char *hostport)
{
    char host[128];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int qmp_client_connect(struct qmp_client *c, const char *addr)
{
    c->len = 0;
    if (strncmp(addr, "tcp:", 4) == 0) {
        c->fd = connect_tcp(addr + 4);
        return c->fd < 0 ? -1 : 0;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", addr);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(c->fd);
        c->fd = -1;
    }
    return c->fd < 0 ? -1 : 0;
}

void qmp_client_close(struct qmp_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Reads more within the deadline: >0 bytes, 0 at end of stream, -1 on
 * error (errno), -2 on timeout. */
static long fill(struct qmp_client *c, long deadline)
{
    long left = deadline - now_ms();
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
        return -2;
    }
    if (c->len == sizeof(c->buf)) {
        c->len = 0;     /* a line longer than the buffer: dropped */
    }
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
    }
    return n < 0 ? -1 : n;
}

json_t *qmp_client_read(struct qmp_client *c, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf) + 1;
            json_t *v = json_loadb(c->buf, n - 1, 0, NULL);
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            if (v) {
                return v;
            }
            continue;
        }
        if (fill(c, deadline) <= 0) {
            return NULL;
        }
    }
}

bool qmp_client_write(struct qmp_client *c, const char *text, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    size_t off = 0, len = strlen(text);
    while (off < len) {
        ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
        long left = deadline - now_ms();
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            return false;
        }
    }
    return true;
}

json_t *qmp_client_cmd(struct qmp_client *c, const char *text)
{
    if (!qmp_client_write(c, text, 5000)) {
        return NULL;
    }
    for (;;) {
        json_t *v = qmp_client_read(c, 5000);
        if (!v || !json_object_get(v, "event")) {
            return v;
        }
        json_decref(v);
    }
}

int qmp_client_open(struct qmp_client *c, const char *addr)
{
    if (qmp_client_connect(c, addr) < 0) {
        return -1;
    }
    json_t *greeting = qmp_client_read(c, 5000);
    bool ok = greeting && json_object_get(greeting, "QMP");
    json_decref(greeting);
    json_t *r = ok ? qmp_client_cmd(c, "{\"execute\":\"qmp_capabilities\"}") : NULL;
    ok = r && json_object_get(r, "return");
    json_decref(r);
    if (!ok) {
        qmp_client_close(c);
        return -1;
    }
    return 0;
}

bool qmp_client_closed(struct qmp_client *c, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        c->len = 0;
        long n = fill(c, deadline);
        if (n == 0) {
            return true;
        }
        if (n == -1) {
            return errno == ECONNRESET || errno == EPIPE;
        }
        if (n < 0) {
            return false;
        }
    }
}
