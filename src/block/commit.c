#include "block/commit.h"
#include "block/block_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Large enough to stream, small enough to keep memory flat. */
#define COMMIT_BUF_SIZE (1u << 20)

const struct blockdev *block_chain_find(const struct blockdev *bd, const char *filename,
                                        int *depth)
{
    /* Like the names recorded in images, relative to bd's directory. */
    char *path = blockdev_backing_path(bd->filename, filename);
    struct stat st;
    int ret = stat(path, &st);
    free(path);
    if (ret < 0) {
        return NULL;
    }
    int d = 1;
    for (const struct blockdev *b = bd->backing; b; b = b->backing, d++) {
        if (b->dev == st.st_dev && b->ino == st.st_ino) {
            *depth = d;
            return b;
        }
    }
    return NULL;
}

static int depth_of(const struct blockdev *top, const struct blockdev *base)
{
    int d = 0;
    for (const struct blockdev *b = top; b; b = b->backing, d++) {
        if (b == base) {
            return d;
        }
    }
    return -1;
}

static int copy_range(struct blockdev *top, struct blockdev *dst, uint64_t off, uint64_t len,
                      bool zero, uint8_t *buf, struct error *err)
{
    if (zero) {
        /* qemu-img commit runs QEMU's mirror with unmap on: the base's
         * clusters under zeroes are freed, not kept allocated (iotest 313). */
        return blockdev_pwrite_zeroes(dst, off, len, BDEV_ZERO_MAY_UNMAP, err);
    }
    while (len) {
        size_t n = len < COMMIT_BUF_SIZE ? len : COMMIT_BUF_SIZE;
        int ret = blockdev_pread(top, off, buf, n, err);
        if (ret == 0) {
            ret = blockdev_pwrite(dst, off, buf, n, err);
        }
        if (ret < 0) {
            return ret;
        }
        off += n;
        len -= n;
    }
    return 0;
}

int block_commit(struct blockdev *top, const struct blockdev *base, struct progress *progress,
                 struct error *err)
{
    int base_depth = depth_of(top, base);
    if (base_depth <= 0) {
        return error_set(err, -EINVAL, "'%s' is not below '%s' in its backing chain",
                         base->filename, top->filename);
    }
    struct blockdev *dst;
    int ret = blockdev_reopen_layer_rw(base, &dst, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t size = blockdev_size(top);
    if (blockdev_size(dst) < size) {
        ret = blockdev_truncate(dst, size, false, PREALLOC_OFF, err);
    }
    uint8_t *buf = malloc(COMMIT_BUF_SIZE);
    if (progress) {
        progress_set_total(progress, size);
    }
    for (uint64_t off = 0; ret == 0 && off < size; ) {
        struct block_status st;
        ret = blockdev_block_status(top, off, size - off, &st, err);
        if (ret < 0) {
            break;
        }
        if (st.len == 0) {
            ret = error_set(err, -EIO, "Block status of '%s' made no progress at %llu",
                            top->filename, (unsigned long long)off);
            break;
        }
        uint64_t len = st.len < size - off ? st.len : size - off;
        if ((st.flags & BDEV_STATUS_ALLOCATED) && st.depth < base_depth) {
            bool zero = (st.flags & BDEV_STATUS_ZERO) && !(st.flags & BDEV_STATUS_DATA);
            ret = copy_range(top, dst, off, len, zero, buf, err);
            if (ret < 0) {
                /* qemu-img's words for an I/O error of the commit job. */
                error_set_errno(err, ret, "Block job failed");
            }
        }
        off += len;
        if (progress) {
            progress_add(progress, len);
        }
    }
    free(buf);
    if (ret == 0) {
        ret = blockdev_flush(dst, err);
    }
    blockdev_close(dst);
    /* The chain's own read-only open of the base cached what it was. */
    if (ret == 0) {
        ret = blockdev_invalidate_cache((struct blockdev *)base, err);
    }
    return ret;
}
