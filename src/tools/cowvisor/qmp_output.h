/* A QMP client's output queue: replies and events wait here until the
 * client's socket takes them, so a client that does not read can never
 * block the main loop; a queue past its bound means the client is gone
 * for practical purposes, and the server drops it. */
#ifndef COWVISOR_QMP_OUTPUT_H
#define COWVISOR_QMP_OUTPUT_H

#include <stddef.h>

/* Enough for thousands of replies: only a client that stopped reading
 * gets there. */
#define QMP_OUTPUT_MAX (1u << 20)

struct qmp_output {
    char *buf;
    size_t off;             /* sent up to here */
    size_t len;             /* queued up to here */
    size_t cap;
    size_t max;             /* the bound (QMP_OUTPUT_MAX unless a test sets it) */
};

void qmp_output_init(struct qmp_output *q);
/* Queues n bytes; -ENOBUFS (nothing queued) when the bound would be
 * passed, -ENOMEM. */
int qmp_output_append(struct qmp_output *q, const char *p, size_t n);
/* Sends what the socket takes without waiting: 0 when the queue is empty,
 * 1 when bytes remain, -errno when the socket failed. */
int qmp_output_flush(struct qmp_output *q, int fd);
static inline size_t qmp_output_pending(const struct qmp_output *q) { return q->len - q->off; }
/* Forgets what is queued (the client went away). */
void qmp_output_clear(struct qmp_output *q);
void qmp_output_free(struct qmp_output *q);

#endif
