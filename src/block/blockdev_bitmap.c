/* Dirty bitmaps of an open image: the named bitmaps, their states, and the
 * operations of QEMU's block-dirty-bitmap-* commands with QEMU's messages.
 * Every format has them in memory; a driver with bitmap_* operations keeps
 * the persistent ones in the image (qcow2_bitmap.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_int.h"
#include "util/log.h"

/* Creation of a device's list is rare; one lock for all devices is enough. */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static struct bdev_bitmaps *bitmaps_of(struct blockdev *bd, bool create)
{
    struct bdev_bitmaps *bms = __atomic_load_n(&bd->bitmaps, __ATOMIC_ACQUIRE);
    if (bms || !create) {
        return bms;
    }
    pthread_mutex_lock(&create_lock);
    bms = bd->bitmaps;
    if (!bms) {
        bms = calloc(1, sizeof(*bms));
        if (bms) {
            pthread_mutex_init(&bms->lock, NULL);
            __atomic_store_n(&bd->bitmaps, bms, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&create_lock);
    return bms;
}

struct bdev_bitmaps *blockdev_bitmaps_of(struct blockdev *bd, bool create)
{
    return bitmaps_of(bd, create);
}

static struct bdev_bitmap *find(struct bdev_bitmaps *bms, const char *name)
{
    for (struct bdev_bitmap *bm = bms ? bms->head : NULL; bm; bm = bm->next) {
        if (strcmp(bm->name, name) == 0) {
            return bm;
        }
    }
    return NULL;
}

static void bitmap_free(struct bdev_bitmap *bm)
{
    dirty_bitmap_free(bm->bits);
    free(bm->name);
    free(bm);
}

/* QEMU's bdrv_dirty_bitmap_check: what each operation may not touch. */
enum { USE_RO = 1, USE_INCONSISTENT = 2, USE_BUSY = 4 };
#define USE_DEFAULT (USE_RO | USE_INCONSISTENT | USE_BUSY)

static int check_usable(const struct bdev_bitmap *bm, unsigned what, struct error *err)
{
    if ((what & USE_BUSY) && bm->busy) {
        return error_set(err, -EBUSY, "Bitmap '%s' is currently in use by another operation and cannot be used",
                         bm->name);
    }
    if ((what & USE_RO) && bm->readonly) {
        return error_set(err, -EPERM, "Bitmap '%s' is readonly and cannot be modified", bm->name);
    }
    if ((what & USE_INCONSISTENT) && bm->inconsistent) {
        return error_set(err, -EINVAL, "Bitmap '%s' is inconsistent and cannot be used\n"
                         "Try block-dirty-bitmap-remove to delete this bitmap from disk", bm->name);
    }
    return 0;
}

/* Finds a bitmap with the list locked; unlocks and fails when there is none. */
static struct bdev_bitmap *lookup_locked(struct blockdev *bd, const char *name, struct error *err)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (bms) {
        pthread_mutex_lock(&bms->lock);
        struct bdev_bitmap *bm = find(bms, name);
        if (bm) {
            return bm;
        }
        pthread_mutex_unlock(&bms->lock);
    }
    error_set(err, -ENOENT, "Dirty bitmap '%s' not found", name);
    return NULL;
}

static void unlock(struct blockdev *bd) { pthread_mutex_unlock(&bd->bitmaps->lock); }

static int add_locked(struct blockdev *bd, struct bdev_bitmaps *bms, const char *name,
                      struct dirty_bitmap *bits, bool recording, bool persistent, struct error *err)
{
    struct bdev_bitmap *bm = calloc(1, sizeof(*bm));
    if (!bm || !(bm->name = strdup(name))) {
        free(bm);
        dirty_bitmap_free(bits);
        return error_set(err, -ENOMEM, "Could not allocate bitmap '%s'", name);
    }
    bm->bits = bits;
    bm->recording = recording;
    bm->persistent = persistent;
    bm->readonly = persistent && bd->read_only;
    /* Newest first, as QEMU keeps them: the order it lists them in and
     * appends new ones to the image's directory in. */
    bm->next = bms->head;
    bms->head = bm;
    return 0;
}

int blockdev_bitmap_attach(struct blockdev *bd, const char *name, struct dirty_bitmap *bits,
                           bool recording, bool inconsistent, struct error *err)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, true);
    if (!bms) {
        dirty_bitmap_free(bits);
        return error_set(err, -ENOMEM, "Could not allocate bitmap '%s'", name);
    }
    pthread_mutex_lock(&bms->lock);
    int ret = add_locked(bd, bms, name, bits, recording, true, err);
    if (ret == 0) {
        find(bms, name)->inconsistent = inconsistent;
    }
    pthread_mutex_unlock(&bms->lock);
    return ret;
}

