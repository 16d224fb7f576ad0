/* The exported disk: flags clients see, and I/O with the command line's
 * policies applied. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd_export.h"
#include "nbd/nbd_proto.h"
#include "util/zero.h"

#define SECTOR 512u
#define CACHE_CHUNK (1u << 20)

/* Finds the bitmap in the chain, top first, with qemu-nbd's checks. */
static int add_bitmap(struct nbd_export *exp, const char *name, bool read_only, struct error *err)
{
    if (exp->n_bitmaps == NBD_MAX_EXPORT_BITMAPS) {
        return error_set(err, -EINVAL, "Too many bitmaps (at most %d)", NBD_MAX_EXPORT_BITMAPS);
    }
    for (struct blockdev *b = exp->bd; b; b = blockdev_backing(b)) {
        struct blockdev_bitmap_info *list;
        int n;
        int ret = blockdev_bitmap_list(b, &list, &n, err);
        if (ret < 0) {
            return ret;
        }
        for (int i = 0; i < n && ret == 0; i++) {
            if (strcmp(list[i].name, name) != 0) {
                continue;
            }
            if (read_only && !blockdev_is_read_only(b) && list[i].recording) {
                ret = error_set(err, -EINVAL, "Enabled bitmap '%s' incompatible with readonly "
                                "export", name);
            } else if (list[i].inconsistent) {
                /* qemu-nbd prints no hint here. */
                ret = error_set(err, -EINVAL, "Bitmap '%s' is inconsistent and cannot be used",
                                name);
            } else {
                exp->bitmaps[exp->n_bitmaps] = strdup(name);
                exp->bitmap_bd[exp->n_bitmaps++] = b;
                ret = 1;
            }
        }
        blockdev_bitmap_list_free(list, n);
        if (ret != 0) {
            return ret < 0 ? ret : 0;
        }
    }
    return error_set(err, -ENOENT, "Bitmap '%s' is not found", name);
}

int nbd_export_init(struct nbd_export *exp, struct blockdev *bd, const struct nbd_export_opts *o,
                    struct error *err)
{
    const char *name = o->name ? o->name : "";
    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        return error_set(err, -EINVAL, "export name '%s' too long", name);
    }
    if (o->description && strlen(o->description) > NBD_MAX_STRING_SIZE) {
        return error_set(err, -EINVAL, "description '%s' too long", o->description);
    }
    *exp = (struct nbd_export){
        .bd = bd,
        .name = strdup(name),
        .description = o->description ? strdup(o->description) : NULL,
        /* QEMU counts whole sectors, so a file's partial last sector is exported. */
        .size = (blockdev_size(bd) + SECTOR - 1) / SECTOR * SECTOR,
        .allocation_depth = o->allocation_depth,
        .writethrough = o->writethrough,
        .no_flush = o->no_flush,
        .discard_unmap = o->discard_unmap,
        .detect_zeroes = o->detect_zeroes,
    };
    /* The same set qemu-nbd 7.2 advertises. */
    exp->flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;
    if (o->multi_conn) {
        exp->flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    if (o->read_only) {
        exp->flags |= NBD_FLAG_READ_ONLY;
    } else {
        exp->flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    }
    int ret = 0;
    for (int i = 0; ret == 0 && i < o->n_bitmaps; i++) {
        ret = add_bitmap(exp, o->bitmaps[i], o->read_only, err);
    }
    if (ret < 0) {
        nbd_export_destroy(exp);
    }
    return ret;
}

void nbd_export_destroy(struct nbd_export *exp)
{
    free(exp->name);
    free(exp->description);
    exp->name = exp->description = NULL;
    for (int i = 0; i < exp->n_bitmaps; i++) {
        free(exp->bitmaps[i]);
    }
    exp->n_bitmaps = 0;
}

/* Bytes of [off, off + len) that lie inside the image (the rest is the
 * padding up to the next sector, which reads as zeros). */
static uint64_t inside(const struct nbd_export *exp, uint64_t off, uint64_t len)
{
    uint64_t disk = blockdev_size(exp->bd);
    if (off >= disk) {
        return 0;
    }
    return len < disk - off ? len : disk - off;
}

int nbd_export_read(const struct nbd_export *exp, uint64_t off, void *buf, size_t len,
                    struct error *err)
{
    size_t n = (size_t)inside(exp, off, len);
    memset((uint8_t *)buf + n, 0, len - n);
    return blockdev_pread(exp->bd, off, buf, n, err);
}

int nbd_export_flush(const struct nbd_export *exp, struct error *err)
{
    if (exp->no_flush) {
        return 0;
    }
    return blockdev_flush(exp->bd, err);
}

static int maybe_flush(const struct nbd_export *exp, bool fua, struct error *err)
{
    return (fua || exp->writethrough) ? nbd_export_flush(exp, err) : 0;
}

