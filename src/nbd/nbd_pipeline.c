/* The transmission phase of one connection: this thread reads and checks
 * requests and queues them; a few workers serve them, so a client with
 * several requests in flight has them served in parallel (replies may come
 * back in any order, as the protocol allows). A request the server can
 * parse but not honour gets an error reply here; only a broken stream (bad
 * magic, truncated message, a write payload we could not take) or a reply
 * that could not be sent ends the connection. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd/nbd_proto.h"
#include "nbd/nbd_session.h"
#include "nbd/nbd_wire.h"
#include "util/bswap.h"

static uint16_t valid_flags(const struct nbd_session *s, uint16_t type)
{
    uint16_t valid = NBD_CMD_FLAG_FUA;
    if (type == NBD_CMD_READ && s->structured_reply) {
        valid |= NBD_CMD_FLAG_DF;
    } else if (type == NBD_CMD_WRITE_ZEROES) {
        valid |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    } else if (type == NBD_CMD_BLOCK_STATUS) {
        valid |= NBD_CMD_FLAG_REQ_ONE;
    }
    return valid;
}

/* Checks a request the way qemu-nbd does; fills msg and returns a positive
 * errno for the error reply, or 0. */
static int check_request(const struct nbd_session *s, const struct nbd_request *r, char *msg,
                         size_t size)
{
    const struct nbd_export *exp = s->exp;
    bool writes = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ||
                  r->type == NBD_CMD_TRIM;
    if ((exp->flags & NBD_FLAG_READ_ONLY) && writes) {
        snprintf(msg, size, "Export is read-only");
        return EROFS;
    }
    if (r->from > exp->size || r->len > exp->size - r->from) {
        snprintf(msg, size, "operation past EOF; From: %" PRIu64 ", Len: %u, Size: %" PRIu64,
                 r->from, r->len, exp->size);
        return (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES) ? ENOSPC : EINVAL;
    }
    if (r->flags & ~valid_flags(s, r->type)) {
        snprintf(msg, size, "unsupported flags for command %s (got 0x%x)", nbd_cmd_name(r->type),
                 r->flags);
        return EINVAL;
    }
    return 0;
}

static bool has_payload_limit(uint16_t type)
{
    return type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_CACHE;
}

/* Records the first failure and wakes the reader out of its recv(). */
static void fail(struct nbd_session *s, int ret, const struct error *err)
{
    pthread_mutex_lock(&s->lock);
    if (!s->failed) {
        s->failed = ret;
        if (err) {
            s->fail_err = *err;
        }
    }
    pthread_mutex_unlock(&s->lock);
    shutdown(s->fd, SHUT_RDWR);
}

static void *worker(void *arg)
{
    struct nbd_session *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->head && !s->stopping) {
            pthread_cond_wait(&s->work, &s->lock);
        }
        struct nbd_request *r = s->head;
        if (!r) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        s->head = r->next;
        if (!s->head) {
            s->tail = NULL;
        }
        bool failed = s->failed;
        pthread_mutex_unlock(&s->lock);

        struct error err = {0};
        int ret = failed ? 0 : nbd_serve_request(s, r, &err);
        if (ret < 0) {
            fail(s, ret, &err);
        }
        free(r->data);
        free(r);
        pthread_mutex_lock(&s->lock);
        s->in_flight--;
        pthread_cond_signal(&s->room);
        pthread_mutex_unlock(&s->lock);
    }
}

static void enqueue(struct nbd_session *s, struct nbd_request *r)
{
    pthread_mutex_lock(&s->lock);
    r->next = NULL;
    if (s->tail) {
        s->tail->next = r;
    } else {
        s->head = r;
    }
    s->tail = r;
    s->in_flight++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
}

/* Waits for room in the queue. Returns false when a worker failed. */
static bool wait_for_room(struct nbd_session *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->in_flight >= NBD_MAX_IN_FLIGHT && !s->failed) {
        pthread_cond_wait(&s->room, &s->lock);
    }
    bool ok = !s->failed;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static int parse_header(const uint8_t *hdr, struct nbd_request *r, struct error *err)
{
    uint32_t magic = ld_be32(hdr);
    if (magic != NBD_REQUEST_MAGIC) {
        return error_set(err, -EINVAL, "invalid magic (got 0x%x)", magic);
    }
    *r = (struct nbd_request){
        .flags = ld_be16(hdr + 4),
        .type = ld_be16(hdr + 6),
        .handle = ld_be64(hdr + 8),
        .from = ld_be64(hdr + 16),
        .len = ld_be32(hdr + 24),
    };
    return 0;
}

/* Reads one request and queues it or answers it with an error. Returns 1 to
 * go on, 0 when the client disconnected, -errno to drop it. */
static int receive_one(struct nbd_session *s, struct error *err)
{
    uint8_t hdr[NBD_REQUEST_SIZE];
    int ret = nbd_read_eof(s->fd, hdr, sizeof(hdr), "request", err);
    if (ret <= 0) {
        return ret;
    }
    struct nbd_request req;
    ret = parse_header(hdr, &req, err);
    if (ret < 0) {
        return ret;
    }
    if (req.type == NBD_CMD_DISC) {
        return 0;
    }
    char msg[160];
    int bad = 0;
    if (has_payload_limit(req.type) && req.len > NBD_MAX_PAYLOAD) {
        snprintf(msg, sizeof(msg), "len (%u) is larger than max len (%u)", req.len,
                 NBD_MAX_PAYLOAD);
        bad = EINVAL;
    } else if (req.type == NBD_CMD_WRITE) {
        req.data = malloc(req.len ? req.len : 1);
        if (!req.data) {
            return error_set(err, -ENOMEM, "No memory");
        }
        ret = nbd_read_full(s->fd, req.data, req.len, "CMD_WRITE data", err);
        if (ret < 0) {
            free(req.data);
            return ret;
        }
    }
    if (!bad) {
        bad = check_request(s, &req, msg, sizeof(msg));
    }
    if (bad) {
        free(req.data);
        ret = nbd_send_error(s, &req, bad, msg, err);
        if (ret == 0 && req.type == NBD_CMD_WRITE && req.len > NBD_MAX_PAYLOAD) {
            /* Its payload is still in the stream: nothing after it parses. */
            return error_set(err, -EINVAL, "%s", msg);
        }
        return ret < 0 ? ret : 1;
    }
    struct nbd_request *r = malloc(sizeof(*r));
    if (!r) {
        free(req.data);
        return error_set(err, -ENOMEM, "No memory");
    }
    *r = req;
    enqueue(s, r);
    return 1;
}

int nbd_transmit(struct nbd_session *s, struct error *err)
{
    pthread_t workers[NBD_WORKERS];
    int started = 0, ret = 0;
    pthread_mutex_init(&s->send_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->room, NULL);
    while (started < NBD_WORKERS && pthread_create(&workers[started], NULL, worker, s) == 0) {
        started++;
    }
    if (started == 0) {
        ret = error_set(err, -EAGAIN, "Failed to create a worker thread");
    }
    while (ret == 0 && wait_for_room(s)) {
        ret = receive_one(s, err);
        ret = ret > 0 ? 0 : (ret == 0 ? 1 : ret);
    }
    /* Requests already queued are served (the protocol asks that of a
     * disconnect), then the workers leave. */
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i], NULL);
    }
    if (s->failed) {
        /* A reply that could not be sent explains the end better than the
         * reader's error on the socket we shut down. */
        if (err) {
            *err = s->fail_err;
        }
        ret = s->failed;
    }
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->send_lock);
    return ret < 0 ? ret : 0;
}
