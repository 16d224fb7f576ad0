/* Whole-buffer socket I/O. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd/nbd_wire.h"

int nbd_read_eof(int fd, void *buf, size_t len, const char *what, struct error *err)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(fd, p + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return error_set(err, -ETIMEDOUT, "timed out reading %s", what);
            }
            return error_set_errno(err, -errno, "failed to read %s", what);
        }
        if (n == 0) {
            if (done == 0) {
                return 0;
            }
            return error_set(err, -EPIPE, "Unexpected end-of-file before all bytes of %s were read",
                             what);
        }
        done += (size_t)n;
    }
    return 1;
}

int nbd_read_full(int fd, void *buf, size_t len, const char *what, struct error *err)
{
    if (len == 0) {
        return 0;
    }
    int ret = nbd_read_eof(fd, buf, len, what, err);
    if (ret == 0) {
        return error_set(err, -EPIPE, "Unexpected end-of-file reading %s", what);
    }
    return ret < 0 ? ret : 0;
}

int nbd_drop(int fd, uint64_t len, struct error *err)
{
    uint8_t scratch[4096];
    while (len > 0) {
        size_t n = len < sizeof(scratch) ? (size_t)len : sizeof(scratch);
        int ret = nbd_read_full(fd, scratch, n, "payload", err);
        if (ret < 0) {
            return ret;
        }
        len -= n;
    }
    return 0;
}

int nbd_writev_full(int fd, struct iovec *iov, int n, struct error *err)
{
    while (n > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return error_set_errno(err, -errno, "write failed");
        }
        /* Skip what went out; a partial vector stays at the front. */
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int nbd_write_full(int fd, const void *buf, size_t len, struct error *err)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return nbd_writev_full(fd, &iov, 1, err);
}