static uint32_t default_granularity(const struct blockdev *bd)
{
    uint32_t g = bd->cluster_size ? bd->cluster_size : 65536;
    return g < 4096 ? 4096 : g > 65536 ? 65536 : g;
}

static int check_new(struct blockdev *bd, const char *name, const struct blockdev_bitmap_add_opts *o,
                     uint32_t *granularity, struct error *err)
{
    if (!name || !*name) {
        return error_set(err, -EINVAL, "Bitmap name cannot be empty");
    }
    *granularity = o->granularity ? o->granularity : default_granularity(bd);
    if (o->granularity && (o->granularity < 512 || (o->granularity & (o->granularity - 1)))) {
        return error_set(err, -EINVAL, "Granularity must be power of 2 and at least 512");
    }
    if (find(bd->bitmaps, name)) {
        return error_set(err, -EEXIST, "Bitmap already exists: %s", name);
    }
    if (o->persistent) {
        if (!bd->drv->bitmap_can_store) {
            return error_set(err, -ENOTSUP, "Can't store persistent bitmaps to %s: %s",
                             bd->filename, strerror(ENOTSUP));
        }
        int ret = bd->drv->bitmap_can_store(bd, name, *granularity, err);
        if (ret < 0) {
            return ret;
        }
    }
    if (strlen(name) > BDEV_BITMAP_NAME_MAX) {
        return error_set(err, -EINVAL, "Bitmap name too long: %s", name);
    }
    return 0;
}

int blockdev_bitmap_add(struct blockdev *bd, const char *name,
                        const struct blockdev_bitmap_add_opts *o, struct error *err)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, true);
    if (!bms) {
        return error_set(err, -ENOMEM, "Could not allocate bitmap '%s'", name);
    }
    pthread_mutex_lock(&bms->lock);
    uint32_t granularity = 0;
    int ret = check_new(bd, name, o, &granularity, err);
    if (ret == 0) {
        struct dirty_bitmap *bits = dirty_bitmap_new(bd->size, granularity);
        ret = bits ? add_locked(bd, bms, name, bits, !o->disabled, o->persistent, err)
                   : error_set(err, -ENOMEM, "Could not allocate bitmap '%s'", name);
    }
    pthread_mutex_unlock(&bms->lock);
    return ret;
}

int blockdev_bitmap_remove(struct blockdev *bd, const char *name, struct error *err)
{
    struct bdev_bitmap *bm = lookup_locked(bd, name, err);
    if (!bm) {
        return err ? err->code : -ENOENT;
    }
    int ret = check_usable(bm, USE_RO | USE_BUSY, err);
    if (ret == 0 && bm->persistent && bd->drv->bitmap_remove) {
        ret = bd->drv->bitmap_remove(bd, name, err);
    }
    if (ret == 0) {
        struct bdev_bitmap **p = &bd->bitmaps->head;
        while (*p != bm) {
            p = &(*p)->next;
        }
        *p = bm->next;
        bitmap_free(bm);
    }
    unlock(bd);
    return ret;
}

/* clear (QEMU refuses it on read-only and inconsistent bitmaps) or
 * enable/disable (only on consistent ones). */
enum change { CHANGE_CLEAR, CHANGE_ENABLE, CHANGE_DISABLE };

static int change(struct blockdev *bd, const char *name, enum change what, struct error *err)
{
    struct bdev_bitmap *bm = lookup_locked(bd, name, err);
    if (!bm) {
        return err ? err->code : -ENOENT;
    }
    int ret = check_usable(bm, what == CHANGE_CLEAR ? USE_DEFAULT : USE_INCONSISTENT | USE_BUSY, err);
    if (ret == 0 && what == CHANGE_CLEAR) {
        dirty_bitmap_clear(bm->bits);
    } else if (ret == 0) {
        bm->recording = what == CHANGE_ENABLE;
    }
    unlock(bd);
    return ret;
}

