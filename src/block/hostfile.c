#include "block/hostfile.h"
#include "block/blockdev.h"
#include "util/io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int hostfile_wrap(struct hostfile **out, int fd, const char *filename, bool read_only,
                         bool direct, struct error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int ret = -errno;
        close(fd);
        return error_set_errno(err, ret, "Could not stat '%s'", filename);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return error_set(err, -EISDIR, "'%s' is a directory", filename);
    }
    struct hostfile *f = calloc(1, sizeof(*f));
    f->fd = fd;
    f->filename = strdup(filename);
    f->read_only = read_only;
    f->direct = direct;
    pthread_rwlock_init(&f->rmw_lock, NULL);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    *out = f;
    return 0;
}

char *hostfile_strip_prefix(const char *filename)
{
    if (strncmp(filename, "file:", 5) != 0) {
        return NULL;
    }
    const char *path = filename + 5;
    const char *colon = strchr(path, ':');
    const char *slash = strchr(path, '/');
    char *out = NULL;
    bool looks_prefixed = colon && (!slash || colon < slash);
    if (asprintf(&out, "%s%s", looks_prefixed ? "./" : "", path) < 0) {
        return NULL;
    }
    return out;
}

int hostfile_open(struct hostfile **out, const char *filename, bool read_only, bool direct,
                  struct error *err)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);
    int fd = open(filename, flags);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not open '%s'", filename);
    }
    return hostfile_wrap(out, fd, filename, read_only, direct, err);
}

int hostfile_create(struct hostfile **out, const char *filename, struct error *err)
{
    char *stripped = hostfile_strip_prefix(filename);
    if (stripped) {
        int ret = hostfile_create(out, stripped, err);
        free(stripped);
        return ret;
    }
    /* Truncated only once the lock says nobody else uses the file. */
    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not create '%s'", filename);
    }
    struct hostfile *f = NULL;
    int ret = hostfile_wrap(&f, fd, filename, false, false, err);
    if (ret == 0) {
        ret = hostfile_lock(f, HOSTFILE_PERM_WRITE | HOSTFILE_PERM_RESIZE,
                            HOSTFILE_PERM_ALL & ~HOSTFILE_PERM_RESIZE, false, err);
    }
    if (ret == 0 && (ret = hostfile_truncate(f, 0)) < 0) {
        error_set_errno(err, ret, "Could not truncate '%s'", filename);
    }
    if (ret < 0 && f) {
        hostfile_close(f);
        return ret;
    }
    *out = f;
    return ret;
}

void hostfile_close(struct hostfile *f)
{
    if (f && f->proto) {
        f->proto->close(f);
        pthread_rwlock_destroy(&f->rmw_lock);
        free(f->filename);
        blkdebug_free(f->dbg);
        free(f);
    } else if (f) {
        hostfile_unlock(f);
        close(f->fd);
        pthread_rwlock_destroy(&f->rmw_lock);
        free(f->filename);
        blkdebug_free(f->dbg);
        free(f);
    }
}

/* O_DIRECT wants offsets, lengths and buffers aligned to the logical block
 * size; 4 KiB satisfies every device. */
#define DIRECT_ALIGN 4096u

static bool is_aligned(uint64_t off, const void *buf, size_t len)
{
    return ((off | len | (uintptr_t)buf) & (DIRECT_ALIGN - 1)) == 0;
}

/* flags: preadv2's (RWF_NOWAIT), 0 for a plain pread (util/io.c's loop,
 * which the fault injection shim of the tests intercepts). Past the end of
 * the file reads zeros. */
