/* State of one connection, shared by the handshake, the request reader and
 * the workers that serve requests. */
#ifndef NBD_NBD_SESSION_H
#define NBD_NBD_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd/nbd_export.h"
#include "util/error.h"

/* Requests of one connection in flight at once (as QEMU allows), and the
 * threads serving them. */
#define NBD_MAX_IN_FLIGHT 16
#define NBD_WORKERS 4

struct nbd_request {
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t from;
    uint32_t len;
    uint8_t *data;                  /* WRITE payload */
    struct nbd_request *next;
};

struct nbd_session {
    int fd;
    const struct nbd_export *exp;
    uint32_t opt;                   /* option being handled */
    uint32_t optlen;                /* its payload bytes not read yet */
    bool structured_reply;
    bool meta_base_allocation;      /* contexts selected by SET_META_CONTEXT */
    bool meta_allocation_depth;
    uint32_t meta_bitmaps;          /* bit i: qemu:dirty-bitmap: of exported bitmap i */

    /* Transmission: replies of concurrent requests must not interleave
     * within a message. */
    pthread_mutex_t send_lock;
    pthread_mutex_t lock;           /* the queue and the fields below */
    pthread_cond_t work;            /* a request was queued, or stopping */
    pthread_cond_t room;            /* a request finished */
    struct nbd_request *head, *tail;
    int in_flight;                  /* queued or being served */
    bool stopping;
    int failed;                     /* first reply that could not be sent */
    struct error fail_err;
};

/* Returns 0 to enter transmission, 1 when the client aborted, -errno. */
int nbd_negotiate(struct nbd_session *s, struct error *err);
/* Returns 0 on a clean end, -errno when the connection must be dropped. */
int nbd_transmit(struct nbd_session *s, struct error *err);

/* For the transmission code: serves a checked request and replies.
 * Returns -errno only when the reply could not be sent. */
int nbd_serve_request(struct nbd_session *s, const struct nbd_request *r, struct error *err);
/* Replies with an error (errnum > 0) and its message. */
int nbd_send_error(struct nbd_session *s, const struct nbd_request *r, int errnum,
                   const char *msg, struct error *err);

#endif