int blockdev_bitmap_clear(struct blockdev *bd, const char *name, struct error *err)
{
    return change(bd, name, CHANGE_CLEAR, err);
}

int blockdev_bitmap_enable(struct blockdev *bd, const char *name, bool enable, struct error *err)
{
    return change(bd, name, enable ? CHANGE_ENABLE : CHANGE_DISABLE, err);
}

/* src's bits copied out, so that two devices' locks are never held together. */
static int copy_source(struct blockdev *src, const char *src_name, struct dirty_bitmap **out,
                       struct error *err)
{
    struct bdev_bitmap *bm = lookup_locked(src, src_name, err);
    if (!bm) {
        return err ? err->code : -ENOENT;
    }
    int ret = check_usable(bm, USE_INCONSISTENT | USE_BUSY, err);
    if (ret == 0) {
        uint64_t size = dirty_bitmap_size(bm->bits);
        *out = dirty_bitmap_new(size, dirty_bitmap_granularity(bm->bits));
        if (*out) {
            dirty_bitmap_merge(*out, bm->bits);
        } else {
            ret = error_set(err, -ENOMEM, "Could not allocate a copy of bitmap '%s'", src_name);
        }
    }
    unlock(src);
    return ret;
}

int blockdev_bitmap_merge(struct blockdev *bd, const char *dst_name, struct blockdev *src,
                          const char *src_name, struct error *err)
{
    /* QEMU looks the target up first. */
    struct bdev_bitmap *dst = lookup_locked(bd, dst_name, err);
    if (!dst) {
        return err ? err->code : -ENOENT;
    }
    unlock(bd);
    struct dirty_bitmap *copy = NULL;
    int ret = copy_source(src, src_name, &copy, err);
    if (ret < 0) {
        return ret;
    }
    dst = lookup_locked(bd, dst_name, err);
    if (!dst) {
        dirty_bitmap_free(copy);
        return err ? err->code : -ENOENT;
    }
    ret = check_usable(dst, USE_DEFAULT, err);
    if (ret == 0 && dirty_bitmap_size(copy) != dirty_bitmap_size(dst->bits)) {
        ret = error_set(err, -EINVAL, "Bitmaps are of different sizes (destination size is %" PRIu64
                        ", source size is %" PRIu64 ") and can't be merged",
                        dirty_bitmap_size(dst->bits), dirty_bitmap_size(copy));
    }
    if (ret == 0) {
        dirty_bitmap_merge(dst->bits, copy);
    }
    unlock(bd);
    dirty_bitmap_free(copy);
    return ret;
}

/* The bits out into *taken, the bitmap empty; busy: a backup holds it. */
static int take_bits(struct blockdev *bd, const char *name, struct dirty_bitmap **taken, bool busy,
                     struct error *err)
{
    struct bdev_bitmap *bm = lookup_locked(bd, name, err);
    if (!bm) {
        return err ? err->code : -ENOENT;
    }
    /* QEMU's BDRV_BITMAP_ALLOW_RO: a read-only bitmap can drive a backup;
     * a clear needs a writable one. */
    int ret = check_usable(bm, busy ? USE_INCONSISTENT | USE_BUSY : USE_DEFAULT, err);
    struct dirty_bitmap *fresh = NULL;
    if (ret == 0) {
        fresh = dirty_bitmap_new(dirty_bitmap_size(bm->bits), dirty_bitmap_granularity(bm->bits));
        ret = fresh ? 0 : error_set(err, -ENOMEM, "Could not allocate a successor of bitmap '%s'", name);
    }
    if (ret == 0) {
        *taken = bm->bits;
        bm->bits = fresh;
        bm->busy = busy;
        bm->frozen = busy ? *taken : NULL;
    }
    unlock(bd);
    return ret;
}

