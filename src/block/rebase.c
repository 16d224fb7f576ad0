#include "block/rebase.h"
#include "block/block_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define REBASE_SECTOR 512

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* What new_backing reads at [off, off+len): zeros beyond its end. */
static int read_new(struct blockdev *nb, uint64_t off, uint8_t *buf, uint64_t len,
                    struct error *err)
{
    memset(buf, 0, len);
    if (!nb || off >= blockdev_size(nb)) {
        return 0;
    }
    return blockdev_pread(nb, off, buf, min_u64(len, blockdev_size(nb) - off), err);
}

/* Writes the runs of sectors where old and new differ. Past the end of the
 * old backing file (or with none) the old view is zeros by definition, and
 * they are written as zeros, as qemu-img does; within it, what the old
 * backing file holds is written as data, even where it reads as zeros. */
static int write_differences(struct blockdev *overlay, uint64_t off, const uint8_t *old_buf,
                             const uint8_t *new_buf, uint64_t len, bool old_is_zero,
                             struct error *err)
{
    uint64_t pos = 0;
    while (pos < len) {
        uint64_t n = min_u64(REBASE_SECTOR, len - pos);
        if (memcmp(old_buf + pos, new_buf + pos, n) == 0) {
            pos += n;
            continue;
        }
        uint64_t start = pos;
        while (pos < len) {
            n = min_u64(REBASE_SECTOR, len - pos);
            if (memcmp(old_buf + pos, new_buf + pos, n) == 0) {
                break;
            }
            pos += n;
        }
        int ret = old_is_zero
                  ? blockdev_pwrite_zeroes(overlay, off + start, pos - start, 0, err)
                  : blockdev_pwrite(overlay, off + start, old_buf + start, pos - start, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int block_rebase_copy(struct blockdev *overlay, struct blockdev *new_backing,
                      struct progress *progress, struct error *err)
{
    uint64_t size = blockdev_size(overlay);
    /* Compare a cluster at a time: writes then fill whole clusters mostly. */
    uint64_t step = overlay->cluster_size ? overlay->cluster_size : 65536;
    if (step < 65536) {
        step = 65536;
    }
    struct blockdev *old_backing = blockdev_backing(overlay);
    uint64_t old_size = old_backing ? blockdev_size(old_backing) : 0;
    uint8_t *old_buf = malloc(step), *new_buf = malloc(step);
    int ret = 0;
    if (progress) {
        progress_set_total(progress, size);
    }
    for (uint64_t off = 0; ret == 0 && off < size; ) {
        struct block_status st;
        ret = blockdev_block_status(overlay, off, min_u64(step, size - off), &st, err);
        if (ret < 0) {
            break;
        }
        if (st.len == 0) {
            ret = error_set(err, -EIO, "Block status of '%s' made no progress", overlay->filename);
            break;
        }
        uint64_t len = min_u64(min_u64(st.len, step), size - off);
        if (off < old_size) {
            len = min_u64(len, old_size - off);     /* no chunk straddles its end */
        }
        bool own = st.depth == 0 && (st.flags & BDEV_STATUS_ALLOCATED);
        if (!own) {
            ret = blockdev_pread(overlay, off, old_buf, len, err);
            if (ret == 0) {
                ret = read_new(new_backing, off, new_buf, len, err);
            }
            if (ret == 0) {
                ret = write_differences(overlay, off, old_buf, new_buf, len, off >= old_size,
                                        err);
            }
        }
        off += len;
        if (progress) {
            progress_add(progress, len);
        }
    }
    free(old_buf);
    free(new_buf);
    if (ret == 0) {
        ret = blockdev_flush(overlay, err);
    }
    return ret;
}
