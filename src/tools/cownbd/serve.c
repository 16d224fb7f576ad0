/* The accept loop: one thread per client, at most -e N of them at once
 * (further clients wait in the listen backlog, as with qemu-nbd). Without
 * -t the server exits when the last client that got past the handshake
 * leaves; SIGTERM, SIGINT and SIGHUP end it too. The main thread sleeps in
 * poll() on the listening socket and a wake-up pipe that signal handlers
 * and finishing clients write to. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cownbd.h"
#include "nbd/nbd_server.h"
#include "util/log.h"

struct client {
    struct server *srv;
    pthread_t thread;
    int fd;
    bool finished;
    bool negotiated;
    struct client *next;
};

struct server {
    const struct nbd_export *exp;
    const struct cownbd_opts *opts;
    pthread_mutex_t lock;
    struct client *clients;
    int active;
};

static int wake_pipe[2] = { -1, -1 };
static volatile sig_atomic_t stop_requested;

static void wake(void)
{
    char c = 0;
    /* A full pipe already guarantees a wake-up. */
    ssize_t n = write(wake_pipe[1], &c, 1);
    (void)n;
}

static void on_stop_signal(int sig)
{
    int saved = errno;
    stop_requested = 1;
    wake();
    errno = saved;
}

static void *client_thread(void *arg)
{
    struct client *c = arg;
    struct error err = {0};
    bool negotiated;
    int ret = nbd_serve_client(c->srv->exp, c->fd, &negotiated, &err);
    if (ret < 0) {
        /* qemu-nbd's wording: handshake errors as they are, later ones prefixed. */
        if (negotiated) {
            cownbd_error("Disconnect client, due to: %s", err.msg);
        } else {
            cownbd_error("%s", err.msg);
        }
    }
    log_info("client on fd %d left (%s)", c->fd, negotiated ? "negotiated" : "handshake only");
    pthread_mutex_lock(&c->srv->lock);
    c->negotiated = negotiated;
    c->finished = true;
    pthread_mutex_unlock(&c->srv->lock);
    wake();
    return NULL;
}

static int start_client(struct server *srv, int fd)
{
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    *c = (struct client){ .srv = srv, .fd = fd };
    /* Stop signals are for the main thread only. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_mutex_lock(&srv->lock);
    int ret = pthread_create(&c->thread, NULL, client_thread, c);
    if (ret == 0) {
        c->next = srv->clients;
        srv->clients = c;
        srv->active++;
    }
    pthread_mutex_unlock(&srv->lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret != 0) {
        cownbd_error("Failed to create client thread: %s", strerror(ret));
        close(fd);
        free(c);
        return -ret;
    }
    log_info("client connected on fd %d", fd);
    return 0;
}

/* Joins finished clients. Returns true when the server should stop because
 * the last negotiated client left (and -t was not given). */
static bool reap_clients(struct server *srv)
{
    bool stop = false;
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        struct client **pp = &srv->clients, *c = NULL;
        while (*pp && !(*pp)->finished) {
            pp = &(*pp)->next;
        }
        if (*pp) {
            c = *pp;
            *pp = c->next;
            srv->active--;
        }
        int active = srv->active;
        pthread_mutex_unlock(&srv->lock);
        if (!c) {
            return stop;
        }
        pthread_join(c->thread, NULL);
        close(c->fd);
        if (c->negotiated && active == 0 && !srv->opts->persistent) {
            stop = true;
        }
        free(c);
    }
}

static void stop_all_clients(struct server *srv)
{
    pthread_mutex_lock(&srv->lock);
    for (struct client *c = srv->clients; c; c = c->next) {
        shutdown(c->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&srv->lock);
    while (srv->clients) {
        struct client *c = srv->clients;
        srv->clients = c->next;
        pthread_join(c->thread, NULL);
        close(c->fd);
        free(c);
    }
}

static bool can_accept(struct server *srv)
{
    pthread_mutex_lock(&srv->lock);
    bool ok = srv->opts->shared == 0 || srv->active < srv->opts->shared;
    pthread_mutex_unlock(&srv->lock);
    return ok;
}

static void drain_wake_pipe(void)
{
    char buf[64];
    while (read(wake_pipe[0], buf, sizeof(buf)) > 0) {
    }
}

static int install_signals(void)
{
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        cownbd_error("Failed to create a pipe: %s", strerror(errno));
        return -1;
    }
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    return 0;
}

/* The listening socket is ready (or broken): a client is started, or a
 * passing failure waits a little. A socket that can no longer accept (shut
 * down or closed by whoever passed it, an error) ends the server with a
 * message: polling it again would return at once, forever (a busy loop). */
static int accept_client(struct server *srv, int listen_fd, short revents)
{
    if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
        /* A listening socket hangs up only once shut down; accept then
         * fails (or finds nothing) every time. */
        cownbd_error("The listening socket can no longer accept clients (%s)",
                     revents & POLLNVAL ? "it was closed" : revents & POLLHUP ? "it was shut down" : "socket error");
        return -1;
    }
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        start_client(srv, fd);
        return 0;
    }
    switch (errno) {
    case EINTR:
    case EAGAIN:
    case ECONNABORTED:
    case EPROTO:
        return 0;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        /* Out of descriptors or memory for now: try again once clients leave. */
        log_warn("accept failed: %s", strerror(errno));
        poll(&(struct pollfd){ .fd = wake_pipe[0], .events = POLLIN }, 1, 100);
        return 0;
    default:
        cownbd_error("Failed to accept a client on the listening socket: %s", strerror(errno));
        return -1;
    }
}

int cownbd_serve(int listen_fd, const struct nbd_export *exp, const struct cownbd_opts *o)
{
    struct server srv = { .exp = exp, .opts = o };
    int rc = 0;
    /* A wake-up with no client left (it went away, or an error is all
     * there is) must not block in accept: the loop has signals to see. */
    fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
    pthread_mutex_init(&srv.lock, NULL);
    if (install_signals() < 0) {
        return 1;
    }
    while (!stop_requested) {
        if (reap_clients(&srv)) {
            break;
        }
        struct pollfd pfd[2] = {
            { .fd = wake_pipe[0], .events = POLLIN },
            { .fd = listen_fd, .events = POLLIN },
        };
        int n = poll(pfd, can_accept(&srv) ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            cownbd_error("poll failed: %s", strerror(errno));
            break;
        }
        if (pfd[0].revents) {
            drain_wake_pipe();
        }
        if (pfd[1].revents && accept_client(&srv, listen_fd, pfd[1].revents) < 0) {
            rc = 1;
            break;
        }
    }
    stop_all_clients(&srv);
    pthread_mutex_destroy(&srv.lock);
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    return rc;
}
