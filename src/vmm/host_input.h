/* The one seam for what enters the guest from the host: the wall clock
 * (CMOS RTC), entropy (virtio-rng), console input, network frames and block
 * request completions. Devices call these instead of time(), getrandom(),
 * read() or readv(), so everything outside the guest's own computation
 * passes one place: a recorder can observe it (and, later, a replayer feed
 * it back) without touching a device.
 *
 * Each input is reported, after it happened, to the observer if one is set
 * (one per process: every machine's inputs). */
#ifndef VMM_HOST_INPUT_H
#define VMM_HOST_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum host_input_source {
    HOST_INPUT_CLOCK,           /* int64_t seconds since the epoch */
    HOST_INPUT_ENTROPY,         /* the random bytes */
    HOST_INPUT_CONSOLE,         /* the bytes read */
    HOST_INPUT_NET,             /* the frame (virtio-net header included) */
    HOST_INPUT_BLOCK,           /* struct host_block_completion */
};

/* A block request the host finished, in the order the guest sees them. */
struct host_block_completion {
    const void *device;         /* which device (its address: stable while it lives) */
    uint16_t head;              /* the request's descriptor chain */
    uint32_t len;               /* bytes written into the guest's buffers */
};

typedef void (*host_input_observer)(void *opaque, enum host_input_source src, const void *data, size_t len);
void host_input_set_observer(host_input_observer fn, void *opaque);

/* Replay: with a feeder set, inputs come from it instead of the host (the
 * fd arguments are not read). It fills up to len bytes of buf and returns
 * how many (or a negative errno: the input fails as a host error would).
 * For HOST_INPUT_BLOCK it gets the completion to check, returns 0 or <0.
 * The observer is not called for fed inputs. */
typedef ssize_t (*host_input_feeder)(void *opaque, enum host_input_source src, void *buf, size_t len);
void host_input_set_feeder(host_input_feeder fn, void *opaque);

/* The wall clock, in seconds since the epoch. */
int64_t host_input_clock(void);
/* Up to len random bytes; returns how many (or -errno). */
ssize_t host_input_entropy(void *buf, size_t len);
/* read() of console input from fd. */
ssize_t host_input_console(int fd, void *buf, size_t len);
/* readv() of one network frame from fd. */
ssize_t host_input_net(int fd, const struct iovec *iov, int iovcnt);
/* A block request of device completes with len bytes. */
void host_input_block_completion(const void *device, uint16_t head, uint32_t len);

#endif
