/* The server side of one NBD connection: the fixed newstyle handshake,
 * then the transmission phase until the client disconnects. One call per
 * connection; connections may be served by concurrent threads. */
#ifndef NBD_NBD_SERVER_H
#define NBD_NBD_SERVER_H

#include <stdbool.h>

#include "nbd/nbd_export.h"
#include "util/error.h"

/* Seconds a client may take to finish the handshake (QEMU's default). */
#define NBD_HANDSHAKE_TIMEOUT_S 10

/* Serves the client on fd (which the caller closes). Returns 0 when the
 * client left cleanly (NBD_CMD_DISC, NBD_OPT_ABORT, hang-up between
 * requests), negative errno when the connection was dropped for an I/O or
 * protocol error (message in err). *negotiated tells whether the client
 * reached the transmission phase. */
int nbd_serve_client(const struct nbd_export *exp, int fd, bool *negotiated, struct error *err);

#endif
