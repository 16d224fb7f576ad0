/* The compressed kernel inside a bzImage (setup header payload_offset and
 * payload_length, boot protocol 2.08+): the kernel's build compresses
 * vmlinux (plus its relocations) and appends the decompressed size as four
 * little-endian bytes; gzip streams end with that size already (ISIZE). Decompressing it here spares the guest its own
 * decompressor, which runs at kernel mode and so is slow wherever kernel-mode
 * code is emulated. */
#include <errno.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "vmm/boot.h"

static int unpack_lzma(const uint8_t *in, size_t len, uint8_t *out, size_t out_len, bool xz,
                       struct error *err)
{
    lzma_stream s = LZMA_STREAM_INIT;
    /* A dictionary of a few MiB is normal for kernels; a header asking for
     * more must not make us allocate gigabytes. */
    const uint64_t memlimit = 512ull << 20;
    lzma_ret r = xz ? lzma_stream_decoder(&s, memlimit, 0) : lzma_alone_decoder(&s, memlimit);
    if (r != LZMA_OK) {
        return error_set(err, -ENOMEM, "cannot start the %s decoder (liblzma error %d)", xz ? "xz" : "lzma", r);
    }
    s.next_in = in;
    s.avail_in = len;
    s.next_out = out;
    s.avail_out = out_len;
    r = lzma_code(&s, LZMA_FINISH);
    size_t produced = out_len - s.avail_out;
    lzma_end(&s);
    if (r != LZMA_STREAM_END || produced != out_len) {
        return error_set(err, -EINVAL, "the %s payload is corrupt (liblzma error %d after %zu of %zu bytes)",
                         xz ? "xz" : "lzma", r, produced, out_len);
    }
    return 0;
}

/* One inflate call: the size field caps the output below 4 GiB and the
 * kernel file is far smaller, so zlib's 32-bit counters hold them. */
static int unpack_gzip(const uint8_t *in, size_t len, uint8_t *out, size_t out_len, struct error *err)
{
    z_stream s = { 0 };
    if (len > UINT32_MAX || out_len > UINT32_MAX || inflateInit2(&s, 16 + MAX_WBITS) != Z_OK) {
        return error_set(err, -ENOMEM, "cannot start the gzip decoder");
    }
    s.next_in = (uint8_t *)in;
    s.avail_in = (uInt)len;
    s.next_out = out;
    s.avail_out = (uInt)out_len;
    int r = inflate(&s, Z_FINISH);
    size_t produced = out_len - s.avail_out;
    inflateEnd(&s);
    if (r != Z_STREAM_END || produced != out_len) {
        return error_set(err, -EINVAL, "the gzip payload is corrupt (zlib error %d after %zu of %zu bytes)", r,
                         produced, out_len);
    }
    return 0;
}

static int unpack_zstd(const uint8_t *in, size_t len, uint8_t *out, size_t out_len, struct error *err)
{
    size_t frame = ZSTD_findFrameCompressedSize(in, len);
    size_t n = ZSTD_isError(frame) ? frame : ZSTD_decompress(out, out_len, in, frame);
    if (ZSTD_isError(n) || n != out_len) {
        return error_set(err, -EINVAL, "the zstd payload is corrupt (%s)",
                         ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong decompressed size");
    }
    return 0;
}

int boot_payload_decompress(const uint8_t *in, size_t len, size_t max_out, uint8_t **out, size_t *out_len,
                            struct error *err)
{
    static const uint8_t xz[] = { 0xfd, '7', 'z', 'X', 'Z', 0 }, lzma[] = { 0x5d, 0, 0 },
                         gzip[] = { 0x1f, 0x8b }, zstd[] = { 0x28, 0xb5, 0x2f, 0xfd };
    enum { XZ, LZMA, GZIP, ZSTD, OTHER } format = OTHER;
    if (len >= 16) {
        format = !memcmp(in, xz, sizeof(xz)) ? XZ : !memcmp(in, lzma, sizeof(lzma)) ? LZMA
               : !memcmp(in, gzip, sizeof(gzip)) ? GZIP : !memcmp(in, zstd, sizeof(zstd)) ? ZSTD : OTHER;
    }
    if (format == OTHER) {
        return error_set(err, -ENOTSUP, "the kernel payload is in a compression format cowvisor does not read");
    }
    size_t size = (size_t)in[len - 4] | (size_t)in[len - 3] << 8 | (size_t)in[len - 2] << 16 |
                  (size_t)in[len - 1] << 24;
    if (size == 0 || size > max_out) {
        return error_set(err, -EFBIG, "the kernel payload says it unpacks to %zu bytes (at most %zu fit)", size,
                         max_out);
    }
    uint8_t *buf = malloc(size);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory for the %zu-byte kernel", size);
    }
    if (format != GZIP) {
        len -= 4;
    }
    int ret = format == GZIP ? unpack_gzip(in, len, buf, size, err)
            : format == ZSTD ? unpack_zstd(in, len, buf, size, err)
                             : unpack_lzma(in, len, buf, size, format == XZ, err);
    if (ret < 0) {
        free(buf);
        return ret;
    }
    *out = buf;
    *out_len = size;
    return 0;
}
