/* A QMP client's output queue (see qmp_output.h). */
#include "qmp_output.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void qmp_output_init(struct qmp_output *q)
{
    memset(q, 0, sizeof(*q));
    q->max = QMP_OUTPUT_MAX;
}

int qmp_output_append(struct qmp_output *q, const char *p, size_t n)
{
    if (n > q->max - qmp_output_pending(q)) {
        return -ENOBUFS;
    }
    if (q->off == q->len) {
        q->off = q->len = 0;
    }
    if (q->cap - q->len < n && q->off) {
        /* Reuse what was sent before growing. */
        memmove(q->buf, q->buf + q->off, q->len - q->off);
        q->len -= q->off;
        q->off = 0;
    }
    if (q->cap - q->len < n) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap - q->len < n) {
            cap *= 2;
        }
        char *buf = realloc(q->buf, cap);
        if (!buf) {
            return -ENOMEM;
        }
        q->buf = buf;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, p, n);
    q->len += n;
    return 0;
}

int qmp_output_flush(struct qmp_output *q, int fd)
{
    while (q->off < q->len) {
        ssize_t n = send(fd, q->buf + q->off, q->len - q->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EPIPE;
        }
        q->off += (size_t)n;
    }
    q->off = q->len = 0;
    return 0;
}

void qmp_output_clear(struct qmp_output *q)
{
    q->off = q->len = 0;
}

void qmp_output_free(struct qmp_output *q)
{
    free(q->buf);
    memset(q, 0, sizeof(*q));
}
