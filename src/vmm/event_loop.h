/* The VMM's one main loop: epoll over file descriptors with callbacks
 * (console input, ioeventfds, signals, vCPU requests). */
#ifndef VMM_EVENT_LOOP_H
#define VMM_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef void (*event_fn)(void *opaque, int fd, uint32_t events);

struct event_handler;

struct event_loop {
    int epfd;
    bool stop;
    struct event_handler *handlers;
};

int event_loop_init(struct event_loop *l, struct error *err);
void event_loop_destroy(struct event_loop *l);
int event_loop_add(struct event_loop *l, int fd, uint32_t events, event_fn fn, void *opaque,
                   struct error *err);
void event_loop_remove(struct event_loop *l, int fd);
/* Changes the events watched on fd (0: none for now). */
int event_loop_modify(struct event_loop *l, int fd, uint32_t events);
/* Runs until event_loop_stop is called (from a callback). */
int event_loop_run(struct event_loop *l, struct error *err);
static inline void event_loop_stop(struct event_loop *l) { l->stop = true; }

#endif
