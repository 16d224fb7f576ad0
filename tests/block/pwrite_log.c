/* See pwrite_log.h. */
#include <sys/types.h>

#include "pwrite_log.h"

bool pwrite_logging;
int pwrite_calls;
size_t pwrite_len[PWRITE_LOG_MAX];
off_t pwrite_off[PWRITE_LOG_MAX];

ssize_t __real_pwrite64(int fd, const void *buf, size_t len, off_t off);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t off);

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    if (pwrite_logging && pwrite_calls < PWRITE_LOG_MAX) {
        pwrite_len[pwrite_calls] = len;
        pwrite_off[pwrite_calls] = off;
    }
    pwrite_calls += pwrite_logging;
    return __real_pwrite64(fd, buf, len, off);
}
