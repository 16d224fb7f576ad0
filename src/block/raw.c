/* The raw format: the virtual disk is the file itself. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_int.h"
#include "block/hostfile.h"

struct raw_state {
    struct blockdev bd;
    struct hostfile *file;
    uint64_t offset;            /* where the disk starts in file (QEMU's raw offset option) */
    bool fixed_size;            /* a size option was given: the disk is a window of file */
    /* Probed images: a check of the first sector and the write that passed
     * it happen as one, or two writers could each pass with half a header. */
    pthread_mutex_t block0_lock;
};

static struct raw_state *raw_of(struct blockdev *bd)
{
    return (struct raw_state *)bd;
}

static int raw_probe(const uint8_t *buf, size_t len)
{
    return 1; /* anything is raw; any real format scores higher */
}

static int raw_open(struct blockdev **out, struct hostfile *file, const char *filename,
                    const struct blockdev_open_opts *opts, struct error *err)
{
    int64_t size = hostfile_size(file);
    if (size < 0) {
        hostfile_close(file);
        return error_set_errno(err, (int)size, "Could not get the size of '%s'", filename);
    }
    uint64_t window = (uint64_t)size - (opts->raw_offset < (uint64_t)size ? opts->raw_offset
                                                                          : (uint64_t)size);
    if (opts->raw_has_size ? opts->raw_size > window || opts->raw_offset > (uint64_t)size
                           : opts->raw_offset > (uint64_t)size) {
        hostfile_close(file);
        return error_set(err, -EINVAL, "The sum of offset (%" PRIu64 ") and size (%" PRIu64 ") "
                         "has to be smaller or equal to the  actual size of the containing file "
                         "(%" PRId64 ")", opts->raw_offset, opts->raw_has_size ? opts->raw_size : 0,
                         size);
    }
    struct raw_state *s = calloc(1, sizeof(*s));
    extern const struct blockdev_driver raw_driver;
    blockdev_init(&s->bd, &raw_driver, filename, file, opts);
    s->file = file;
    s->offset = opts->raw_offset;
    s->fixed_size = opts->raw_has_size;
    if (opts->protocol_top && file->proto) {
        s->bd.node_driver = file->proto->name;
    }
    pthread_mutex_init(&s->block0_lock, NULL);
    if (opts->raw_has_size) {
        s->bd.size = opts->raw_size;
    } else if (s->offset) {
        s->bd.size = window;
    } else {
        s->bd.size = ((uint64_t)size + 511) & ~511ULL;  /* whole sectors, as QEMU sees a raw file */
    }
    *out = &s->bd;
    return 0;
}

static void raw_close(struct blockdev *bd)
{
    hostfile_close(raw_of(bd)->file);
    pthread_mutex_destroy(&raw_of(bd)->block0_lock);
    free(bd);
}

/* Called with block0_lock held (blockdev_check_block0_write). */
static int raw_check_block0(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                            struct error *err)
{
    uint8_t sector[BLOCKDEV_PROBE_SIZE];
    int ret = hostfile_pread(raw_of(bd)->file, raw_of(bd)->offset, sector, sizeof(sector));
    if (ret < 0) {
        return error_set_errno(err, ret, "Read of '%s' failed", bd->filename);
    }
    return blockdev_check_block0_write(bd, sector, off, buf, len, err);
}

static bool raw_guards_block0(struct blockdev *bd, uint64_t off)
{
    return bd->probed && off < BLOCKDEV_PROBE_SIZE;
}

static int raw_pread(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err)
{
    int ret = hostfile_pread(raw_of(bd)->file, raw_of(bd)->offset + off, buf, len);
    if (ret < 0) {
        return error_set_errno(err, ret, "Read of '%s' failed", bd->filename);
    }
    return 0;
}

static int raw_pread_nowait(struct blockdev *bd, uint64_t off, void *buf, size_t len)
{
    return hostfile_pread_nowait(raw_of(bd)->file, raw_of(bd)->offset + off, buf, len);
}

/* Block 0's guard reads: such writes take the ordinary path. */
static int raw_pwrite_nowait(struct blockdev *bd, uint64_t off, const void *buf, size_t len)
{
    if (raw_guards_block0(bd, off)) {
        return -EAGAIN;
    }
    return hostfile_pwrite_nowait(raw_of(bd)->file, raw_of(bd)->offset + off, buf, len);
}

static int raw_pwrite_data(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                           struct error *err)
{
    int ret = hostfile_pwrite(raw_of(bd)->file, raw_of(bd)->offset + off, buf, len);
    if (ret < 0) {
        return error_set_errno(err, ret, "Write to '%s' failed", bd->filename);
    }
    return 0;
}

static int raw_pwrite(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                      struct error *err)
{
    if (!raw_guards_block0(bd, off)) {
        return raw_pwrite_data(bd, off, buf, len, err);
    }
    struct raw_state *s = raw_of(bd);
    pthread_mutex_lock(&s->block0_lock);
    int ret = raw_check_block0(bd, off, buf, len, err);
    if (ret == 0) {
        ret = raw_pwrite_data(bd, off, buf, len, err);
    }
    pthread_mutex_unlock(&s->block0_lock);
    return ret;
}

/* No format we probe has a signature that zeros complete, but the check is
 * one sector read and keeps the rule "nothing makes block 0 probe as another
 * format" true for any driver added later. */
