/* The writable disks of a record or replay (issue 13). Each one runs on a
 * qcow2 overlay over the user's image, which is opened read-only: the
 * user's images are never written, so every replay starts from the content
 * the recording started from (the log's disk hash) and replays the guest's
 * writes onto it.
 *
 * Without time-travel snapshots the overlay is a temporary file, deleted
 * once open. With them, the recording's overlay is kept as
 * FILE.snap/disk<i>.qcow2 and each time-travel snapshot at exit K takes an
 * internal qcow2 snapshot "exit-K" of it (the disk as it was at that exit,
 * kept copy-on-write by qcow2's refcounts). A replay that travels to exit K
 * runs on a new empty temporary overlay whose backing file is the
 * recording's overlay, opened read-only with "exit-K" loaded (viewed, not
 * applied): nothing is copied, whatever the overlay's size. When the
 * recording's overlay has another image below it than this replay's (the
 * replay runs on a copy of the image elsewhere), the travel runs on a
 * temporary copy of the overlay reverted to "exit-K", its backing file
 * pointed at this replay's image. Either way the recording's files are
 * not written, so the same replay can travel again. */
#include "machine/machine_replay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block_job.h"
#include "block/blockdev.h"
#include "machine/machine_int.h"

static const char *tmp_dir(void)
{
    return getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
}

/* A new empty file in TMPDIR for an overlay (the caller deletes it). */
static int temp_file(char *path, size_t size, struct error *err)
{
    snprintf(path, size, "%s/cowvisor-replay-XXXXXX", tmp_dir());
    int fd = mkstemp(path);
    if (fd < 0) {
        return error_set_errno(err, -errno, "creating a temporary overlay in %s", tmp_dir());
    }
    return fd;
}

static int overlay_path(const char *snap_dir, int i, char *path, size_t size, struct error *err)
{
    if ((size_t)snprintf(path, size, "%s/disk%d.qcow2", snap_dir, i) >= size) {
        return error_set(err, -ENAMETOOLONG, "the snapshot directory's name is too long");
    }
    return 0;
}

/* Disk i switched to the image in file (its backing chain below it); with
 * view, its backing file shows that internal snapshot (loaded read-only)
 * before any request reaches the disk. */
static int switch_disk(struct machine *m, int i, const char *file, const char *view, struct error *err)
{
    struct block_job_host host;
    int ret = machine_disk_switch_host(m, i, &host, err);
    if (ret < 0) {
        return ret;
    }
    host.drain_begin(host.opaque);
    ret = host.replace(host.opaque, file, "qcow2", err);
    if (ret == 0 && view) {
        struct blockdev *below = blockdev_backing(m->disks[i]);
        ret = below ? blockdev_snapshot_load_tmp(below, view, err)
                    : error_set(err, -EIO, "the travel's overlay '%s' lost its backing file", file);
    }
    host.drain_end(host.opaque);
    host.release(host.opaque);      /* no job: the disk is ours again at once */
    return ret;
}

int machine_replay_protect_disks(struct machine *m, const char *keep_dir, struct error *err)
{
    struct machine_replay *r = m->replay;
    for (int i = 0; i < m->cfg->ndisks && i < MACHINE_MAX_DISKS; i++) {
        if (!m->disks[i] || blockdev_is_read_only(m->disks[i])) {
            continue;
        }
        if (!realpath(blockdev_filename(m->disks[i]), r->disk[i].backing)) {
            return error_set_errno(err, -errno, "--disk '%s'", m->cfg->disks[i].file);
        }
        snprintf(r->disk[i].format, sizeof(r->disk[i].format), "%s", blockdev_format(m->disks[i]));
        char path[PATH_MAX];
        int ret = keep_dir ? overlay_path(keep_dir, i, path, sizeof(path), err) : temp_file(path, sizeof(path), err);
        if (ret >= 0) {
            if (!keep_dir) {
                close(ret);
            }
            ret = machine_disk_add_overlay(m, i, path, err);
            if (!keep_dir) {
                unlink(path);
            }
        }
        if (ret < 0) {
            error_prefix(err, "--disk '%s': its %s overlay", m->cfg->disks[i].file, keep_dir ? "recording" : "temporary");
            return ret;
        }
        r->disk[i].overlaid = true;
    }
    return 0;
}

static void snapshot_name(char *name, size_t size, uint64_t at)
{
    snprintf(name, size, "exit-%" PRIu64, at);
}

int machine_replay_snapshot_disks(struct machine *m, uint64_t at, struct error *err)
{
    char name[32];
    snapshot_name(name, sizeof(name), at);
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (!m->replay->disk[i].overlaid) {
            continue;
        }
        int ret = blockdev_flush(m->disks[i], err);
        if (ret == 0) {
            ret = blockdev_snapshot_create(m->disks[i], name, NULL, err);
        }
        if (ret < 0) {
            error_prefix(err, "disk %d's snapshot '%s'", i, name);
            return ret;
        }
    }
    return 0;
}

