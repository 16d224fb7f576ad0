/* Image formats this library does not read, recognised by their magic as
 * QEMU's drivers probe them, so that such an image is refused by name
 * instead of being read (and copied, and written) as a raw disk. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "block/block_int.h"

static bool starts(const uint8_t *buf, size_t len, const char *magic, size_t n)
{
    return len >= n && memcmp(buf, magic, n) == 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* A VMDK descriptor file: its first line that is not a comment says
 * version=1, 2 or 3 (vmdk_probe's test). */
static bool vmdk_descriptor(const uint8_t *buf, size_t len)
{
    const char *p = (const char *)buf;
    const char *end = p + len;
    while (p < end) {
        if (*p == '#') {
            const void *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) {
                return false;
            }
            p = (const char *)nl + 1;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ') {
                p++;
            }
            continue;
        }
        if (*p == '\n') {
            p++;
            continue;
        }
        size_t left = (size_t)(end - p);
        return left >= 10 && memcmp(p, "version=", 8) == 0 && p[8] >= '1' && p[8] <= '3' &&
               (p[9] == '\n' || (p[9] == '\r' && left >= 11 && p[10] == '\n'));
    }
    return false;
}

const char *blockdev_probe_foreign(const uint8_t *buf, size_t len, const uint8_t *tail, size_t tail_len)
{
    if (len >= 8 && be32(buf) == 0x514649fbU && be32(buf + 4) == 1) {
        return "qcow";
    }
    if (starts(buf, len, "KDMV", 4) || starts(buf, len, "COWD", 4) || vmdk_descriptor(buf, len)) {
        return "vmdk";
    }
    if (len >= 0x44 && le32(buf + 0x40) == 0xbeda107fU) {
        return "vdi";
    }
    if (starts(buf, len, "vhdxfile", 8)) {
        return "vhdx";
    }
    if (starts(buf, len, "conectix", 8)) {
        return "vpc";
    }
    if (starts(buf, len, "QED\0", 4)) {
        return "qed";
    }
    if (starts(buf, len, "LUKS\xba\xbe", 6)) {
        return "luks";
    }
    if (starts(buf, len, "WithoutFreeSpace", 16) || starts(buf, len, "WithouFreSpacExt", 16)) {
        return "parallels";
    }
    if (starts(buf, len, "Bochs Virtual HD Image", 22)) {
        return "bochs";
    }
    if (starts(buf, len, "#!/bin/sh\n#V2.0 Format\n", 23)) {
        return "cloop";
    }
    /* DMG: a "koly" trailer in the last 512 bytes. */
    if (tail && tail_len >= 4 && memcmp(tail, "koly", 4) == 0) {
        return "dmg";
    }
    return NULL;
}
