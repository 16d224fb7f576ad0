/* Unnamed dirty bitmaps, as QEMU's block migration keeps one per disk:
 * every write, zero write and discard marks them like a recording named
 * bitmap, but they are never listed, stored in the image or found by
 * name, so a user's bitmaps and query-block do not see them. Their owner
 * takes the bits it has not seen yet and clears them in one step. */
#include "block/block_int.h"

#include <errno.h>
#include <stdlib.h>

int blockdev_tracker_new(struct blockdev *bd, uint32_t granularity, struct blockdev_tracker **out,
                         struct error *err)
{
    struct bdev_bitmaps *bms = blockdev_bitmaps_of(bd, true);
    struct blockdev_tracker *t = calloc(1, sizeof(*t));
    if (!bms || !t || !(t->bits = dirty_bitmap_new(bd->size, granularity))) {
        free(t);
        return error_set(err, -ENOMEM, "%s: out of memory for a dirty bitmap", bd->filename);
    }
    t->bd = bd;
    pthread_mutex_lock(&bms->lock);
    t->next = bms->trackers;
    bms->trackers = t;
    pthread_mutex_unlock(&bms->lock);
    *out = t;
    return 0;
}

void blockdev_tracker_take(struct blockdev_tracker *t, struct dirty_bitmap *into)
{
    struct bdev_bitmaps *bms = t->bd ? blockdev_bitmaps_of(t->bd, false) : NULL;
    if (!bms) {
        return;
    }
    pthread_mutex_lock(&bms->lock);
    dirty_bitmap_merge(into, t->bits);
    dirty_bitmap_clear(t->bits);
    pthread_mutex_unlock(&bms->lock);
}

void blockdev_tracker_free(struct blockdev_tracker *t)
{
    if (!t) {
        return;
    }
    struct bdev_bitmaps *bms = t->bd ? blockdev_bitmaps_of(t->bd, false) : NULL;
    if (bms) {
        pthread_mutex_lock(&bms->lock);
        struct blockdev_tracker **p = &bms->trackers;
        while (*p && *p != t) {
            p = &(*p)->next;
        }
        if (*p) {
            *p = t->next;
        }
        pthread_mutex_unlock(&bms->lock);
    }
    dirty_bitmap_free(t->bits);
    free(t);
}
