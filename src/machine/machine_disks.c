/* The machine's disks as a monitor sees them: their backing chains and
 * external snapshots (a new qcow2 overlay on top of the current image). */
#include "machine/machine_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_job.h"
#include "block/blockdev.h"
#include "machine/image_swap.h"
#include "virtio/virtio_blk.h"

struct block_node_table *machine_block_nodes(struct machine *m)
{
    return &m->nodes;
}

int machine_disk_count(const struct machine *m)
{
    return m->cfg->ndisks;
}

int machine_disk_chain(struct machine *m, int i, struct disk_layer *out, int max, bool *read_only)
{
    int n = 0;
    if (m->disk_unplug[i] == DISK_UNPLUGGED) {
        return -ENODEV;
    }
    *read_only = m->disks[i] ? blockdev_is_read_only(m->disks[i]) : m->cfg->disks[i].read_only;
    for (struct blockdev *bd = m->disks[i]; bd && n < max; bd = blockdev_backing(bd)) {
        out[n++] = (struct disk_layer){ blockdev_filename(bd), blockdev_format(bd), blockdev_backing_filename(bd), blockdev_size(bd),
                                        blockdev_cluster_size(bd), bd };
    }
    return n;
}

static struct virtio_blk *blk_of(struct machine *m, struct blockdev *bd)
{
    for (int i = 0; i < m->nvirtio; i++) {
        struct virtio_device *d = m->virtio[i].dev;    /* NULL: an ejected disk's */
        if (d && d->device_id == VIRTIO_ID_BLOCK && ((struct virtio_blk *)d)->bdev == bd) {
            return (struct virtio_blk *)d;
        }
    }
    return NULL;
}

/* Only without memory for even a placeholder (image_swap.h). */
static int no_image(int i, struct error *err)
{
    return error_set(err, -ENOMEDIUM, "Device 'disk%d' has no medium", i);
}

void machine_set_migrating(struct machine *m, bool on)
{
    __atomic_store_n(&m->migrating, on, __ATOMIC_SEQ_CST);
    if (!on) {
        machine_ejects_resume(m);
    }
}

bool machine_migrating(const struct machine *m)
{
    return __atomic_load_n(&m->migrating, __ATOMIC_SEQ_CST);
}

/* QEMU's op blocker words for a node a migration holds. */
static int refuse_while_migrating(struct machine *m, int i, struct error *err)
{
    if (!machine_migrating(m)) {
        return 0;
    }
    return error_set(err, -EBUSY, "Node 'disk%d' is busy: block device is in use by migration", i);
}

/* blockdev-snapshot-sync. A record or replay owns its disks' chains: the
 * next time travel would drop the overlay (its own overlay is made by
 * machine_disk_add_overlay). */
int machine_disk_overlay(struct machine *m, int i, const char *file, struct error *err)
{
    if (m->replay) {
        return error_set(err, -EBUSY, "Node 'disk%d' is busy: block device is in use by record/replay", i);
    }
    return machine_disk_add_overlay(m, i, file, err);
}

int machine_disk_add_overlay(struct machine *m, int i, const char *file, struct error *err)
{
    struct blockdev *old = m->disks[i];
    int busy = refuse_while_migrating(m, i, err);
    if (busy < 0) {
        return busy;
    }
    if (!old) {
        return no_image(i, err);
    }
    if (blockdev_is_read_only(old)) {
        return error_set(err, -EROFS, "Device 'disk%d' is read only", i);
    }
    struct virtio_blk *blk = blk_of(m, old);
    if (!blk) {
        return error_set(err, -ENODEV, "Device 'disk%d' is not attached to a virtio-blk device", i);
    }
    char backing[PATH_MAX];
    if (!realpath(blockdev_filename(old), backing)) {
        return error_set_errno(err, -errno, "Could not resolve '%s'", blockdev_filename(old));
    }
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = blockdev_size(old);
    o.backing_file = backing;
    o.backing_format = blockdev_format(old);
    int ret = blockdev_create(file, &o, err);
    if (ret < 0) {
        return ret;
    }
    /* The main loop starts requests: until it runs again, none is added. */
    pthread_mutex_lock(&blk->dev.lock);
    virtio_blk_drain_locked(blk);
    if ((ret = blockdev_flush(old, err)) == 0) {
        ret = image_swap(&m->disks[i], file, "qcow2", 0, err);
        blk->bdev = m->disks[i];
    }
    pthread_mutex_unlock(&blk->dev.lock);
    return ret;
}