static void give_back(struct blockdev *bd, const char *name, struct dirty_bitmap *taken, bool merge_back,
                      bool end_busy)
{
    struct bdev_bitmap *bm = lookup_locked(bd, name, NULL);
    if (bm) {
        if (merge_back) {
            dirty_bitmap_merge(bm->bits, taken);
        }
        if (end_busy) {
            bm->busy = false;
            bm->frozen = NULL;
        }
        unlock(bd);
    }
    dirty_bitmap_free(taken);
}

int blockdev_bitmap_backup_begin(struct blockdev *bd, const char *name, struct dirty_bitmap **taken,
                                 struct error *err)
{
    return take_bits(bd, name, taken, true, err);
}

void blockdev_bitmap_backup_end(struct blockdev *bd, const char *name, struct dirty_bitmap *taken, bool merge_back)
{
    give_back(bd, name, taken, merge_back, true);
}

int blockdev_bitmap_clear_taking(struct blockdev *bd, const char *name, struct dirty_bitmap **taken,
                                 struct error *err)
{
    return take_bits(bd, name, taken, false, err);
}

void blockdev_bitmap_untake(struct blockdev *bd, const char *name, struct dirty_bitmap *taken, bool merge_back)
{
    give_back(bd, name, taken, merge_back, false);
}

int blockdev_bitmap_status(struct blockdev *bd, const char *name, uint64_t off, uint64_t *len,
                           bool *dirty, struct error *err)
{
    struct bdev_bitmap *bm = lookup_locked(bd, name, err);
    if (!bm) {
        return err ? err->code : -ENOENT;
    }
    int ret = check_usable(bm, USE_INCONSISTENT, err);
    if (ret == 0) {
        *len = dirty_bitmap_run(bm->bits, off, *len, dirty);
    }
    unlock(bd);
    return ret;
}

int blockdev_bitmap_list(struct blockdev *bd, struct blockdev_bitmap_info **list, int *count,
                         struct error *err)
{
    *list = NULL;
    *count = 0;
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (!bms) {
        return 0;
    }
    pthread_mutex_lock(&bms->lock);
    int n = 0;
    for (struct bdev_bitmap *bm = bms->head; bm; bm = bm->next) {
        n++;
    }
    if (n == 0) {
        pthread_mutex_unlock(&bms->lock);
        return 0;       /* no list to free: callers may stop at a count of 0 */
    }
    struct blockdev_bitmap_info *l = calloc((size_t)n, sizeof(*l));
    int i = 0;
    for (struct bdev_bitmap *bm = bms->head; l && bm; bm = bm->next, i++) {
        l[i] = (struct blockdev_bitmap_info){
            .name = strdup(bm->name),
            .granularity = dirty_bitmap_granularity(bm->bits),
            .recording = bm->recording,
            .persistent = bm->persistent,
            .inconsistent = bm->inconsistent,
            .readonly = bm->readonly,
            .busy = bm->busy,
            .count = dirty_bitmap_count(bm->frozen ? bm->frozen : bm->bits),  /* QEMU shows the frozen parent */
        };
    }
    pthread_mutex_unlock(&bms->lock);
    if (!l) {
        return error_set(err, -ENOMEM, "Could not list the bitmaps");
    }
    *list = l;
    *count = n;
    return 0;
}

void blockdev_bitmap_list_free(struct blockdev_bitmap_info *list, int count)
{
    for (int i = 0; list && i < count; i++) {
        free(list[i].name);
    }
    free(list);
}

void blockdev_bitmaps_mark(struct blockdev *bd, uint64_t off, uint64_t len)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (!bms) {
        return;
    }
    pthread_mutex_lock(&bms->lock);
    for (struct bdev_bitmap *bm = bms->head; bm; bm = bm->next) {
        if (bm->recording && !bm->inconsistent) {
            dirty_bitmap_set(bm->bits, off, len);
        }
    }
    for (struct blockdev_tracker *t = bms->trackers; t; t = t->next) {
        dirty_bitmap_set(t->bits, off, len);
    }
    pthread_mutex_unlock(&bms->lock);
}

int blockdev_bitmaps_check_apply(struct blockdev *bd, struct error *err)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (bms && bms->head) {
        return error_set(err, -EBUSY, "Device has active dirty bitmaps");
    }
    return 0;
}

