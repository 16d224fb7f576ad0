/* Read-ahead of compressed clusters (see struct qcow2_readahead): when reads
 * go through compressed clusters in order, the next `window` clusters are
 * queued, and workers decompress them into the decompressed-cluster cache
 * meanwhile, so that the stream finds them there (on the nowait path too).
 *
 * Bounded: the queue holds QCOW2_RA_QUEUE clusters (more are dropped), the
 * window is a quarter of the cache, and the cache's size bounds the memory.
 * Workers look the mapping up when they run, so a cluster rewritten meanwhile
 * is simply not compressed any more; a rewrite racing a fill is dropped by
 * the cache's generation check. */
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "block/qcow2_int.h"
#include "util/log.h"

#define MAX_WINDOW 16

void qcow2_readahead_init(struct qcow2 *s)
{
    struct qcow2_readahead *ra = &s->readahead;
    pthread_mutex_init(&ra->lock, NULL);
    pthread_cond_init(&ra->work, NULL);
    /* The reader keeps one core busy: the others may decompress. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ra->max_threads = cpus - 1 < 1 ? 1 : cpus - 1 > QCOW2_RA_MAX_THREADS ? QCOW2_RA_MAX_THREADS
                                                                        : (int)cpus - 1;
    uint32_t quarter = (uint32_t)s->zcache.capacity / 4;
    ra->window = quarter < MAX_WINDOW ? quarter : MAX_WINDOW;
    ra->stream_next = UINT64_MAX;   /* the first read is no stream yet */
}

void qcow2_readahead_destroy(struct qcow2 *s)
{
    struct qcow2_readahead *ra = &s->readahead;
    pthread_mutex_lock(&ra->lock);
    ra->stop = true;
    pthread_cond_broadcast(&ra->work);
    pthread_mutex_unlock(&ra->lock);
    for (int i = 0; i < ra->nthreads; i++) {
        pthread_join(ra->threads[i], NULL);
    }
    if (ra->done) {
        log_debug("%s: %" PRIu64 " compressed clusters decompressed ahead", s->bd.filename,
                  ra->done);
    }
    pthread_cond_destroy(&ra->work);
    pthread_mutex_destroy(&ra->lock);
}

static void decompress_ahead(struct qcow2 *s, uint64_t guest_cluster)
{
    uint64_t entry, bitmap;
    pthread_mutex_lock(&s->lock);
    uint64_t generation = qcow2_zcache_generation(s);
    int ret = qcow2_lookup(s, guest_cluster << s->cluster_bits, &entry, &bitmap, NULL);
    pthread_rwlock_rdlock(&s->io_guard);    /* the compressed bytes stay until the fill is done */
    pthread_mutex_unlock(&s->lock);
    if (ret == 0 && (entry & QCOW2_OFLAG_COMPRESSED)) {
        qcow2_zcache_fill(s, entry, generation, NULL);  /* a failure shows when the guest reads it */
    }
    pthread_rwlock_unlock(&s->io_guard);
}

static void *readahead_worker(void *opaque)
{
    struct qcow2 *s = opaque;
    struct qcow2_readahead *ra = &s->readahead;
    pthread_mutex_lock(&ra->lock);
    for (;;) {
        while (!ra->count && !ra->stop) {
            pthread_cond_wait(&ra->work, &ra->lock);
        }
        if (ra->stop) {
            break;
        }
        uint64_t cluster = ra->queue[ra->head];
        ra->head = (ra->head + 1) % QCOW2_RA_QUEUE;
        ra->count--;
        pthread_mutex_unlock(&ra->lock);
        decompress_ahead(s, cluster);
        pthread_mutex_lock(&ra->lock);
        ra->done++;
    }
    pthread_mutex_unlock(&ra->lock);
    return NULL;
}

/* Lock held. One more worker while there is more queued than workers. */
static void add_worker(struct qcow2 *s)
{
    struct qcow2_readahead *ra = &s->readahead;
    if (ra->nthreads < ra->max_threads && ra->count > ra->nthreads &&
        pthread_create(&ra->threads[ra->nthreads], NULL, readahead_worker, s) == 0) {
        ra->nthreads++;
    }
}

/* Lock held. Queues the clusters of the window not queued yet. */
static void queue_window(struct qcow2 *s, uint64_t guest_cluster)
{
    struct qcow2_readahead *ra = &s->readahead;
    uint64_t end = guest_cluster + 1 + ra->window;
    uint64_t disk_clusters = qcow2_size_to_clusters(s, s->bd.size);
    if (end > disk_clusters) {
        end = disk_clusters;
    }
    uint64_t c = ra->queued_to > guest_cluster + 1 ? ra->queued_to : guest_cluster + 1;
    for (; c < end && ra->count < QCOW2_RA_QUEUE; c++) {
        ra->queue[(ra->head + ra->count++) % QCOW2_RA_QUEUE] = c;
    }
    if (c > ra->queued_to) {
        ra->queued_to = c;
        pthread_cond_signal(&ra->work);
    }
}

void qcow2_readahead_note(struct qcow2 *s, uint64_t guest_cluster, bool nowait)
{
    struct qcow2_readahead *ra = &s->readahead;
    if (!ra->window) {
        return;
    }
    if (nowait ? pthread_mutex_trylock(&ra->lock) != 0 : pthread_mutex_lock(&ra->lock) != 0) {
        return;
    }
    if (guest_cluster + 1 == ra->stream_next) {
        /* Another read of the same cluster: nothing new ahead. */
    } else if (guest_cluster == ra->stream_next) {
        queue_window(s, guest_cluster);
        ra->stream_next = guest_cluster + 1;
    } else {
        ra->stream_next = guest_cluster + 1;
        ra->queued_to = 0;  /* a new stream, perhaps: read-ahead waits for its next read */
    }
    if (!nowait) {
        add_worker(s);
    }
    pthread_mutex_unlock(&ra->lock);
}
