/* Compressed clusters: zlib (raw deflate, as QEMU writes it) and zstd, and a
 * cache of decompressed clusters so that a run of small reads inside one
 * compressed cluster decompresses it once. */
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

static int zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    struct zstd_contexts *c = zstd_thread_contexts();
    if (!c || (!c->dctx && !(c->dctx = ZSTD_createDCtx()))) {
        return -ENOMEM;
    }
    ZSTD_DCtx *zstd_dctx = c->dctx;
    ZSTD_DCtx_reset(zstd_dctx, ZSTD_reset_session_only);
    ZSTD_inBuffer in = { src, src_len, 0 };
    ZSTD_outBuffer out = { dst, dst_len, 0 };
    /* Stop once the cluster is complete: trailing bytes belong to others. */
    while (out.pos < out.size) {
        size_t r = ZSTD_decompressStream(zstd_dctx, &out, &in);
        if (ZSTD_isError(r)) {
            return -EIO;
        }
        if (r == 0 || in.pos == in.size) {
            break;
        }
    }
    return out.pos == out.size ? 0 : -EIO;
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

int qcow2_zcache_init(struct qcow2_zcache *z, int count, uint32_t cluster_size)
{
    pthread_mutex_init(&z->lock, NULL);
    z->count = count;
    z->entries = calloc((size_t)count, sizeof(*z->entries));
    for (int i = 0; z->entries && i < count; i++) {
        z->entries[i].data = malloc(cluster_size);
        if (!z->entries[i].data) {
            return -ENOMEM;
        }
    }
    return z->entries ? 0 : -ENOMEM;
}

void qcow2_zcache_destroy(struct qcow2_zcache *z)
{
    for (int i = 0; z->entries && i < z->count; i++) {
        free(z->entries[i].data);
    }
    free(z->entries);
    z->entries = NULL;
    pthread_mutex_destroy(&z->lock);
}

void qcow2_zcache_forget_range(struct qcow2 *s, uint64_t host_off, uint64_t len)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    for (int i = 0; i < z->count; i++) {
        if (!z->entries[i].l2_entry) {
            continue;
        }
        uint64_t c_off;
        uint32_t c_len;
        qcow2_compressed_range(s, z->entries[i].l2_entry, &c_off, &c_len);
        if (c_off < host_off + len && host_off < c_off + c_len) {
            z->entries[i].l2_entry = 0;
        }
    }
    pthread_mutex_unlock(&z->lock);
}

static bool zcache_copy_out(struct qcow2_zcache *z, uint64_t l2_entry, uint32_t off, void *buf,
                            size_t len)
{
    for (int i = 0; i < z->count; i++) {
        if (z->entries[i].l2_entry == l2_entry) {
            memcpy(buf, z->entries[i].data + off, len);
            z->entries[i].lru = ++z->lru_clock;
            z->hits++;
            return true;
        }
    }
    return false;
}

static void zcache_insert(struct qcow2_zcache *z, uint64_t l2_entry, const uint8_t *data,
                          uint32_t cluster_size)
{
    struct qcow2_zcache_entry *victim = &z->entries[0];
    for (int i = 0; i < z->count; i++) {
        if (z->entries[i].l2_entry == l2_entry) {
            return; /* another thread was faster */
        }
        if (z->entries[i].lru < victim->lru) {
            victim = &z->entries[i];
        }
    }
    memcpy(victim->data, data, cluster_size);
    victim->l2_entry = l2_entry;
    victim->lru = ++z->lru_clock;
}

int qcow2_read_compressed(struct qcow2 *s, uint64_t l2_entry, uint32_t offset_in_cluster,
                          void *buf, size_t len, struct error *err)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    bool hit = zcache_copy_out(z, l2_entry, offset_in_cluster, buf, len);
    if (!hit) {
        z->misses++;
    }
    pthread_mutex_unlock(&z->lock);
    if (hit) {
        return 0;
    }
    uint64_t c_off;
    uint32_t c_len;
    qcow2_compressed_range(s, l2_entry, &c_off, &c_len);
    uint8_t *in = malloc(c_len);
    uint8_t *out = malloc(s->cluster_size);
    hostfile_event(s->file, BLKDBG_READ_COMPRESSED);
    int ret = hostfile_pread(s->file, c_off, in, c_len);
    if (ret < 0) {
        error_set_errno(err, ret, "Could not read compressed cluster at 0x%" PRIx64, c_off);
    } else {
        ret = qcow2_decompress(s->compression_type, in, c_len, out, s->cluster_size);
        if (ret < 0) {
            error_set(err, -EIO, "Could not decompress the %s cluster at host offset 0x%" PRIx64
                      " (%u bytes)", s->compression_type ? "zstd" : "zlib", c_off, c_len);
        }
    }
    if (ret == 0) {
        memcpy(buf, out + offset_in_cluster, len);
        pthread_mutex_lock(&z->lock);
        zcache_insert(z, l2_entry, out, s->cluster_size);
        pthread_mutex_unlock(&z->lock);
    }
    free(in);
    free(out);
    return ret;
}