int blockdev_bitmaps_check_resize(struct blockdev *bd, struct error *err)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    int ret = 0;
    if (!bms) {
        return 0;
    }
    pthread_mutex_lock(&bms->lock);
    for (struct bdev_bitmap *bm = bms->head; bm && ret == 0; bm = bm->next) {
        ret = check_usable(bm, USE_DEFAULT, err);
    }
    pthread_mutex_unlock(&bms->lock);
    return ret;
}

void blockdev_bitmaps_resize(struct blockdev *bd, uint64_t size)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (!bms) {
        return;
    }
    pthread_mutex_lock(&bms->lock);
    for (struct bdev_bitmap *bm = bms->head; bm; bm = bm->next) {
        if (dirty_bitmap_resize(bm->bits, size) < 0) {
            /* Cannot follow the disk: it must not be trusted (or stored) any more. */
            log_error("%s: bitmap '%s' could not be resized; it is now inconsistent",
                      bd->filename, bm->name);
            bm->inconsistent = true;
        }
    }
    for (struct blockdev_tracker *t = bms->trackers; t; t = t->next) {
        dirty_bitmap_resize(t->bits, size);
        dirty_bitmap_set(t->bits, 0, size);     /* the owner must look at everything again */
    }
    pthread_mutex_unlock(&bms->lock);
}

static bool has_writable_persistent(const struct bdev_bitmaps *bms)
{
    for (const struct bdev_bitmap *bm = bms->head; bm; bm = bm->next) {
        if (bm->persistent && !bm->readonly) {
            return true;
        }
    }
    return false;
}

static int store(struct blockdev *bd, struct error *err)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (!bms || bd->read_only || !bd->drv->bitmaps_store) {
        return 0;
    }
    pthread_mutex_lock(&bms->lock);
    int ret = has_writable_persistent(bms) ? bd->drv->bitmaps_store(bd, err) : 0;
    pthread_mutex_unlock(&bms->lock);
    return ret;
}

void blockdev_bitmaps_close(struct blockdev *bd)
{
    struct bdev_bitmaps *bms = bd->bitmaps;
    if (!bms) {
        return;
    }
    struct error err = { 0 };
    if (store(bd, &err) < 0) {
        /* QEMU's words; the image keeps them flagged in use (inconsistent). */
        log_error("Lost persistent bitmaps during inactivation of node '%s': %s", bd->filename,
                  err.msg);
    }
    blockdev_bitmaps_free(bd);
}

void blockdev_bitmaps_drop_persistent(struct blockdev *bd)
{
    struct bdev_bitmaps *bms = bitmaps_of(bd, false);
    if (!bms) {
        return;
    }
    pthread_mutex_lock(&bms->lock);
    for (struct bdev_bitmap **p = &bms->head; *p;) {
        struct bdev_bitmap *bm = *p;
        if (bm->persistent) {
            *p = bm->next;
            bitmap_free(bm);
        } else {
            p = &bm->next;
        }
    }
    pthread_mutex_unlock(&bms->lock);
}

int blockdev_bitmaps_inactivate(struct blockdev *bd, struct error *err)
{
    int ret = store(bd, err);
    if (ret < 0) {
        error_prefix(err, "Persistent bitmaps are lost for node '%s'", bd->filename);
        return ret;
    }
    blockdev_bitmaps_drop_persistent(bd);
    return 0;
}

void blockdev_bitmaps_free(struct blockdev *bd)
{
    struct bdev_bitmaps *bms = bd->bitmaps;
    if (!bms) {
        return;
    }
    while (bms->head) {
        struct bdev_bitmap *bm = bms->head;
        bms->head = bm->next;
        bitmap_free(bm);
    }
    for (struct blockdev_tracker *t = bms->trackers; t; t = t->next) {
        t->bd = NULL;       /* closed under its owner: its takes find nothing more */
    }
    pthread_mutex_destroy(&bms->lock);
    free(bms);
    bd->bitmaps = NULL;
}

bool blockdev_supports_persistent_bitmaps(const struct blockdev *bd)
{
    return bd->drv->bitmap_can_store && bd->drv->bitmaps_store &&
           bd->drv->bitmap_can_store((struct blockdev *)bd, NULL, 0, NULL) == 0;
}
