/* A device's image swapped for another (image_swap.h). The old image
 * closes before the new one opens: the new one often reopens the same
 * files (a stream's rewritten top, an overlay's backing file), and two
 * writable opens of one qcow2 image would overwrite each other's metadata.
 * So a failure has to open the old image again, and when that fails too
 * the device gets a placeholder that fails every request. */
#include "machine/image_swap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blkdebug.h"
#include "block/blockdev.h"
#include "util/options.h"

/* null-co of the old size under a blkdebug rule failing every request
 * with EIO, made active at once (event "none" is ours to raise). */
static int open_placeholder(struct blockdev **out, uint64_t size, unsigned flags, struct error *err)
{
    struct options o = { 0 };
    struct blkdebug *dbg = NULL;
    int ret = options_parse(&o, "inject-error.0.event=none,inject-error.0.errno=5", NULL, err);
    if (ret == 0) {
        ret = blkdebug_new(&dbg, NULL, &o, "", err);
    }
    options_free(&o);
    if (ret < 0) {
        return ret;
    }
    struct blockdev_open_opts opts = { .format = "raw", .flags = flags | BDEV_NO_LOCK, .blkdebug = dbg,
                                       .protocol = "null-co", .null_size = size, .null_read_zeroes = true };
    ret = blockdev_open(out, IMAGE_SWAP_PLACEHOLDER, &opts, err);
    if (ret == 0) {
        blkdebug_event(blockdev_blkdebug(*out), BLKDBG_NONE);
    }
    return ret;
}

int image_swap(struct blockdev **img, const char *filename, const char *format, unsigned flags,
               struct error *err)
{
    struct blockdev *old = *img, *now = NULL;
    if (!old) {
        return error_set(err, -ENOMEDIUM, "No image to replace");
    }
    char *old_name = strdup(blockdev_filename(old)), *old_fmt = strdup(blockdev_format(old));
    uint64_t size = blockdev_size(old);
    /* detect-zeroes and discard are the node's, whichever image it has. */
    enum blockdev_detect_zeroes detect_zeroes = blockdev_detect_zeroes(old);
    bool discard_ignore = blockdev_discard_ignored(old);
    blockdev_close(old);
    struct blockdev_open_opts opts = { .format = format, .flags = flags };
    int ret = blockdev_open(&now, filename, &opts, err);
    if (ret < 0) {
        struct blockdev_open_opts back = { .format = old_fmt, .flags = flags };
        if (!old_name || !old_fmt || blockdev_open(&now, old_name, &back, NULL) < 0) {
            now = NULL;
        }
    }
    if (!now && open_placeholder(&now, size, flags, NULL) < 0) {
        now = NULL;         /* out of memory: the device fails its requests itself */
    }
    if (ret < 0 && err && (!now || image_swap_is_placeholder(now))) {
        size_t len = strlen(err->msg);
        snprintf(err->msg + len, sizeof(err->msg) - len, " (and '%s' could not be opened again: the device fails its requests)",
                 old_name ? old_name : "the old image");
    }
    free(old_name);
    free(old_fmt);
    if (now) {
        blockdev_set_write_options(now, detect_zeroes, discard_ignore);
    }
    *img = now;
    return ret;
}

bool image_swap_is_placeholder(struct blockdev *bd)
{
    return bd && !strcmp(blockdev_filename(bd), IMAGE_SWAP_PLACEHOLDER);
}
