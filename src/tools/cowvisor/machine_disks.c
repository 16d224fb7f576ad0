#include "machine_disks.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "virtio/virtio_blk.h"

int machine_disk_chain(struct machine *m, int i, struct disk_layer *out, int max, bool *read_only)
{
    int n = 0;
    *read_only = m->disks[i]->read_only;
    for (struct blockdev *bd = m->disks[i]; bd && n < max; bd = bd->backing) {
        out[n++] = (struct disk_layer){ bd->filename, blockdev_format(bd), bd->backing_filename, blockdev_size(bd),
                                        bd->cluster_size };
    }
    return n;
}

static struct virtio_blk *blk_of(struct machine *m, struct blockdev *bd)
{
    for (int i = 0; i < m->nvirtio; i++) {
        struct virtio_device *d = m->virtio[i];
        if (d->device_id == VIRTIO_ID_BLOCK && ((struct virtio_blk *)d)->bdev == bd) {
            return (struct virtio_blk *)d;
        }
    }
    return NULL;
}

static void drain_locked(struct virtio_blk *b)
{
    while (b->in_flight > 0) {
        pthread_cond_wait(&b->idle, &b->dev.lock);
    }
}

void machine_disks_drain(struct machine *m)
{
    for (int i = 0; i < m->nvirtio; i++) {
        struct virtio_device *d = m->virtio[i];
        if (d->device_id == VIRTIO_ID_BLOCK) {
            pthread_mutex_lock(&d->lock);
            drain_locked((struct virtio_blk *)d);
            pthread_mutex_unlock(&d->lock);
        }
    }
}

int machine_disk_overlay(struct machine *m, int i, const char *file, struct error *err)
{
    struct blockdev *old = m->disks[i];
    if (old->read_only) {
        return error_set(err, -EROFS, "Device 'disk%d' is read only", i);
    }
    struct virtio_blk *blk = blk_of(m, old);
    if (!blk) {
        return error_set(err, -ENODEV, "Device 'disk%d' is not attached to a virtio-blk device", i);
    }
    char backing[PATH_MAX];
    if (!realpath(old->filename, backing)) {
        return error_set_errno(err, -errno, "Could not resolve '%s'", old->filename);
    }
    struct qcow2_create_opts o;
    qcow2_create_opts_init(&o);
    o.size = blockdev_size(old);
    o.backing_file = backing;
    o.backing_format = blockdev_format(old);
    int ret = qcow2_create(file, &o, err);
    if (ret < 0) {
        return ret;
    }
    /* The main loop starts requests: once drained, none is in flight. The
     * old image closes before the overlay opens it again as its
     * (read-only) backing file, so image locks do not collide. */
    pthread_mutex_lock(&blk->dev.lock);
    drain_locked(blk);
    if ((ret = blockdev_flush(old, err)) == 0) {
        const char *old_fmt = blockdev_format(old);
        struct blockdev_open_opts opts = { .format = "qcow2" };
        struct blockdev *top = NULL;
        blockdev_close(old);
        ret = blockdev_open(&top, file, &opts, err);
        if (ret < 0) {
            /* Put the old image back so the guest keeps its disk. */
            struct blockdev_open_opts back = { .format = old_fmt };
            if (blockdev_open(&top, backing, &back, NULL) < 0) {
                top = NULL;
            }
        }
        m->disks[i] = top;
        blk->bdev = top;
    }
    pthread_mutex_unlock(&blk->dev.lock);
    return ret;
}
