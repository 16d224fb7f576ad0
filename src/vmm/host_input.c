#include "vmm/host_input.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Set before the vCPUs start (a recorder), read by device threads. */
static host_input_observer observer;
static void *observer_opaque;

void host_input_set_observer(host_input_observer fn, void *opaque)
{
    __atomic_store_n(&observer_opaque, opaque, __ATOMIC_RELAXED);
    __atomic_store_n(&observer, fn, __ATOMIC_RELEASE);
}

static host_input_feeder feeder;
static void *feeder_opaque;

void host_input_set_feeder(host_input_feeder fn, void *opaque)
{
    __atomic_store_n(&feeder_opaque, opaque, __ATOMIC_RELAXED);
    __atomic_store_n(&feeder, fn, __ATOMIC_RELEASE);
}

/* The feeder if one is set (then *opaque is its argument). */
static host_input_feeder fed(void **opaque)
{
    host_input_feeder fn = __atomic_load_n(&feeder, __ATOMIC_ACQUIRE);
    if (fn) {
        *opaque = __atomic_load_n(&feeder_opaque, __ATOMIC_RELAXED);
    }
    return fn;
}

static void observe(enum host_input_source src, const void *data, size_t len)
{
    host_input_observer fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    if (fn) {
        fn(__atomic_load_n(&observer_opaque, __ATOMIC_RELAXED), src, data, len);
    }
}

int64_t host_input_clock(void)
{
    void *o;
    host_input_feeder f = fed(&o);
    if (f) {
        int64_t t = 0;
        f(o, HOST_INPUT_CLOCK, &t, sizeof(t));
        return t;
    }
    int64_t now = (int64_t)time(NULL);
    observe(HOST_INPUT_CLOCK, &now, sizeof(now));
    return now;
}

ssize_t host_input_entropy(void *buf, size_t len)
{
    void *o;
    host_input_feeder f = fed(&o);
    if (f) {
        return f(o, HOST_INPUT_ENTROPY, buf, len);
    }
    ssize_t n = getrandom(buf, len, 0);
    if (n < 0) {
        return -errno;
    }
    observe(HOST_INPUT_ENTROPY, buf, (size_t)n);
    return n;
}

ssize_t host_input_console(int fd, void *buf, size_t len)
{
    void *o;
    host_input_feeder f = fed(&o);
    if (f) {
        ssize_t n = f(o, HOST_INPUT_CONSOLE, buf, len);
        if (n < 0) {
            errno = (int)-n;
            return -1;
        }
        return n;
    }
    ssize_t n = read(fd, buf, len);
    if (n > 0) {
        observe(HOST_INPUT_CONSOLE, buf, (size_t)n);
    }
    return n;
}

/* The frame as one piece, for the observer only (frames are small). */
static void observe_frame(const struct iovec *iov, int iovcnt, size_t len)
{
    if (!__atomic_load_n(&observer, __ATOMIC_ACQUIRE)) {
        return;
    }
    static __thread uint8_t frame[65536 + 64];
    size_t done = 0;
    for (int i = 0; i < iovcnt && done < len && done < sizeof(frame); i++) {
        size_t n = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
        if (n > sizeof(frame) - done) {
            n = sizeof(frame) - done;
        }
        const uint8_t *src = iov[i].iov_base;
        for (size_t k = 0; k < n; k++) {
            frame[done + k] = src[k];
        }
        done += n;
    }
    observe(HOST_INPUT_NET, frame, done);
}

/* A fed frame, scattered into iov. */
static ssize_t fed_frame(host_input_feeder f, void *o, const struct iovec *iov, int iovcnt)
{
    static __thread uint8_t frame[65536 + 64];
    size_t room = 0;
    for (int i = 0; i < iovcnt; i++) {
        room += iov[i].iov_len;
    }
    ssize_t n = f(o, HOST_INPUT_NET, frame, room < sizeof(frame) ? room : sizeof(frame));
    if (n < 0) {
        errno = (int)-n;
        return -1;
    }
    size_t done = 0;
    for (int i = 0; i < iovcnt && done < (size_t)n; i++) {
        size_t k = iov[i].iov_len < (size_t)n - done ? iov[i].iov_len : (size_t)n - done;
        memcpy(iov[i].iov_base, frame + done, k);
        done += k;
    }
    return n;
}

ssize_t host_input_net(int fd, const struct iovec *iov, int iovcnt)
{
    void *o;
    host_input_feeder f = fed(&o);
    if (f) {
        return fed_frame(f, o, iov, iovcnt);
    }
    ssize_t n = readv(fd, iov, iovcnt);
    if (n > 0) {
        observe_frame(iov, iovcnt, (size_t)n);
    }
    return n;
}

void host_input_block_completion(const void *device, uint16_t head, uint32_t len)
{
    struct host_block_completion c = { device, head, len };
    void *o;
    host_input_feeder f = fed(&o);
    if (f) {
        f(o, HOST_INPUT_BLOCK, &c, sizeof(c));
        return;
    }
    observe(HOST_INPUT_BLOCK, &c, sizeof(c));
}