static int full_pread(int fd, uint64_t off, void *buf, size_t len, int flags)
{
    if (!flags) {
        ssize_t got = io_pread_full(fd, buf, len, (off_t)off);
        if (got < 0) {
            return (int)got;
        }
        memset((uint8_t *)buf + got, 0, len - (size_t)got);
        return 0;
    }
    uint8_t *p = buf;
    while (len > 0) {
        struct iovec iov = { p, len };
        ssize_t n = preadv2(fd, &iov, 1, (off_t)off, flags);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int hostfile_pread_nowait(struct hostfile *f, uint64_t off, void *buf, size_t len)
{
    if (f->proto || f->direct || f->dbg || __atomic_load_n(&f->no_nowait, __ATOMIC_RELAXED)) {
        return -EAGAIN;
    }
    int ret = full_pread(f->fd, off, buf, len, RWF_NOWAIT);
    if (ret == -EOPNOTSUPP || ret == -EINVAL) {
        __atomic_store_n(&f->no_nowait, true, __ATOMIC_RELAXED);
    }
    return ret;
}

static int full_pwrite(int fd, uint64_t off, const void *buf, size_t len)
{
    return io_pwrite_full(fd, buf, len, (off_t)off);
}

static int full_pwrite_nowait(int fd, uint64_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        struct iovec iov = { (void *)p, len };
        ssize_t n = pwritev2(fd, &iov, 1, (off_t)off, RWF_NOWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EAGAIN;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

#define PAGE_BYTES 4096u

/* Counted once the write has reached the file (when it returns, whatever it
 * returns): a flush that read the count before a write finished must not
 * stand for it, or the next flush would skip its fdatasync. */
static int counted(struct hostfile *f, int ret)
{
    __atomic_add_fetch(&f->write_gen, 1, __ATOMIC_ACQ_REL);
    return ret;
}

static int pwrite_nowait_uncounted(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    if (f->proto || f->direct || f->dbg || f->read_only) {
        return -EAGAIN;
    }
    if (!__atomic_load_n(&f->no_nowait_write, __ATOMIC_RELAXED)) {
        int ret = full_pwrite_nowait(f->fd, off, buf, len);
        if (ret != -EOPNOTSUPP && ret != -EINVAL) {
            return ret;
        }
        __atomic_store_n(&f->no_nowait_write, true, __ATOMIC_RELAXED);
    }
    if ((off | len) & (PAGE_BYTES - 1)) {
        return -EAGAIN;     /* a partial page may have to be read first */
    }
    return full_pwrite(f->fd, off, buf, len);
}

/* A write or zero write asked of the file, whatever it returned. */
static int written(struct hostfile *f, uint64_t off, uint64_t len, int ret)
{
    if (len) {
        hostfile_atomic_max(&f->wr_highest_offset, off + len);
    }
    return counted(f, ret);
}

int hostfile_pwrite_nowait(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    int ret = pwrite_nowait_uncounted(f, off, buf, len);
    return ret == -EAGAIN ? ret : written(f, off, len, ret);  /* -EAGAIN: nothing written, a worker redoes it */
}

/* The aligned span around [off, off+len) in a bounce buffer. */
static uint8_t *bounce_span(uint64_t off, size_t len, uint64_t *start, size_t *span)
{
    *start = off & ~(uint64_t)(DIRECT_ALIGN - 1);
    uint64_t end = (off + len + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
    *span = (size_t)(end - *start);
    void *p = NULL;
    return posix_memalign(&p, DIRECT_ALIGN, *span) == 0 ? p : NULL;
}

int hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len)
{
    int err = blkdebug_check(f->dbg, BLKDBG_IO_READ, off, len);
    if (err < 0) {
        return err;
    }
    if (f->proto) {
        return f->proto->pread(f, off, buf, len);
    }
    if (!f->direct || is_aligned(off, buf, len)) {
        return full_pread(f->fd, off, buf, len, 0);
    }
    uint64_t start;
    size_t span;
    uint8_t *bounce = bounce_span(off, len, &start, &span);
    if (!bounce) {
        return -ENOMEM;
    }
    int ret = full_pread(f->fd, start, bounce, span, 0);
    if (ret == 0) {
        memcpy(buf, bounce + (off - start), len);
    }
    free(bounce);
    return ret;
}

static int pwrite_uncounted(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    int err = blkdebug_check(f->dbg, BLKDBG_IO_WRITE, off, len);
    if (err < 0) {
        return err;
    }
    if (f->proto) {
        return f->proto->pwrite(f, off, buf, len);
    }
    if (!f->direct) {
        return full_pwrite(f->fd, off, buf, len);
    }
    if (is_aligned(off, buf, len)) {
        pthread_rwlock_rdlock(&f->rmw_lock);
        int ret = full_pwrite(f->fd, off, buf, len);
        pthread_rwlock_unlock(&f->rmw_lock);
        return ret;
    }
    uint64_t start;
    size_t span;
    uint8_t *bounce = bounce_span(off, len, &start, &span);
    if (!bounce) {
        return -ENOMEM;
    }
    /* Read-modify-write of whole blocks: no other write may slip in between. */
    pthread_rwlock_wrlock(&f->rmw_lock);
    int64_t size = hostfile_size(f);
    int ret = size < 0 ? (int)size : full_pread(f->fd, start, bounce, span, 0);
    if (ret == 0) {
        memcpy(bounce + (off - start), buf, len);
        ret = full_pwrite(f->fd, start, bounce, span);
    }
    if (ret == 0 && start + span > (uint64_t)size && start + span > off + len) {
        /* The padding must not make the file longer than the write did. */
        uint64_t end = off + len > (uint64_t)size ? off + len : (uint64_t)size;
        ret = hostfile_truncate(f, end);
    }
    pthread_rwlock_unlock(&f->rmw_lock);
    free(bounce);
    return ret;
}

int hostfile_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len)
{
    return written(f, off, len, pwrite_uncounted(f, off, buf, len));
}

static int flush_now(struct hostfile *f)
{
    int err = blkdebug_check(f->dbg, BLKDBG_IO_FLUSH, 0, 0);
    if (err < 0) {
        return err;
    }
    if (f->no_flush) {
        return 0;
    }
    if (f->proto) {
        return f->proto->flush(f);
    }
    if (__atomic_load_n(&f->sync_failed, __ATOMIC_ACQUIRE)) {
        return -EIO;
    }
    if (fdatasync(f->fd) < 0) {
        int ret = -errno;
        __atomic_store_n(&f->sync_failed, true, __ATOMIC_RELEASE);
        return ret;
    }
    return 0;
}

int hostfile_flush(struct hostfile *f)
{
    uint64_t gen = __atomic_load_n(&f->write_gen, __ATOMIC_ACQUIRE);
    uint64_t flushed = __atomic_load_n(&f->flushed_gen, __ATOMIC_ACQUIRE);
    if (gen == flushed) {
        return 0;
    }
    int ret = flush_now(f);
    /* Concurrent flushes: the count only moves forward. */
    while (ret == 0 && flushed < gen &&
           !__atomic_compare_exchange_n(&f->flushed_gen, &flushed, gen, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
    }
    return ret;
}

int64_t hostfile_size(struct hostfile *f)
{
    if (f->proto) {
        return f->proto->size(f);
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0) {
        return -errno;
    }
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(f->fd, 0, SEEK_END);
        return end < 0 ? -errno : end;
    }
    return st.st_size;
}

static int truncate_uncounted(struct hostfile *f, uint64_t size)
{
    if (f->proto) {
        return f->proto->truncate(f, size);
    }
    return ftruncate(f->fd, (off_t)size) < 0 ? -errno : 0;
}

int hostfile_truncate(struct hostfile *f, uint64_t size)
{
    return counted(f, truncate_uncounted(f, size));
}

static int write_zeros_slowly(struct hostfile *f, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[65536];
    while (len > 0) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        int ret = hostfile_pwrite(f, off, zeros, n);
        if (ret < 0) {
            return ret;
        }
        off += n;
        len -= n;
    }
    return 0;
}

static int allocate_uncounted(struct hostfile *f, uint64_t off, uint64_t len, bool full)
{
    if (full) {
        return write_zeros_slowly(f, off, len);
    }
    if (f->proto) {
        return -EOPNOTSUPP;
    }
    if (fallocate(f->fd, 0, (off_t)off, (off_t)len) == 0) {
        return 0;
    }
    return -errno;
}

int hostfile_allocate(struct hostfile *f, uint64_t off, uint64_t len, bool full)
{
    return counted(f, allocate_uncounted(f, off, len, full));
}

static int zero_range_uncounted(struct hostfile *f, uint64_t off, uint64_t len, bool may_unmap)
{
    int err = blkdebug_check(f->dbg, BLKDBG_IO_WRITE_ZEROES, off, len);
    if (err < 0) {
        return err;
    }
    if (f->proto) {
        return f->proto->zero_range(f, off, len, may_unmap);
    }
    int64_t size = hostfile_size(f);
    if (size >= 0 && off >= (uint64_t)size) {
        /* Past EOF already reads as zeros; grow the file only when needed. */
        return hostfile_truncate(f, off + len);
    }
    if (may_unmap &&
        fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0) {
        if (size >= 0 && off + len > (uint64_t)size) {
            return hostfile_truncate(f, off + len);
        }
        return 0;
    }
    if (fallocate(f->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0) {
        return 0;
    }
    return write_zeros_slowly(f, off, len);
}

int hostfile_zero_range(struct hostfile *f, uint64_t off, uint64_t len, bool may_unmap)
{
    return len == 0 ? 0 : written(f, off, len, zero_range_uncounted(f, off, len, may_unmap));
}

int hostfile_discard(struct hostfile *f, uint64_t off, uint64_t len)
{
    int ret = len == 0 ? 0 : counted(f, zero_range_uncounted(f, off, len, true));
    if (ret < 0) {
        __atomic_add_fetch(&f->discard_nb_failed, 1, __ATOMIC_RELAXED);
    } else if (len) {
        __atomic_add_fetch(&f->discard_nb_ok, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&f->discard_bytes_ok, len, __ATOMIC_RELAXED);
    }
    return ret;
}

int64_t hostfile_allocated_bytes(struct hostfile *f)
{
    if (f->proto) {
        return 0;   /* nothing of the host's file systems */
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

int hostfile_data_run(struct hostfile *f, uint64_t off, uint64_t len, bool *is_data, uint64_t *run)
{
    if (f->proto) {
        unsigned flags = 0;
        int ret = f->proto->status(f, off, len, &flags, run);
        *is_data = !(flags & BDEV_STATUS_ZERO);
        return ret;
    }
    off_t data = lseek(f->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {           /* a hole up to EOF (or past it) */
            *is_data = false;
            *run = len;
            return 0;
        }
        *is_data = true;                /* no SEEK_DATA support: all data */
        *run = len;
        return 0;
    }
    if ((uint64_t)data > off) {
        *is_data = false;
        *run = (uint64_t)data - off;
    } else {
        off_t hole = lseek(f->fd, (off_t)off, SEEK_HOLE);
        *is_data = true;
        *run = hole < 0 ? len : (uint64_t)hole - off;
    }
    if (*run > len || *run == 0) {
        *run = len;
    }
    return 0;
}

int hostfile_status(struct hostfile *f, uint64_t off, uint64_t len, unsigned *flags,
                    uint64_t *run)
{
    if (f->proto) {
        return f->proto->status(f, off, len, flags, run);
    }
    bool is_data;
    int ret = hostfile_data_run(f, off, len, &is_data, run);
    *flags = is_data ? BDEV_STATUS_DATA : BDEV_STATUS_ZERO;
    return ret;
}

struct hostfile *hostfile_new_protocol(const struct hostfile_protocol *proto, void *state,
                                       const char *filename, bool read_only)
{
    struct hostfile *f = calloc(1, sizeof(*f));
    f->proto = proto;
    f->proto_state = state;
    f->fd = -1;
    f->filename = strdup(filename);
    f->read_only = read_only;
    pthread_rwlock_init(&f->rmw_lock, NULL);
    return f;
}