static int copy_file(const char *from, int to_fd, struct error *err)
{
    int fd = open(from, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "cannot open the disk overlay '%s'", from);
    }
    ssize_t n;
    while ((n = copy_file_range(fd, NULL, to_fd, NULL, 1 << 30, 0)) > 0) {
    }
    int ret = n < 0 ? error_set_errno(err, -errno, "copying the disk overlay '%s'", from) : 0;
    close(fd);
    return ret;
}

/* file (a copy of the recording's overlay): its active disk reverted to the
 * snapshot of exit at, over this replay's image. */
static int revert_copy(const char *file, const char *overlay, uint64_t at, const char *backing,
                       const char *backing_fmt, struct error *err)
{
    char name[32];
    snapshot_name(name, sizeof(name), at);
    struct blockdev *bd;
    struct blockdev_open_opts opts = { .format = "qcow2", .flags = BDEV_NO_BACKING };
    int ret = blockdev_open(&bd, file, &opts, err);
    if (ret < 0) {
        return ret;
    }
    if ((ret = blockdev_snapshot_apply(bd, name, err)) < 0) {
        error_prefix(err, "the disk overlay '%s' has no snapshot of exit %" PRIu64, overlay, at);
    } else {
        ret = blockdev_change_backing_file(bd, backing, backing_fmt, err);
    }
    blockdev_close(bd);
    return ret;
}

/* The travel of disk i on a reverted copy of the recording's overlay. */
static int travel_on_copy(struct machine *m, int i, const char *overlay, uint64_t at, struct error *err)
{
    char copy[PATH_MAX];
    int fd = temp_file(copy, sizeof(copy), err);
    if (fd < 0) {
        return fd;
    }
    int ret = copy_file(overlay, fd, err);
    close(fd);
    if (ret == 0) {
        ret = revert_copy(copy, overlay, at, m->replay->disk[i].backing, m->replay->disk[i].format, err);
    }
    if (ret == 0) {
        ret = switch_disk(m, i, copy, NULL, err);
    }
    unlink(copy);
    return ret;
}

/* The recording's overlay has the snapshot of exit at: 1 when this
 * replay's image is below it (a view of it serves), 0 when another is. */
static int check_overlay(const char *overlay, uint64_t at, const char *image, struct error *err)
{
    char name[32], below[PATH_MAX];
    snapshot_name(name, sizeof(name), at);
    struct blockdev *bd;
    struct blockdev_open_opts opts = { .format = "qcow2", .flags = BDEV_READ_ONLY | BDEV_NO_BACKING };
    int ret = blockdev_open(&bd, overlay, &opts, err);
    if (ret < 0) {
        error_prefix(err, "cannot open the disk overlay '%s'", overlay);
        return ret;
    }
    if ((ret = blockdev_snapshot_load_tmp(bd, name, err)) < 0) {
        error_prefix(err, "the disk overlay '%s' has no snapshot of exit %" PRIu64, overlay, at);
    } else {
        const char *file = blockdev_backing_filename(bd);
        ret = file && realpath(file, below) && strcmp(below, image) == 0;
    }
    blockdev_close(bd);
    return ret;
}

/* The travel of disk i on a new overlay over the recording's, viewed at exit at. */
static int travel_on_view(struct machine *m, int i, const char *overlay, uint64_t at, struct error *err)
{
    char top[PATH_MAX], below[PATH_MAX], name[32];
    snapshot_name(name, sizeof(name), at);
    if (!realpath(overlay, below)) {
        return error_set_errno(err, -errno, "cannot open the disk overlay '%s'", overlay);
    }
    int fd = temp_file(top, sizeof(top), err);
    if (fd < 0) {
        return fd;
    }
    close(fd);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = blockdev_size(m->disks[i]);
    o.backing_file = below;
    o.backing_format = "qcow2";
    int ret = blockdev_create(top, &o, err);
    if (ret == 0) {
        ret = switch_disk(m, i, top, name, err);
    }
    unlink(top);
    return ret;
}

int machine_replay_travel_disks(struct machine *m, const char *snap_dir, uint64_t at, struct error *err)
{
    struct machine_replay *r = m->replay;
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (!r->disk[i].overlaid) {
            continue;
        }
        char overlay[PATH_MAX];
        int ret = overlay_path(snap_dir, i, overlay, sizeof(overlay), err);
        if (ret == 0) {
            ret = check_overlay(overlay, at, r->disk[i].backing, err);
        }
        if (ret >= 0) {
            ret = ret ? travel_on_view(m, i, overlay, at, err) : travel_on_copy(m, i, overlay, at, err);
        }
        if (ret < 0) {
            error_prefix(err, "disk %d", i);
            return ret;
        }
    }
    return 0;
}

void machine_replay_drop_unused_overlays(struct machine *m)
{
    struct machine_replay *r = m->replay;
    if (r->snapshots > 0 || !r->snap_dir) {
        return;
    }
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        char path[PATH_MAX];
        if (r->disk[i].overlaid && overlay_path(r->snap_dir, i, path, sizeof(path), NULL) == 0) {
            unlink(path);       /* still open: the disk goes on until the machine goes */
        }
    }
    rmdir(r->snap_dir);
}
