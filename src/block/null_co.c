/* QEMU's null-co protocol: a node of a given size (1 GiB by default) that
 * drops writes and, with read-zeroes, reads zeros; without it reads leave
 * the buffer as it was (QEMU's fast path for benchmarks). Block status
 * says zero only with read-zeroes. A test and benchmark device. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "block/hostfile.h"

struct null_co {
    uint64_t size;
    bool read_zeroes;
};

static struct null_co *null_of(struct hostfile *f)
{
    return f->proto_state;
}

static int null_pread(struct hostfile *f, uint64_t off, void *buf, size_t len)
{
    if (null_of(f)->read_zeroes) {
        memset(buf, 0, len);
    }
    return 0;
}

static int null_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    return 0;
}

static int null_flush(struct hostfile *f)
{
    return 0;
}

static int64_t null_size(struct hostfile *f)
{
    return (int64_t)null_of(f)->size;
}

static int null_truncate(struct hostfile *f, uint64_t size)
{
    return -ENOTSUP;    /* QEMU's null-co cannot be resized either */
}

static int null_zero_range(struct hostfile *f, uint64_t off, uint64_t len, bool may_unmap)
{
    return 0;
}

static int null_status(struct hostfile *f, uint64_t off, uint64_t len, unsigned *flags,
                       uint64_t *run)
{
    *flags = null_of(f)->read_zeroes ? BDEV_STATUS_ZERO : 0;
    *run = len;
    return 0;
}

static void null_close(struct hostfile *f)
{
    free(f->proto_state);
}

static const struct hostfile_protocol null_co_protocol = {
    .name = "null-co",
    .pread = null_pread,
    .pwrite = null_pwrite,
    .flush = null_flush,
    .size = null_size,
    .truncate = null_truncate,
    .zero_range = null_zero_range,
    .status = null_status,
    .close = null_close,
};

struct hostfile *hostfile_null_co(const char *filename, uint64_t size, bool read_zeroes,
                                  bool read_only)
{
    struct null_co *n = calloc(1, sizeof(*n));
    n->size = size;
    n->read_zeroes = read_zeroes;
    return hostfile_new_protocol(&null_co_protocol, n, filename, read_only);
}
