#include "util/zero.h"

#include <stdint.h>
#include <string.h>

/* Word at a time over the aligned middle; memcmp against itself shifted
 * by one byte for the ragged ends. */
bool mem_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len && ((uintptr_t)p & 7)) {
        if (*p++) {
            return false;
        }
        len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (; len >= 32; len -= 32, w += 4) {
        if (w[0] | w[1] | w[2] | w[3]) {
            return false;
        }
    }
    p = (const unsigned char *)w;
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}