static int raw_zero_guarded(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap,
                            struct error *err)
{
    struct raw_state *s = raw_of(bd);
    bool guard = raw_guards_block0(bd, off);
    int ret = 0;
    if (guard) {
        pthread_mutex_lock(&s->block0_lock);
        ret = raw_check_block0(bd, off, NULL, len, err);
    }
    if (ret == 0) {
        ret = hostfile_zero_range(s->file, s->offset + off, len, may_unmap);
    }
    if (guard) {
        pthread_mutex_unlock(&s->block0_lock);
    }
    return ret;
}

static int raw_pwrite_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                             struct error *err)
{
    int ret = raw_zero_guarded(bd, off, len, flags & BDEV_ZERO_MAY_UNMAP, err);
    if (ret == -EPERM) {
        return ret;
    }
    if (ret < 0) {
        return error_set_errno(err, ret, "Writing zeros to '%s' failed", bd->filename);
    }
    return 0;
}

static int raw_discard(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err)
{
    /* Discard is advisory: a file system that cannot punch holes keeps the data. */
    struct hostfile *f = raw_of(bd)->file;
    if (f->proto && f->proto->discard) {
        return f->proto->discard(f, raw_of(bd)->offset + off, len);
    }
    int ret = raw_zero_guarded(bd, off, len, true, err);
    return ret == -EOPNOTSUPP ? 0 : ret;
}

static int raw_flush(struct blockdev *bd, struct error *err)
{
    int ret = hostfile_flush(raw_of(bd)->file);
    if (ret < 0) {
        return error_set_errno(err, ret, "Flush of '%s' failed", bd->filename);
    }
    return 0;
}

static int raw_truncate(struct blockdev *bd, uint64_t size, bool shrink_ok,
                        enum blockdev_prealloc prealloc, struct error *err)
{
    struct raw_state *s = raw_of(bd);
    if (s->fixed_size || s->offset) {
        return error_set(err, -ENOTSUP, "Cannot resize fixed-size raw disks");
    }
    if (size < bd->size && !shrink_ok) {
        return error_set(err, -EINVAL, "Use the --shrink option to perform a shrink operation.");
    }
    uint64_t old = bd->size;
    int ret = hostfile_truncate(s->file, size);
    if (ret == 0 && size > old && prealloc != PREALLOC_OFF && prealloc != PREALLOC_METADATA) {
        ret = hostfile_allocate(s->file, old, size - old, prealloc == PREALLOC_FULL);
    }
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not resize '%s'", bd->filename);
    }
    bd->size = size;
    return 0;
}

static int raw_block_status(struct blockdev *bd, uint64_t off, uint64_t len,
                            struct block_status *st, struct error *err)
{
    unsigned flags;
    uint64_t run, host = raw_of(bd)->offset + off;
    hostfile_status(raw_of(bd)->file, host, len, &flags, &run);
    /* A protocol that knows neither data nor zeros (null-co) allocates nothing. */
    if (flags) {
        flags |= BDEV_STATUS_ALLOCATED | BDEV_STATUS_OFFSET_VALID;
    }
    *st = (struct block_status){
        .len = run,
        .flags = flags,
        .host_offset = host,
        .file = bd->filename,
    };
    return 0;
}

static int raw_invalidate_cache(struct blockdev *bd, struct error *err)
{
    int64_t size = hostfile_size(raw_of(bd)->file);
    if (size < 0) {
        return error_set_errno(err, (int)size, "Could not get the size of '%s'", bd->filename);
    }
    struct raw_state *s = raw_of(bd);
    if (!s->fixed_size) {
        bd->size = s->offset ? (uint64_t)size - s->offset : ((uint64_t)size + 511) & ~511ULL;
    }
    return 0;
}

static int64_t raw_allocated_size(struct blockdev *bd)
{
    return hostfile_allocated_bytes(raw_of(bd)->file);
}

static int raw_create(const char *filename, const struct blockdev_create_opts *o, struct error *err)
{
    uint64_t size = o->size;
    enum blockdev_prealloc prealloc = o->prealloc;
    struct hostfile *f;
    int ret = hostfile_create(&f, filename, err);
    if (ret < 0) {
        return ret;
    }
    ret = hostfile_truncate(f, size);
    if (ret == 0 && (prealloc == PREALLOC_FALLOC || prealloc == PREALLOC_FULL) && size) {
        ret = hostfile_allocate(f, 0, size, prealloc == PREALLOC_FULL);
    }
    if (ret == 0 && size) {
        /* QEMU allocates the first block so that later O_DIRECT opens can probe
         * the alignment; doing the same keeps map output identical. */
        static const uint8_t zeros[4096];
        ret = hostfile_pwrite(f, 0, zeros, size < sizeof(zeros) ? size : sizeof(zeros));
    }
    if (ret < 0) {
        error_set_errno(err, ret, "Could not create '%s'", filename);
    }
    hostfile_close(f);
    return ret;
}

const struct blockdev_driver raw_driver = {
    .create = raw_create,
    .format_name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .pread = raw_pread,
    .pread_nowait = raw_pread_nowait,
    .pwrite_nowait = raw_pwrite_nowait,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .discard = raw_discard,
    .flush = raw_flush,
    .truncate = raw_truncate,
    .block_status = raw_block_status,
    .invalidate_cache = raw_invalidate_cache,
    .allocated_size = raw_allocated_size,
};
