/* The decompressed-cluster cache (see struct qcow2_zcache in qcow2_int.h):
 * a table cache (qcow2_cache.c: hash, LRU) keyed by compressed descriptors,
 * under its own lock so that reads of compressed clusters never wait for the
 * image lock, and so that the nowait path can answer from it.
 *
 * Decompression runs with no lock held; the result is copied in afterwards.
 * A forget (the descriptor's data rewritten or its host bytes freed) bumps
 * the generation: a fill whose descriptor was looked up before it is
 * dropped, since the bytes it read may already belong to something else. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/log.h"

/* The slots are allocated at the first fill, not here: most opens never
 * read a compressed cluster, and a large allocation is not free even when
 * its pages stay untouched (a sanitizer poisons all of it, at every open of
 * every tool). */
int qcow2_zcache_init(struct qcow2_zcache *z, int count, uint32_t cluster_size)
{
    memset(z, 0, sizeof(*z));
    pthread_mutex_init(&z->lock, NULL);
    z->capacity = count > 0 ? count : 0;
    z->cluster_size = cluster_size;
    return 0;
}

/* Lock held. False when there is no cache; a failed allocation leaves none. */
static bool slots_ready(struct qcow2_zcache *z)
{
    if (!z->slots.count && z->capacity > 0 &&
        qcow2_cache_init(&z->slots, z->capacity, z->cluster_size, true) < 0) {
        log_debug("no memory for the decompressed-cluster cache (%d slots): running without",
                  z->capacity);
        qcow2_cache_destroy(&z->slots);
        z->capacity = 0;
    }
    return z->slots.count > 0;
}

void qcow2_zcache_destroy(struct qcow2_zcache *z)
{
    if (z->hits || z->misses) {
        log_debug("decompressed-cluster cache: %" PRIu64 " hits, %" PRIu64 " misses, %d of %d "
                  "slots used", z->hits, z->misses, z->used, z->slots.count);
    }
    qcow2_zcache_populate_stop(z);     /* it touches the slots */
    qcow2_cache_destroy(&z->slots);
    pthread_mutex_destroy(&z->lock);
}

uint64_t qcow2_zcache_generation(struct qcow2 *s)
{
    return __atomic_load_n(&s->zcache.generation, __ATOMIC_ACQUIRE);
}

/* Lock held. */
static void forget_slot(struct qcow2_zcache *z, uint64_t l2_entry)
{
    if (qcow2_cache_peek(&z->slots, l2_entry)) {
        qcow2_cache_discard(&z->slots, l2_entry);
        z->used--;
    }
}

void qcow2_zcache_forget(struct qcow2 *s, uint64_t l2_entry)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    __atomic_add_fetch(&z->generation, 1, __ATOMIC_RELEASE);
    if (z->slots.count) {
        forget_slot(z, l2_entry);
    }
    pthread_mutex_unlock(&z->lock);
}

void qcow2_zcache_forget_range(struct qcow2 *s, uint64_t host_off, uint64_t len)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    __atomic_add_fetch(&z->generation, 1, __ATOMIC_RELEASE);
    for (int i = 0; z->used > 0 && i < z->slots.count; i++) {
        uint64_t key = z->slots.entries[i].offset;
        uint64_t c_off;
        uint32_t c_len;
        if (!key) {
            continue;
        }
        qcow2_compressed_range(s, key, &c_off, &c_len);
        if (c_off < host_off + len && host_off < c_off + c_len) {
            forget_slot(z, key);
        }
    }
    pthread_mutex_unlock(&z->lock);
}

/* Lock held. */
static bool copy_out(struct qcow2_zcache *z, uint64_t l2_entry, uint32_t off, void *buf,
                     size_t len)
{
    const uint8_t *data = z->slots.count ? qcow2_cache_peek(&z->slots, l2_entry) : NULL;
    if (data) {
        memcpy(buf, data + off, len);
        z->hits++;
    }
    return data != NULL;
}

/* Lock held. A slot to decompress into, out of the cache meanwhile (its
 * old cluster, if any, evicted); -1: no cache, or every slot is being filled. */
