/* Populate-ahead of the decompressed-cluster cache's slots (see
 * qcow2_int.h). The first fill of a slot touches fresh anonymous memory,
 * which the kernel zeroes at the fault: in a boot-like trace from a
 * compressed image that zeroing was about half of all CPU time (perf:
 * clear_page_erms), more than decompression. A thread of the cache's own
 * faults the slots in (MADV_POPULATE_WRITE) ahead of the fills, on a core
 * the reader leaves idle.
 *
 * Fresh slots are taken from the top of the slab down (the LRU list starts
 * in slot order and reserve takes its tail), so "ahead" is below the lowest
 * slot filled so far. The thread keeps [lowest - AHEAD, end) populated, one
 * huge page at a time, and no more: memory is taken as the cache grows, not
 * at once for a cache that may never fill (the budget stays what
 * compressed-cache-size says, and what is resident stays near what is used).
 * madvise needs no lock and changes no content: a fill racing it on the
 * same page is correct either way. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "block/qcow2_int.h"
#include "util/log.h"

#define CHUNK (2u << 20)    /* a huge page: the slots ask for them */

struct qcow2_zcache_populate {
    pthread_t thread;
    pthread_cond_t wake;
    uint8_t *base;          /* the slab, CHUNK-aligned */
    size_t size;            /* its bytes, in whole CHUNKs (as allocated) */
    size_t want_from;       /* populate down to here (slab offset) */
    size_t populated_from;  /* [populated_from, size) is populated */
    bool stop;
};

static size_t slab_bytes(const struct qcow2_zcache *z)
{
    return (size_t)z->slots.count * z->slots.table_size;
}

/* Lock held: the slab offset below which nothing is needed yet. */
static size_t target(const struct qcow2_zcache *z, int lowest_slot)
{
    size_t lowest = (size_t)lowest_slot * z->slots.table_size;
    size_t from = lowest > QCOW2_ZCACHE_POPULATE_AHEAD ? lowest - QCOW2_ZCACHE_POPULATE_AHEAD : 0;
    return from / CHUNK * CHUNK;
}

static void *populate_worker(void *opaque)
{
    struct qcow2_zcache *z = opaque;
    struct qcow2_zcache_populate *p = z->populate;
    pthread_mutex_lock(&z->lock);
    while (!p->stop) {
        if (p->want_from >= p->populated_from) {
            pthread_cond_wait(&p->wake, &z->lock);
            continue;
        }
        size_t end = p->populated_from;
        size_t from = end > CHUNK ? end - CHUNK : 0;
        pthread_mutex_unlock(&z->lock);
        int ret = madvise(p->base + from, end - from, MADV_POPULATE_WRITE);
        pthread_mutex_lock(&z->lock);
        if (ret < 0) {
            /* An older kernel (before 5.14), or no memory: fills fault the pages in. */
            log_debug("decompressed-cluster cache: no populate-ahead (%s)", strerror(errno));
            break;
        }
        p->populated_from = from;
    }
    pthread_mutex_unlock(&z->lock);
    return NULL;
}

void qcow2_zcache_populate_start(struct qcow2_zcache *z)
{
    size_t bytes = slab_bytes(z);
    if (z->populate || bytes <= QCOW2_ZCACHE_POPULATE_AHEAD ||
        (uintptr_t)z->slots.tables % CHUNK) {
        return;     /* small enough to fault in as it fills, or not in huge pages */
    }
    struct qcow2_zcache_populate *p = calloc(1, sizeof(*p));
    if (!p) {
        return;
    }
    size_t size = (bytes + CHUNK - 1) / CHUNK * CHUNK;
    *p = (struct qcow2_zcache_populate){ .base = z->slots.tables, .size = size,
                                         .want_from = size, .populated_from = size };
    pthread_cond_init(&p->wake, NULL);
    z->populate = p;
    if (pthread_create(&p->thread, NULL, populate_worker, z) != 0) {
        pthread_cond_destroy(&p->wake);
        free(p);
        z->populate = NULL;
    }
}

void qcow2_zcache_populate_note(struct qcow2_zcache *z, int i)
{
    /* Started once the fills have used a window's worth of fresh slots: a
     * short run (a tool reading a few compressed clusters) pays for no
     * thread, and for no memory populated ahead of fills that never come. */
    if (!z->populate && (size_t)(z->slots.count - i) * z->slots.table_size > QCOW2_ZCACHE_POPULATE_AHEAD) {
        qcow2_zcache_populate_start(z);
    }
    struct qcow2_zcache_populate *p = z->populate;
    size_t want = p ? target(z, i) : 0;
    if (p && want < p->want_from) {
        p->want_from = want;
        pthread_cond_signal(&p->wake);
    }
}

size_t qcow2_zcache_populated(struct qcow2_zcache *z)
{
    pthread_mutex_lock(&z->lock);
    size_t n = z->populate ? z->populate->size - z->populate->populated_from : 0;
    pthread_mutex_unlock(&z->lock);
    return n;
}

void qcow2_zcache_populate_stop(struct qcow2_zcache *z)
{
    struct qcow2_zcache_populate *p = z->populate;
    if (!p) {
        return;
    }
    pthread_mutex_lock(&z->lock);
    p->stop = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&z->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->wake);
    free(p);
    z->populate = NULL;
}
