/* LD_PRELOAD shim for tests: a simulated power loss. Every pwrite since a
 * file's last fdatasync is logged with the bytes it replaced. Before write
 * number POWERLOSS_AT (counted from 0) the process "loses power": each file
 * goes back to its state at its last sync, then a random half (seeded by
 * POWERLOSS_SEED) of the logged writes is applied again in their order, as
 * a disk cache that kept some of them would, and the process ends with
 * status 137 after flushing stdio (so the caller sees what completed).
 * Truncations and hole punches are taken as durable at once.
 * POWERLOSS_TRACE names a file that gets a line per write ("write FD
 * OFFSET LEN", numbered as POWERLOSS_AT counts them) and per sync ("sync
 * FD"), so that a test can cut power at the writes that matter. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset);
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset);
int fdatasync(int fd);
int fsync(int fd);

struct logged_write {
    int fd;
    off_t offset;
    size_t len;
    unsigned char *old;     /* what was there (zeros past the end) */
    unsigned char *new;
};

#define MAX_FDS 1024
static struct logged_write *writes;
static size_t n_writes, cap_writes;
static off_t synced_size[MAX_FDS];      /* -1: nothing logged since the sync */
static long writes_seen;
static int initialised;
static FILE *trace;

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);

static void init(void)
{
    if (initialised) {
        return;
    }
    real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    real_pread = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
    for (int i = 0; i < MAX_FDS; i++) {
        synced_size[i] = -1;
    }
    const char *path = getenv("POWERLOSS_TRACE");
    trace = path ? fopen(path, "w") : NULL;
    initialised = 1;
}

static void log_write(int fd, const void *buf, size_t count, off_t offset)
{
    if (fd < 0 || fd >= MAX_FDS) {
        return;
    }
    if (synced_size[fd] < 0) {
        struct stat st;
        synced_size[fd] = fstat(fd, &st) == 0 ? st.st_size : 0;
    }
    if (n_writes == cap_writes) {
        cap_writes = cap_writes ? cap_writes * 2 : 256;
        writes = realloc(writes, cap_writes * sizeof(*writes));
    }
    struct logged_write *w = &writes[n_writes++];
    w->fd = fd;
    w->offset = offset;
    w->len = count;
    w->old = calloc(1, count ? count : 1);
    w->new = malloc(count ? count : 1);
    memcpy(w->new, buf, count);
    ssize_t got = real_pread(fd, w->old, count, offset);
    (void)got;      /* short: the rest stays zeros, as past the end */
}

static void forget_fd(int fd)
{
    size_t kept = 0;
    for (size_t i = 0; i < n_writes; i++) {
        if (writes[i].fd == fd) {
            free(writes[i].old);
            free(writes[i].new);
        } else {
            writes[kept++] = writes[i];
        }
    }
    n_writes = kept;
    if (fd >= 0 && fd < MAX_FDS) {
        synced_size[fd] = -1;
    }
}

static void lose_power(void)
{
    const char *seed = getenv("POWERLOSS_SEED");
    srandom(seed ? (unsigned)atol(seed) : 1);
    for (size_t i = n_writes; i-- > 0;) {
        real_pwrite(writes[i].fd, writes[i].old, writes[i].len, writes[i].offset);
    }
    for (int fd = 0; fd < MAX_FDS; fd++) {
        if (synced_size[fd] >= 0 && ftruncate(fd, synced_size[fd]) < 0) {
            perror("powerloss: ftruncate");
        }
    }
    for (size_t i = 0; i < n_writes; i++) {
        if (random() & 1) {
            real_pwrite(writes[i].fd, writes[i].new, writes[i].len, writes[i].offset);
        }
    }
    fflush(NULL);
    _exit(137);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
    init();
    const char *at = getenv("POWERLOSS_AT");
    if (at && writes_seen == atol(at)) {
        lose_power();
    }
    writes_seen++;
    if (trace) {
        fprintf(trace, "write %d %lld %zu\n", fd, (long long)offset, count);
        fflush(trace);
    }
    log_write(fd, buf, count, offset);
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    return pwrite64(fd, buf, count, offset);
}

int fdatasync(int fd)
{
    init();
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int ret = real(fd);
    if (ret == 0) {
        if (trace) {
            fprintf(trace, "sync %d\n", fd);
            fflush(trace);
        }
        forget_fd(fd);
    }
    return ret;
}

int fsync(int fd)
{
    init();
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int ret = real(fd);
    if (ret == 0) {
        if (trace) {
            fprintf(trace, "sync %d\n", fd);
            fflush(trace);
        }
        forget_fd(fd);
    }
    return ret;
}

/* POWERLOSS_REPORT: where a run that did not lose power writes how many
 * writes it made, so a driver can choose the point of loss among them. */
__attribute__((destructor)) static void report_count(void)
{
    const char *path = getenv("POWERLOSS_REPORT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%ld\n", writes_seen);
        fclose(f);
    }
}