static int reserve_slot(struct qcow2_zcache *z)
{
    if (!slots_ready(z)) {
        return -1;
    }
    int tail = z->slots.lru_tail;
    z->used -= tail >= 0 && z->slots.entries[tail].offset;    /* evicted */
    int i = qcow2_cache_reserve(&z->slots);
    if (i >= 0) {
        qcow2_zcache_populate_note(z, i);
    }
    return i;
}

/* Lock held. The reserved slot, filled (ok) from l2_entry as it was at
 * generation, is cached, unless a forget came between the lookup and now
 * or another thread cached the cluster first. */
static void keep_slot(struct qcow2_zcache *z, int i, uint64_t l2_entry, uint64_t generation,
                      bool ok)
{
    if (ok && __atomic_load_n(&z->generation, __ATOMIC_RELAXED) == generation &&
        !qcow2_cache_peek(&z->slots, l2_entry)) {
        qcow2_cache_publish(&z->slots, i, l2_entry);
        z->used++;
    } else {
        qcow2_cache_release(&z->slots, i);
    }
}

/* Reads and decompresses the cluster into out (cluster_size bytes). */
static int decompress_cluster(struct qcow2 *s, uint64_t l2_entry, uint8_t *out,
                              struct error *err)
{
    uint64_t c_off;
    uint32_t c_len;
    qcow2_compressed_range(s, l2_entry, &c_off, &c_len);
    uint8_t *in = malloc(c_len);
    if (!in) {
        return error_set(err, -ENOMEM, "Could not allocate %u bytes for a compressed cluster",
                         c_len);
    }
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
    free(in);
    return ret;
}

/* Decompresses a cluster, caches it, and copies [off, off+len) of it to buf
 * (buf NULL: only cache it). Decompression goes straight into a cache slot,
 * reserved meanwhile: no cluster-sized buffer to allocate, no copy; with
 * no slot free, into a buffer of its own. */
static int fill(struct qcow2 *s, uint64_t l2_entry, uint64_t generation, uint32_t off, void *buf,
                size_t len, struct error *err)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    int slot = reserve_slot(z);
    pthread_mutex_unlock(&z->lock);
    uint8_t *out = slot >= 0 ? qcow2_cache_table(&z->slots, slot) : malloc(s->cluster_size);
    if (!out) {
        return error_set(err, -ENOMEM, "Could not allocate a cluster to decompress into");
    }
    int ret = decompress_cluster(s, l2_entry, out, err);
    if (ret == 0 && buf) {
        memcpy(buf, out + off, len);
    }
    if (slot < 0) {
        free(out);
        return ret;
    }
    pthread_mutex_lock(&z->lock);
    keep_slot(z, slot, l2_entry, generation, ret == 0);
    pthread_mutex_unlock(&z->lock);
    return ret;
}

int qcow2_read_compressed(struct qcow2 *s, uint64_t l2_entry, uint64_t generation,
                          uint32_t offset_in_cluster, void *buf, size_t len, struct error *err)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    bool hit = copy_out(z, l2_entry, offset_in_cluster, buf, len);
    z->misses += !hit;
    pthread_mutex_unlock(&z->lock);
    return hit ? 0 : fill(s, l2_entry, generation, offset_in_cluster, buf, len, err);
}

int qcow2_read_compressed_nowait(struct qcow2 *s, uint64_t l2_entry, uint32_t offset_in_cluster,
                                 void *buf, size_t len)
{
    struct qcow2_zcache *z = &s->zcache;
    if (pthread_mutex_trylock(&z->lock) != 0) {
        return -EAGAIN;
    }
    bool hit = copy_out(z, l2_entry, offset_in_cluster, buf, len);
    pthread_mutex_unlock(&z->lock);
    return hit ? 0 : -EAGAIN;
}

int qcow2_zcache_fill(struct qcow2 *s, uint64_t l2_entry, uint64_t generation, struct error *err)
{
    struct qcow2_zcache *z = &s->zcache;
    pthread_mutex_lock(&z->lock);
    bool cached = !z->capacity || (z->slots.count && qcow2_cache_peek(&z->slots, l2_entry));
    pthread_mutex_unlock(&z->lock);
    return cached ? 0 : fill(s, l2_entry, generation, 0, NULL, 0, err);
}
