/* The signatures of the image formats QEMU recognises by their first
 * sector but cowvisor does not read (QEMU's bdrv_probe functions). Two uses:
 * opening such an image as raw would hand out its container bytes as the
 * disk, and a guest writing one into block 0 of a probed raw image would
 * choose what QEMU opens next (a vmdk descriptor names any host file). */
#include <stdbool.h>
#include <string.h>

#include "block/blockdev.h"
#include "util/bswap.h"

static bool starts_with(const uint8_t *buf, size_t len, const char *sig, size_t n)
{
    return len >= n && memcmp(buf, sig, n) == 0;
}

static bool line_is(const char *p, const char *end, const char *line)
{
    size_t n = strlen(line);
    return (size_t)(end - p) >= n && strncmp(p, line, n) == 0;
}

/* A text descriptor: comments and blank lines, then "version=N". */
static bool is_vmdk_descriptor(const uint8_t *buf, size_t len)
{
    const char *p = (const char *)buf, *end = p + len;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n') {
                p++;
            }
            p++;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ') {
                p++;
            }
            if (p < end && *p == '\r') {
                p++;
            }
            if (p == end || *p != '\n') {
                return false;
            }
            p++;
            continue;
        }
        for (char v = '1'; v <= '3'; v++) {
            char lf[] = { 'v', 'e', 'r', 's', 'i', 'o', 'n', '=', v, '\n', 0 };
            char crlf[] = { 'v', 'e', 'r', 's', 'i', 'o', 'n', '=', v, '\r', '\n', 0 };
            if (line_is(p, end, lf) || line_is(p, end, crlf)) {
                return true;
            }
        }
        return false;
    }
    return false;
}

static bool is_vmdk(const uint8_t *buf, size_t len)
{
    return starts_with(buf, len, "KDMV", 4) || starts_with(buf, len, "COWD", 4) ||
           is_vmdk_descriptor(buf, len);
}

static bool is_bochs(const uint8_t *buf, size_t len)
{
    /* The strings are NUL-terminated in the header: compare the NUL too. */
    return len >= 512 && memcmp(buf, "Bochs Virtual HD Image", 23) == 0 &&
           memcmp(buf + 32, "Redolog", 8) == 0 && memcmp(buf + 48, "Growing", 8) == 0 &&
           (ld_le32(buf + 64) == 0x00020000 || ld_le32(buf + 64) == 0x00010000);
}

static bool is_parallels(const uint8_t *buf, size_t len)
{
    return len >= 64 && (memcmp(buf, "WithoutFreeSpace", 16) == 0 ||
                         memcmp(buf, "WithouFreSpacExt", 16) == 0) && ld_le32(buf + 16) == 2;
}

static bool is_cloop(const uint8_t *buf, size_t len)
{
    static const char magic[] = "#!/bin/sh\n#V2.0 Format\n"
                                "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
    size_t n = strlen(magic) < len ? strlen(magic) : len;
    return memcmp(buf, magic, n) == 0;
}

const char *blockdev_probe_foreign(const uint8_t *buf, size_t len)
{
    if (len >= 48 && ld_be32(buf) == 0x514649fb && ld_be32(buf + 4) == 1) {
        return "qcow";
    }
    if (is_vmdk(buf, len)) {
        return "vmdk";
    }
    if (len >= 68 && ld_le32(buf + 64) == 0xbeda107f) {
        return "vdi";
    }
    if (starts_with(buf, len, "vhdxfile", 8)) {
        return "vhdx";
    }
    if (starts_with(buf, len, "conectix", 8)) {
        return "vpc";
    }
    if (starts_with(buf, len, "QED\0", 4) && len >= 68) {
        return "qed";
    }
    if (starts_with(buf, len, "LUKS\xba\xbe", 6)) {
        return "luks";
    }
    if (is_bochs(buf, len)) {
        return "bochs";
    }
    if (is_parallels(buf, len)) {
        return "parallels";
    }
    if (len > 0 && is_cloop(buf, len)) {
        return "cloop";
    }
    return NULL;
}
