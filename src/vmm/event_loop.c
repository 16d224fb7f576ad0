#include "vmm/event_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct event_handler {
    int fd;
    event_fn fn;
    void *opaque;
    struct event_handler *next;
};

int event_loop_init(struct event_loop *l, struct error *err)
{
    l->stop = false;
    l->handlers = NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        return error_set_errno(err, -errno, "epoll_create1");
    }
    return 0;
}

void event_loop_destroy(struct event_loop *l)
{
    while (l->handlers) {
        struct event_handler *h = l->handlers;
        l->handlers = h->next;
        free(h);
    }
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    l->epfd = -1;
}

int event_loop_add(struct event_loop *l, int fd, uint32_t events, event_fn fn, void *opaque,
                   struct error *err)
{
    struct event_handler *h = calloc(1, sizeof(*h));
    if (!h) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    *h = (struct event_handler){ fd, fn, opaque, l->handlers };
    struct epoll_event ev = { .events = events, .data.ptr = h };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = -errno;
        free(h);
        return error_set_errno(err, e, "epoll_ctl(add fd %d)", fd);
    }
    l->handlers = h;
    return 0;
}

void event_loop_remove(struct event_loop *l, int fd)
{
    for (struct event_handler **pp = &l->handlers; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            struct event_handler *h = *pp;
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
            *pp = h->next;
            free(h);
            return;
        }
    }
}

int event_loop_modify(struct event_loop *l, int fd, uint32_t events)
{
    for (struct event_handler *h = l->handlers; h; h = h->next) {
        if (h->fd == fd) {
            struct epoll_event ev = { .events = events, .data.ptr = h };
            return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
        }
    }
    return -ENOENT;
}

int event_loop_run(struct event_loop *l, struct error *err)
{
    while (!l->stop) {
        struct epoll_event evs[16];
        int n = epoll_wait(l->epfd, evs, 16, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return error_set_errno(err, -errno, "epoll_wait");
        }
        for (int i = 0; i < n && !l->stop; i++) {
            struct event_handler *h = evs[i].data.ptr;
            h->fn(h->opaque, h->fd, evs[i].events);
        }
    }
    return 0;
}
