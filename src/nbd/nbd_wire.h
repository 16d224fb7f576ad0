/* Socket I/O for the NBD server: whole-buffer reads and writes that retry
 * on EINTR and never raise SIGPIPE. Errors: negative errno and a message. */
#ifndef NBD_NBD_WIRE_H
#define NBD_NBD_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/error.h"

/* Reads exactly len bytes. Returns 1 when done, 0 on end-of-file before the
 * first byte (a clean hang-up), negative errno otherwise (what names the
 * field being read). */
int nbd_read_eof(int fd, void *buf, size_t len, const char *what, struct error *err);
/* Like nbd_read_eof, but end-of-file is an error too. Returns 0 or -errno. */
int nbd_read_full(int fd, void *buf, size_t len, const char *what, struct error *err);
/* Reads and throws away len bytes. */
int nbd_drop(int fd, uint64_t len, struct error *err);
/* Writes the whole of iov[0..n-1] (the array is consumed). */
int nbd_writev_full(int fd, struct iovec *iov, int n, struct error *err);
int nbd_write_full(int fd, const void *buf, size_t len, struct error *err);

#endif
