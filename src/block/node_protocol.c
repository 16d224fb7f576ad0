/* A block node used as the protocol child of a format node: QEMU's graph
 * lets a format sit on any node (qcow2 over qcow2, qcow2 over an NBD
 * export). Format drivers do their I/O through hostfile_*, so the child is
 * put behind the hostfile_protocol interface, as null-co is. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_int.h"
#include "block/hostfile.h"

static struct blockdev *child_of(struct hostfile *f)
{
    return f->proto_state;
}

static int node_pread(struct hostfile *f, uint64_t off, void *buf, size_t len)
{
    struct error err = {0};
    /* hostfile_pread's contract: past the end reads zeros. */
    uint64_t size = blockdev_size(child_of(f));
    size_t in = off >= size ? 0 : (size - off < len ? (size_t)(size - off) : len);
    memset((char *)buf + in, 0, len - in);
    return in ? blockdev_pread(child_of(f), off, buf, in, &err) : 0;
}

static int node_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    struct error err = {0};
    struct blockdev *child = child_of(f);
    if (off + len > blockdev_size(child)) {
        /* A format grows its file by writing past the end. */
        int ret = blockdev_truncate(child, off + len, false, PREALLOC_OFF, &err);
        if (ret < 0) {
            /* A node that cannot grow (an NBD export): QEMU's error for a
             * write past its end. */
            return ret == -ENOTSUP ? -EINVAL : ret;
        }
    }
    return blockdev_pwrite(child, off, buf, len, &err);
}

static int node_flush(struct hostfile *f)
{
    struct error err = {0};
    return blockdev_flush(child_of(f), &err);
}

static int64_t node_size(struct hostfile *f)
{
    return (int64_t)blockdev_size(child_of(f));
}

static int node_truncate(struct hostfile *f, uint64_t size)
{
    struct error err = {0};
    return blockdev_truncate(child_of(f), size, true, PREALLOC_OFF, &err);
}

static int node_zero_range(struct hostfile *f, uint64_t off, uint64_t len, bool may_unmap)
{
    struct error err = {0};
    return blockdev_pwrite_zeroes(child_of(f), off, len, may_unmap ? BDEV_ZERO_MAY_UNMAP : 0,
                                  &err);
}

/* A discard through a node stays a discard: the node (qcow2) drops whole
 * clusters only, where zeroing would write zeros around them (iotest 177). */
static int node_discard(struct hostfile *f, uint64_t off, uint64_t len)
{
    struct error err = {0};
    return blockdev_discard(child_of(f), off, len, &err);
}

static int node_status(struct hostfile *f, uint64_t off, uint64_t len, unsigned *flags,
                       uint64_t *run)
{
    struct error err = {0};
    struct block_status st;
    int ret = blockdev_block_status(child_of(f), off, len, &st, &err);
    if (ret < 0) {
        return ret;
    }
    *flags = st.flags & (BDEV_STATUS_DATA | BDEV_STATUS_ZERO);
    *run = st.len;
    return 0;
}

static void node_close(struct hostfile *f)
{
    blockdev_close(child_of(f));
}

static const struct hostfile_protocol node_protocol = {
    .name = "node",
    .pread = node_pread,
    .pwrite = node_pwrite,
    .flush = node_flush,
    .size = node_size,
    .truncate = node_truncate,
    .zero_range = node_zero_range,
    .discard = node_discard,
    .status = node_status,
    .close = node_close,
};

struct hostfile *hostfile_over_node(struct blockdev *child)
{
    struct hostfile *f = hostfile_new_protocol(&node_protocol, child, blockdev_filename(child),
                                               blockdev_is_read_only(child));
    f->dev = child->dev;        /* backing-loop detection sees through the layer */
    f->ino = child->ino;
    return f;
}
