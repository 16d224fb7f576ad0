/* convert --bitmaps: copies the source's persistent dirty bitmaps to the
 * target after the data, as qemu-img convert does (same checks, words). */
#include <stdlib.h>

#include "cowimg.h"

/* The source's bitmaps; -1 after reporting. */
static int list_bitmaps(struct blockdev *src, struct blockdev_bitmap_info **list, int *n)
{
    struct error err = { 0 };
    if (blockdev_bitmap_list(src, list, n, &err) < 0) {
        report("%s", err.msg);
        return -1;
    }
    return 0;
}

int convert_check_bitmaps(struct blockdev *src, bool skip_broken)
{
    if (!blockdev_supports_persistent_bitmaps(src)) {
        report("Source lacks bitmap support");
        return -1;
    }
    struct blockdev_bitmap_info *list;
    int n, ret = 0;
    if (list_bitmaps(src, &list, &n) < 0) {
        return -1;
    }
    for (int i = 0; i < n && ret == 0; i++) {
        if (list[i].persistent && list[i].inconsistent && !skip_broken) {
            report("Cannot copy inconsistent bitmap '%s'", list[i].name);
            fprintf(stderr, "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to "
                    "delete it\n");
            ret = -1;
        }
    }
    blockdev_bitmap_list_free(list, n);
    return ret;
}

static int copy_one(struct blockdev *src, struct blockdev *dst,
                    const struct blockdev_bitmap_info *bm)
{
    struct error err = { 0 };
    struct blockdev_bitmap_add_opts o = {
        .granularity = bm->granularity, .persistent = true, .disabled = !bm->recording,
    };
    if (blockdev_bitmap_add(dst, bm->name, &o, &err) < 0) {
        report("Failed to create bitmap %s: %s", bm->name, err.msg);
        return -1;
    }
    if (blockdev_bitmap_merge(dst, bm->name, src, bm->name, &err) < 0) {
        report("Failed to populate bitmap %s: %s", bm->name, err.msg);
        blockdev_bitmap_remove(dst, bm->name, NULL);
        return -1;
    }
    return 0;
}

int convert_copy_bitmaps(struct blockdev *src, struct blockdev *dst, bool skip_broken)
{
    struct blockdev_bitmap_info *list;
    int n, ret = 0;
    if (list_bitmaps(src, &list, &n) < 0) {
        return -1;
    }
    for (int i = 0; i < n && ret == 0; i++) {
        if (!list[i].persistent) {
            continue;
        }
        if (skip_broken && list[i].inconsistent) {
            report("warning: Skipping inconsistent bitmap '%s'", list[i].name);
            continue;
        }
        ret = copy_one(src, dst, &list[i]);
    }
    blockdev_bitmap_list_free(list, n);
    return ret;
}
