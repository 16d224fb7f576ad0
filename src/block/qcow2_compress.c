/* Compressed clusters: zlib (raw deflate, as QEMU writes it) and zstd
 * (qcow2_zcache.c keeps decompressed clusters). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "block/qcow2_int.h"

/* QEMU's choice: raw deflate with a 4 KiB window. */
#define ZLIB_WINDOW_BITS (-12)

static int zlib_compress(const void *src, size_t src_len, void *dst, size_t dst_cap)
{
    z_stream z = { 0 };
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, ZLIB_WINDOW_BITS, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_cap;
    int zret = deflate(&z, Z_FINISH);
    int ret = zret == Z_STREAM_END ? (int)(dst_cap - z.avail_out) : -ENOSPC;
    deflateEnd(&z);
    return ret;
}

static int zlib_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    z_stream z = { 0 };
    if (inflateInit2(&z, ZLIB_WINDOW_BITS) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_len;
    int zret = inflate(&z, Z_FINISH);
    /* The data may end mid-sector with other bytes after it: a full output is success. */
    int ret = (zret == Z_STREAM_END || zret == Z_BUF_ERROR || zret == Z_OK) && z.avail_out == 0
              ? 0 : -EIO;
    inflateEnd(&z);
    return ret;
}

/* zstd contexts are costly to create: one pair per thread, freed when the
 * thread exits (convert's workers come and go). */
struct zstd_contexts {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static pthread_key_t zstd_key;
static pthread_once_t zstd_key_once = PTHREAD_ONCE_INIT;

static void zstd_contexts_free(void *p)
{
    struct zstd_contexts *c = p;
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c);
}

static void zstd_key_create(void)
{
    pthread_key_create(&zstd_key, zstd_contexts_free);
}

static struct zstd_contexts *zstd_thread_contexts(void)
{
    pthread_once(&zstd_key_once, zstd_key_create);
    struct zstd_contexts *c = pthread_getspecific(zstd_key);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (c) {
            pthread_setspecific(zstd_key, c);
        }
    }
    return c;
}

static int zstd_compress(const void *src, size_t src_len, void *dst, size_t dst_cap)
{
    struct zstd_contexts *c = zstd_thread_contexts();
    if (!c || (!c->cctx && !(c->cctx = ZSTD_createCCtx()))) {
        return -ENOMEM;
    }
    size_t n = ZSTD_compressCCtx(c->cctx, dst, dst_cap, src, src_len, ZSTD_CLEVEL_DEFAULT);
    return ZSTD_isError(n) ? -ENOSPC : (int)n;
}

/* Frame by frame (a cluster may hold several), stopping once the cluster is
 * complete: the bytes after it belong to others. */
static int zstd_decompress_stream(ZSTD_DCtx *dctx, const void *src, size_t src_len, void *dst,
                                  size_t dst_len)
{
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    ZSTD_inBuffer in = { src, src_len, 0 };
    ZSTD_outBuffer out = { dst, dst_len, 0 };
    while (out.pos < out.size && in.pos < in.size) {
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r)) {
            return -EIO;
        }
    }
    return out.pos == out.size ? 0 : -EIO;
}

static int zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    struct zstd_contexts *c = zstd_thread_contexts();
    if (!c || (!c->dctx && !(c->dctx = ZSTD_createDCtx()))) {
        return -ENOMEM;
    }
    /* The usual cluster, one frame that knows its size (what QEMU writes), is
     * decompressed in one call straight into dst; the streaming API would
     * go through its own window buffer and copy. */
    size_t frame = ZSTD_findFrameCompressedSize(src, src_len);
    if (!ZSTD_isError(frame) && ZSTD_getFrameContentSize(src, frame) == dst_len) {
        size_t n = ZSTD_decompressDCtx(c->dctx, dst, dst_len, src, frame);
        return !ZSTD_isError(n) && n == dst_len ? 0 : -EIO;
    }
    return zstd_decompress_stream(c->dctx, src, src_len, dst, dst_len);
}

int qcow2_compress(int type, const void *src, size_t src_len, void *dst, size_t dst_cap)
{
    return type == BDEV_COMPRESSION_ZSTD ? zstd_compress(src, src_len, dst, dst_cap)
                                          : zlib_compress(src, src_len, dst, dst_cap);
}

int qcow2_decompress(int type, const void *src, size_t src_len, void *dst, size_t dst_len)
{
    return type == BDEV_COMPRESSION_ZSTD ? zstd_decompress(src, src_len, dst, dst_len)
                                          : zlib_decompress(src, src_len, dst, dst_len);
}
