/* One connection from greeting to hang-up. */
#include <sys/socket.h>
#include <sys/time.h>

#include "nbd/nbd_server.h"
#include "nbd/nbd_session.h"

static void set_receive_timeout(int fd, int seconds)
{
    struct timeval tv = { .tv_sec = seconds };
    /* Not every fd is a socket (tests may hand in a pipe); then no timeout. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

int nbd_serve_client(const struct nbd_export *exp, int fd, bool *negotiated, struct error *err)
{
    struct nbd_session s = { .fd = fd, .exp = exp };
    *negotiated = false;
    /* A client that stalls in the handshake must not hold a slot forever. */
    set_receive_timeout(fd, NBD_HANDSHAKE_TIMEOUT_S);
    int ret = nbd_negotiate(&s, err);
    if (ret != 0) {
        if (ret < 0) {
            error_prefix(err, "option negotiation failed");
        }
        return ret < 0 ? ret : 0;
    }
    *negotiated = true;
    set_receive_timeout(fd, 0);
    ret = nbd_transmit(&s, err);
    return ret;
}
