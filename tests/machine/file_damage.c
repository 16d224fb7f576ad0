#include "file_damage.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void file_flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    uint8_t b;
    if (fd < 0 || pread(fd, &b, 1, off) != 1) {
        fprintf(stderr, "file_flip_byte: cannot read byte %lld of '%s'\n", (long long)off, path);
        abort();
    }
    b ^= 0x40;
    if (pwrite(fd, &b, 1, off) != 1) {
        fprintf(stderr, "file_flip_byte: cannot write byte %lld of '%s'\n", (long long)off, path);
        abort();
    }
    close(fd);
}