int nbd_export_write(const struct nbd_export *exp, uint64_t off, const void *buf, size_t len,
                     bool fua, struct error *err)
{
    size_t n = (size_t)inside(exp, off, len);
    if (!mem_is_zero((const uint8_t *)buf + n, len - n)) {
        return error_set(err, -ENOSPC, "write past the end of the image file");
    }
    int ret;
    if (exp->detect_zeroes != NBD_DETECT_ZEROES_OFF && mem_is_zero(buf, n)) {
        unsigned flags = exp->detect_zeroes == NBD_DETECT_ZEROES_UNMAP && exp->discard_unmap
                         ? BDEV_ZERO_MAY_UNMAP : 0;
        ret = blockdev_pwrite_zeroes(exp->bd, off, n, flags, err);
    } else {
        ret = blockdev_pwrite(exp->bd, off, buf, n, err);
    }
    return ret < 0 ? ret : maybe_flush(exp, fua, err);
}

/* Whether zeroing the range is a metadata operation (NBD_CMD_FLAG_FAST_ZERO):
 * raw files punch or zero ranges with fallocate; qcow2 marks whole clusters
 * but has to write the data of partial ones. */
static bool zeroing_is_fast(const struct nbd_export *exp, uint64_t off, uint64_t len)
{
    uint32_t cs = blockdev_cluster_size(exp->bd);
    if (cs == 0) {
        return true;
    }
    uint64_t end = off + len;
    return off % cs == 0 && (end % cs == 0 || end == blockdev_size(exp->bd));
}

int nbd_export_write_zeroes(const struct nbd_export *exp, uint64_t off, uint64_t len,
                            unsigned cmd_flags, struct error *err)
{
    uint64_t n = inside(exp, off, len);
    if ((cmd_flags & NBD_CMD_FLAG_FAST_ZERO) && !zeroing_is_fast(exp, off, n)) {
        return error_set(err, -ENOTSUP, "zeroing this range would not be fast");
    }
    unsigned flags = 0;
    if (exp->discard_unmap && !(cmd_flags & NBD_CMD_FLAG_NO_HOLE)) {
        flags |= BDEV_ZERO_MAY_UNMAP;
    }
    int ret = blockdev_pwrite_zeroes(exp->bd, off, n, flags, err);
    return ret < 0 ? ret : maybe_flush(exp, cmd_flags & NBD_CMD_FLAG_FUA, err);
}

int nbd_export_trim(const struct nbd_export *exp, uint64_t off, uint64_t len, bool fua,
                    struct error *err)
{
    int ret = 0;
    /* --discard=ignore (qemu-nbd's default) accepts trims and keeps the data. */
    if (exp->discard_unmap) {
        ret = blockdev_discard(exp->bd, off, inside(exp, off, len), err);
    }
    return ret < 0 ? ret : maybe_flush(exp, fua, err);
}

int nbd_export_cache(const struct nbd_export *exp, uint64_t off, uint64_t len, struct error *err)
{
    len = inside(exp, off, len);
    if (len == 0) {
        return 0;
    }
    uint8_t *buf = malloc(len < CACHE_CHUNK ? len : CACHE_CHUNK);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = 0;
    while (len > 0 && ret == 0) {
        size_t n = len < CACHE_CHUNK ? (size_t)len : CACHE_CHUNK;
        ret = blockdev_pread(exp->bd, off, buf, n, err);
        off += n;
        len -= n;
    }
    free(buf);
    return ret;
}

int nbd_export_status(const struct nbd_export *exp, uint64_t off, uint64_t len,
                      struct nbd_status *st, struct error *err)
{
    uint64_t n = inside(exp, off, len);
    if (n == 0) {
        *st = (struct nbd_status){ .len = len, .data = false, .zero = true, .depth = 1 };
        return 0;
    }
    struct block_status bs;
    int ret = blockdev_block_status(exp->bd, off, n, &bs, err);
    if (ret < 0) {
        return ret;
    }
    bool allocated = bs.flags & BDEV_STATUS_ALLOCATED;
    /* Zeros past the end of a shorter backing file belong to that file,
     * as QEMU counts them. */
    bool beyond_backing = bs.flags & BDEV_STATUS_PAST_BACKING;
    *st = (struct nbd_status){
        .len = bs.len > 0 && bs.len <= n ? bs.len : n,
        .data = bs.flags & BDEV_STATUS_DATA,
        /* Nothing in the chain defines the range: it reads as zeros. */
        .zero = (bs.flags & BDEV_STATUS_ZERO) || !allocated,
        .depth = allocated || beyond_backing ? (uint32_t)bs.depth + 1 : 0,
    };
    return 0;
}

int nbd_export_bitmap_status(const struct nbd_export *exp, int i, uint64_t off, uint64_t *len,
                             bool *dirty, struct error *err)
{
    uint64_t n = inside(exp, off, *len);
    if (n == 0) {
        *dirty = false;     /* the padding to the next sector was never written */
        return 0;
    }
    *len = n;
    return blockdev_bitmap_status(exp->bitmap_bd[i], exp->bitmaps[i], off, len, dirty, err);
}
