/* Whole-buffer positioned reads and writes: the loops around pread and
 * pwrite that short transfers and EINTR need, written once. */
#ifndef UTIL_IO_H
#define UTIL_IO_H

#include <stddef.h>
#include <sys/types.h>

/* 0 when all len bytes were written, else -errno (-EIO: nothing written). */
int io_pwrite_full(int fd, const void *buf, size_t len, off_t off);
/* Bytes read: len, or fewer at the end of the file; -errno on errors. */
ssize_t io_pread_full(int fd, void *buf, size_t len, off_t off);

#endif
