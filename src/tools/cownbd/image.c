/* Opening the exported image; -s puts a temporary qcow2 overlay on top so
 * the image itself is never written (QEMU's BDRV_O_SNAPSHOT). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "cownbd.h"

/* Creates the overlay in $TMPDIR (or /var/tmp, like QEMU) and opens it; the
 * file is unlinked at once, so it goes away with the process. */
static int open_snapshot(const struct cownbd_opts *o, struct blockdev **out, struct error *err)
{
    struct blockdev *base;
    struct blockdev_open_opts bopts = { .format = o->format, .flags = BDEV_READ_ONLY };
    int ret = o->image_opts ? blockdev_open_spec(&base, NULL, o->filename, &bopts, err)
                            : blockdev_open(&base, o->filename, &bopts, err);
    if (ret < 0) {
        return ret;
    }
    char format[16];
    snprintf(format, sizeof(format), "%s", blockdev_format(base));
    uint64_t size = blockdev_size(base);
    char backing[PATH_MAX];
    char *name = strdup(blockdev_filename(base));
    blockdev_close(base);
    if (!realpath(name, backing)) {
        ret = error_set_errno(err, -errno, "Could not resolve '%s'", name);
        free(name);
        return ret;
    }
    free(name);
    const char *dir = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cownbd-snapshot.XXXXXX", dir && *dir ? dir : "/var/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not get temporary filename");
    }
    close(fd);
    struct blockdev_create_opts copts;
    blockdev_create_opts_init(&copts);
    copts.size = size;
    copts.backing_file = backing;
    copts.backing_format = format;
    ret = blockdev_create(path, &copts, err);
    if (ret == 0) {
        struct blockdev_open_opts oopts = { .format = "qcow2", .flags = o->open_flags };
        ret = blockdev_open(out, path, &oopts, err);
    }
    unlink(path);
    return ret;
}

int cownbd_open_image(const struct cownbd_opts *o, struct blockdev **out, struct error *err)
{
    if (o->snapshot) {
        return open_snapshot(o, out, err);
    }
    struct blockdev_open_opts bopts = { .format = o->format, .flags = o->open_flags };
    int ret = o->image_opts ? blockdev_open_spec(out, NULL, o->filename, &bopts, err)
                            : blockdev_open(out, o->filename, &bopts, err);
    if (ret == 0) {
        blockdev_warn_probed_raw(*out, o->filename);
    }
    return ret;
}
