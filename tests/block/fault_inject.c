/* LD_PRELOAD shim for tests: makes pread/pwrite fail with EIO after a given
 * number of successful calls (FAULT_PREAD_AFTER, FAULT_PWRITE_AFTER), and
 * fdatasync fail when FAULT_FSYNC is set, so tests can check that I/O errors
 * give clear messages and never corrupt an image. FAULT_EXIT_BEFORE_PWRITE=N
 * ends the process (status 137, as a SIGKILL) instead of making write N
 * (counted from 0): a kill at a chosen point. FAULT_FSYNC_NTH=N makes only
 * fdatasync number N (from 0) fail, as a disk reports one lost writeback. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static long limit(const char *name)
{
    const char *v = getenv(name);
    return v ? atol(v) : -1;
}

static atomic_long preads, pwrites;

ssize_t pread64(int fd, void *buf, size_t count, off_t offset);
ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset);
ssize_t pread(int fd, void *buf, size_t count, off_t offset);
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset);
int fdatasync(int fd);

static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);

ssize_t pread64(int fd, void *buf, size_t count, off_t offset)
{
    long after = limit("FAULT_PREAD_AFTER");
    if (after >= 0 && atomic_fetch_add(&preads, 1) >= after) {
        errno = EIO;
        return -1;
    }
    if (!real_pread) {
        real_pread = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
    }
    return real_pread(fd, buf, count, offset);
}

static atomic_long pwrites_seen;

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
    long exit_at = limit("FAULT_EXIT_BEFORE_PWRITE");
    if (exit_at >= 0 && atomic_fetch_add(&pwrites_seen, 1) == exit_at) {
        _exit(137);
    }
    long after = limit("FAULT_PWRITE_AFTER");
    if (after >= 0 && atomic_fetch_add(&pwrites, 1) >= after) {
        errno = EIO;
        return -1;
    }
    if (!real_pwrite) {
        real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    }
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    return pread64(fd, buf, count, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    return pwrite64(fd, buf, count, offset);
}

static atomic_long syncs_seen;

int fdatasync(int fd)
{
    long nth = limit("FAULT_FSYNC_NTH");
    if (getenv("FAULT_FSYNC") || (nth >= 0 && atomic_fetch_add(&syncs_seen, 1) == nth)) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
