/* libFuzzer target: any bytes as a VM-state stream (a snapshot file, a
 * savevm area, a migration socket), read section by section as the machine
 * reads it: header, sections of every name and length, CRCs, the end. The
 * reader must refuse what is malformed, never overrun or allocate what a
 * length field claims. Read both as a file and as a socket (no offsets). */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "state/vmstate_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_all(struct vmstate_io io, uint64_t limit)
{
    struct vmstate_reader r;
    if (vmstate_reader_begin(&r, io, limit, NULL) < 0) {
        vmstate_reader_free(&r);
        return;
    }
    static uint8_t buf[4096];
    for (int sections = 0; sections < 256; sections++) {
        int ret = vmstate_next_section(&r, NULL);
        if (ret != 0) {
            break;
        }
        /* Read some of the payload in odd pieces, then let finish skip the rest. */
        for (int k = 0; k < 4 && r.section_left; k++) {
            size_t n = r.section_left < 777 ? (size_t)r.section_left : 777;
            if (vmstate_section_read(&r, buf, n, NULL) < 0) {
                break;
            }
        }
        if (vmstate_section_finish(&r, NULL) < 0) {
            break;
        }
    }
    vmstate_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-vmstate", MFD_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    if (write(fd, data, size) == (ssize_t)size) {
        read_all(vmstate_fd_io(&fd), size);
    }
    close(fd);
    int sv[2];
    if (size <= 60000 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
        int sndbuf = 1 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        if (write(sv[0], data, size) == (ssize_t)size) {
            shutdown(sv[0], SHUT_WR);
            read_all(vmstate_pipe_io(&sv[1]), UINT64_MAX);
        }
        close(sv[0]);
        close(sv[1]);
    }
    return 0;
}
