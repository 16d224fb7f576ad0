/* libFuzzer target: any bytes as a replay log (issue 13), read as replay
 * reads it: the header, then events of every kind and length, their CRCs,
 * the end record. The reader must refuse what is malformed, never overrun
 * or allocate what a length field claims. Then the same bytes drive the
 * replay engine through the host-input seam for a few dozen exits, as a
 * device would ask for inputs, so hostile events reach the feeder too. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "replay/replay.h"
#include "vmm/host_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd_of(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-replay", MFD_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void drive_engine(const uint8_t *data, size_t size, const struct replay_header *h)
{
    int fd = memfd_of(data, size);
    struct replay *rp;
    if (fd < 0 || replay_replay_begin(&rp, fd, h, NULL) < 0) {
        return;
    }
    static uint8_t buf[REPLAY_MAX_PAYLOAD];
    for (uint32_t n = 0; n < 48 && replay_status(rp, NULL) == 0; n++) {
        replay_advance(rp);
        struct replay_exit e = { .reason = n % 3, .rip = n, .size = 1 };
        replay_exit(rp, &e, NULL);
        switch (n % 6) {
        case 0: host_input_clock(); break;
        case 1: host_input_entropy(buf, 64 + n); break;
        case 2: if (replay_pending(rp, REPLAY_EV_CONSOLE)) host_input_console(-1, buf, 16); break;
        case 3: {
            struct iovec iov[2] = { { buf, 10 }, { buf + 10, 2000 } };
            host_input_net(-1, iov, 2);
            break;
        }
        case 4: host_input_block_completion(buf, (uint16_t)n, 512); break;
        default: replay_irq(rp, n, NULL); break;
        }
    }
    replay_end(rp, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_of(data, size);
    if (fd < 0) {
        return 0;
    }
    struct replay_reader r;
    struct replay_header h;
    int ok = replay_reader_begin(&r, fd, &h, NULL);
    if (ok == 0) {
        struct replay_event ev;
        for (int i = 0; i < 100000 && replay_reader_next(&r, &ev, NULL) == 1; i++) {
            if (ev.len) {
                volatile uint8_t sink = ev.data[ev.len - 1];
                (void)sink;
            }
        }
    }
    replay_reader_free(&r);
    close(fd);
    if (ok == 0) {
        drive_engine(data, size, &h);
    }
    return 0;
}
