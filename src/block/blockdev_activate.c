/* Image locks of an open, and their hand-over between two processes on
 * shared storage (live migration): an inactive image holds no lock and
 * shares every permission, so the destination can open it while the
 * source runs; the source gives its locks up at switchover and the
 * destination takes them, as QEMU's bdrv_inactivate_all and
 * bdrv_activate_all do. */
#include "block/block_int.h"

#include <errno.h>

#include "block/hostfile.h"

/* The permissions QEMU's tools and devices take on an image file (a format
 * node over it never shares write or resize), and what -U changes. */
int blockdev_lock_file(struct hostfile *file, unsigned flags, struct error *err)
{
    if (flags & BDEV_NO_LOCK) {
        return 0;
    }
    unsigned perm = HOSTFILE_PERM_READ;
    unsigned shared = HOSTFILE_PERM_READ | HOSTFILE_PERM_WRITE_UNCHANGED;
    if (!(flags & BDEV_READ_ONLY)) {
        perm |= HOSTFILE_PERM_WRITE | HOSTFILE_PERM_RESIZE;
    }
    if (flags & BDEV_FORCE_SHARE) {
        shared = HOSTFILE_PERM_ALL;
    }
    if (flags & BDEV_INACTIVE) {
        perm = 0;
        shared = HOSTFILE_PERM_ALL;
    }
    /* Going from one set of locks to another: the new set is checked
     * against the other users alone. */
    hostfile_unlock(file);
    return hostfile_lock(file, perm, shared, flags & BDEV_REOPEN, err);
}

bool blockdev_is_inactive(const struct blockdev *bd)
{
    return bd->inactive;
}

/* From the top down: an overlay's metadata goes out before its backing
 * image is let go. */
int blockdev_inactivate(struct blockdev *bd, struct error *err)
{
    for (; bd; bd = bd->backing) {
        if (bd->inactive) {
            continue;
        }
        int ret = blockdev_flush(bd, err);
        if (ret == 0 && !bd->read_only) {
            ret = blockdev_bitmaps_inactivate(bd, err);
        }
        if (ret == 0 && !bd->read_only && bd->drv->inactivate) {
            ret = bd->drv->inactivate(bd, err);
        }
        if (ret < 0) {
            error_prefix(err, "Could not hand '%s' over", bd->filename);
            return ret;
        }
        bd->inactive = true;
        if (bd->file) {
            /* Dropping locks cannot conflict with anyone. */
            blockdev_lock_file(bd->file, bd->open_flags | BDEV_INACTIVE, NULL);
        }
    }
    return 0;
}

static int activate_one(struct blockdev *bd, struct error *err)
{
    if (!bd->inactive) {
        return 0;
    }
    int ret = bd->file ? blockdev_lock_file(bd->file, bd->open_flags & ~BDEV_INACTIVE, err) : 0;
    if (ret < 0) {
        blockdev_lock_file(bd->file, bd->open_flags | BDEV_INACTIVE, NULL);
        return ret;
    }
    /* Writable from here on: the driver may repair or rewrite its header. */
    bd->inactive = false;
    if (bd->drv->activate) {
        ret = bd->drv->activate(bd, err);
    } else if (bd->drv->invalidate_cache) {
        ret = bd->drv->invalidate_cache(bd, err);
    }
    if (ret < 0) {
        bd->inactive = true;
        if (bd->file) {
            blockdev_lock_file(bd->file, bd->open_flags | BDEV_INACTIVE, NULL);
        }
        error_prefix(err, "Could not take '%s' over", bd->filename);
        return ret;
    }
    return 0;
}

/* From the bottom up: an overlay reads its backing image's fresh state. */
int blockdev_activate(struct blockdev *bd, struct error *err)
{
    if (!bd) {
        return 0;
    }
    int ret = blockdev_activate(bd->backing, err);
    return ret < 0 ? ret : activate_one(bd, err);
}
