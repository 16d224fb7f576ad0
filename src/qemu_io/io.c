/* The I/O underneath the data commands, with the open's semantics
 * (copy-on-read, compress filter, writethrough), and the argument checks
 * the data commands share. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/qemu_io.h"

#define SECTOR 512

/* Copy-on-read: whatever the read found below the top layer is written into
 * the top layer, whole clusters at a time, so the next read stays on top. */
static int copy_up(struct cowio *io, uint64_t off, size_t len)
{
    struct blockdev *bd = io->bd;
    uint64_t unit = blockdev_cluster_size(bd) ? blockdev_cluster_size(bd) : SECTOR;
    uint64_t start = off / unit * unit;
    uint64_t end = (off + len + unit - 1) / unit * unit;
    if (end > blockdev_size(bd)) {
        end = blockdev_size(bd);
    }
    while (start < end) {
        struct block_status st;
        int ret = blockdev_block_status(bd, start, end - start, &st, NULL);
        if (ret < 0) {
            return ret;
        }
        if (st.len == 0) {
            break;
        }
        bool on_top = st.depth == 0 && (st.flags & BDEV_STATUS_ALLOCATED);
        if (!on_top) {
            void *buf = cowio_alloc(io, st.len, 0);
            if (!buf) {
                return -ENOMEM;
            }
            ret = blockdev_pread(bd, start, buf, st.len, NULL);
            if (ret == 0) {
                ret = blockdev_pwrite(bd, start, buf, st.len, NULL);
            }
            cowio_free(io, buf);
            if (ret < 0) {
                return ret;
            }
        }
        start += st.len;
    }
    return 0;
}

int cowio_do_read(struct cowio *io, uint64_t off, void *buf, size_t len)
{
    int ret = blockdev_pread(io->bd, off, buf, len, NULL);
    if (ret == 0 && len && io->open.copy_on_read && blockdev_backing(io->bd) && !blockdev_is_read_only(io->bd)) {
        ret = copy_up(io, off, len);
    }
    return ret;
}

int cowio_after_write(struct cowio *io, bool fua)
{
    if ((fua || io->open.writethrough) && !io->open.no_flush) {
        return blockdev_flush(io->bd, NULL);
    }
    return 0;
}

/* Through qemu's compress filter every write becomes compressed clusters:
 * partial clusters are completed with what the disk holds (read-modify-write). */
static int write_compressing(struct cowio *io, uint64_t off, const void *buf, size_t len)
{
    struct blockdev *bd = io->bd;
    uint64_t unit = blockdev_cluster_size(bd);
    if (!unit) {
        return -ENOTSUP;
    }
    if (off > blockdev_size(bd) || len > blockdev_size(bd) - off) {
        return -EIO;
    }
    uint64_t start = off / unit * unit;
    uint64_t end = (off + len + unit - 1) / unit * unit;
    if (end > blockdev_size(bd)) {
        end = blockdev_size(bd);
    }
    uint8_t *whole = cowio_alloc(io, end - start, 0);
    if (!whole) {
        return -ENOMEM;
    }
    int ret = 0;
    if (start < off || off + len < end) {
        ret = blockdev_pread(bd, start, whole, end - start, NULL);
    }
    memcpy(whole + (off - start), buf, len);
    for (uint64_t pos = start; ret == 0 && pos < end; pos += unit) {
        uint64_t n = end - pos < unit ? end - pos : unit;
        ret = blockdev_pwrite_compressed(bd, pos, whole + (pos - start), n, NULL);
    }
    cowio_free(io, whole);
    return ret;
}

int cowio_do_write(struct cowio *io, uint64_t off, const void *buf, size_t len, bool fua)
{
    int ret = io->open.compress ? write_compressing(io, off, buf, len)
                                : blockdev_pwrite(io->bd, off, buf, len, NULL);
    return ret < 0 ? ret : cowio_after_write(io, fua);
}

bool cowio_sector_aligned(int64_t offset, int64_t count)
{
    if (offset % SECTOR) {
        printf("%" PRId64 " is not a sector-aligned value for 'offset'\n", offset);
        return false;
    }
    if (count % SECTOR) {
        printf("%" PRId64 " is not a sector-aligned value for 'count'\n", count);
        return false;
    }
    return true;
}

/* Parses an offset or length argument, printing qemu-io's complaint. */
bool cowio_parse_num(const char *arg, int64_t *out)
{
    *out = cowio_cvtnum(arg);
    if (*out < 0) {
        cowio_print_cvtnum_err(*out, arg);
        return false;
    }
    return true;
}

bool cowio_pattern_ok(const uint8_t *buf, int64_t len, int pattern)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != pattern) {
            return false;
        }
    }
    return true;
}

int cowio_vector_length(char **args, int n, int64_t *total)
{
    *total = 0;
    for (int i = 0; i < n; i++) {
        int64_t len;
        if (!cowio_parse_num(args[i], &len)) {
            return -EINVAL;
        }
        if (len > COWIO_MAX_REQUEST) {
            printf("Argument '%s' exceeds maximum size %" PRIu64 "\n", args[i],
                   (uint64_t)COWIO_MAX_REQUEST);
            return -EINVAL;
        }
        if (*total > COWIO_MAX_REQUEST - len) {
            printf("The total number of bytes exceed the maximum size %" PRIu64 "\n",
                   (uint64_t)COWIO_MAX_REQUEST);
            return -EINVAL;
        }
        *total += len;
    }
    return 0;
}