int machine_disk_resize(struct machine *m, int i, uint64_t size, struct error *err)
{
    struct blockdev *bd = m->disks[i];
    int busy = refuse_while_migrating(m, i, err);
    if (busy < 0) {
        return busy;
    }
    if (!bd) {
        return no_image(i, err);
    }
    if (blockdev_is_read_only(bd)) {
        return error_set(err, -EROFS, "Device 'disk%d' is read only", i);
    }
    struct virtio_blk *blk = blk_of(m, bd);
    if (!blk) {
        return blockdev_truncate(bd, size, true, PREALLOC_OFF, err);
    }
    pthread_mutex_lock(&blk->dev.lock);
    virtio_blk_drain_locked(blk);
    int ret = blockdev_truncate(bd, size, true, PREALLOC_OFF, err);
    if (ret == 0) {
        virtio_device_config_changed(&blk->dev);
    }
    pthread_mutex_unlock(&blk->dev.lock);
    return ret;
}

static struct blockdev *job_top(void *opaque)
{
    struct machine_disk_ref *r = opaque;
    return r->m->disks[r->i];
}

/* The job's changes happen in the main loop: holding the device's lock
 * with nothing in flight keeps the workers out, and the loop starts no
 * request meanwhile. */
static void job_drain_begin(void *opaque)
{
    struct machine_disk_ref *r = opaque;
    struct virtio_blk *blk = blk_of(r->m, r->m->disks[r->i]);
    if (blk) {
        pthread_mutex_lock(&blk->dev.lock);
        virtio_blk_drain_locked(blk);
    }
}

static void job_drain_end(void *opaque)
{
    struct machine_disk_ref *r = opaque;
    struct virtio_blk *blk = blk_of(r->m, r->m->disks[r->i]);
    if (blk) {
        pthread_mutex_unlock(&blk->dev.lock);
    }
}

static int job_replace(void *opaque, const char *filename, const char *format, struct error *err)
{
    struct machine_disk_ref *r = opaque;
    struct machine *m = r->m;
    struct virtio_blk *blk = blk_of(m, m->disks[r->i]);
    unsigned flags = m->cfg->disks[r->i].read_only ? BDEV_READ_ONLY : 0;
    int ret = image_swap(&m->disks[r->i], filename, format, flags, err);
    if (blk) {
        blk->bdev = m->disks[r->i];
    }
    return ret;
}

/* A guest eject of the disk waits for its jobs (machine_hotplug.c). */
static void job_release(void *opaque)
{
    struct machine_disk_ref *r = opaque;
    if (__atomic_sub_fetch(&r->m->disk_jobs[r->i], 1, __ATOMIC_SEQ_CST) == 0) {
        machine_ejects_resume(r->m);
    }
}

int machine_disk_switch_host(struct machine *m, int i, struct block_job_host *out, struct error *err)
{
    if (i < 0 || i >= m->cfg->ndisks || !m->disks[i]) {
        return error_set(err, -ENODEV, "No disk %d", i);
    }
    int busy = refuse_while_migrating(m, i, err);
    if (busy < 0) {
        return busy;
    }
    m->disk_refs[i] = (struct machine_disk_ref){ m, i };
    __atomic_add_fetch(&m->disk_jobs[i], 1, __ATOMIC_SEQ_CST);
    *out = (struct block_job_host){ .top = job_top, .drain_begin = job_drain_begin, .drain_end = job_drain_end,
                                    .replace = job_replace, .release = job_release, .opaque = &m->disk_refs[i] };
    return 0;
}

/* A record or replay owns its disks' chains (machine_replay_disks.c): a
 * commit would write the recording's overlay (or the user's image below
 * it) and drop a travel's view of it; a stream or a backup would read and
 * write behind the replay's back. */
int machine_disk_job_host(struct machine *m, int i, struct block_job_host *out, struct error *err)
{
    if (m->replay) {
        return error_set(err, -EBUSY, "Node 'disk%d' is busy: block device is in use by record/replay", i);
    }
    return machine_disk_switch_host(m, i, out, err);
}

/* Shared storage at a migration's switchover (blockdev_inactivate): the
 * guest is stopped, so no request is in flight. A failure part way leaves
 * the disks it reached handed over: the caller activates them again. */
static int each_disk(struct machine *m, int (*op)(struct blockdev *bd, struct error *err), struct error *err)
{
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        int ret = m->disks[i] ? op(m->disks[i], err) : 0;
        if (ret < 0) {
            error_prefix(err, "disk%d", i);
            return ret;
        }
    }
    return 0;
}

int machine_disks_inactivate(struct machine *m, struct error *err)
{
    return each_disk(m, blockdev_inactivate, err);
}

int machine_disks_activate(struct machine *m, struct error *err)
{
    return each_disk(m, blockdev_activate, err);
}

void machine_close_disks(struct machine *m)
{
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (m->disks[i]) {
            blockdev_close(m->disks[i]);
            m->disks[i] = NULL;
        }
    }
}
