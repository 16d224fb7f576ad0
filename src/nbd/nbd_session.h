/* State of one connection, shared by the handshake and transmission code. */
#ifndef NBD_NBD_SESSION_H
#define NBD_NBD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd/nbd_export.h"
#include "util/error.h"

struct nbd_session {
    int fd;
    const struct nbd_export *exp;
    uint32_t opt;                   /* option being handled */
    uint32_t optlen;                /* its payload bytes not read yet */
    bool structured_reply;
    bool meta_base_allocation;      /* contexts selected by SET_META_CONTEXT */
    bool meta_allocation_depth;
    uint8_t *buf;                   /* transmission buffer, grown on demand */
    size_t buf_size;
};

/* Returns 0 to enter transmission, 1 when the client aborted, -errno. */
int nbd_negotiate(struct nbd_session *s, struct error *err);
/* Returns 0 on a clean end, -errno when the connection must be dropped. */
int nbd_transmit(struct nbd_session *s, struct error *err);

#endif
