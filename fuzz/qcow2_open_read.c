/* libFuzzer target: any bytes as a qcow2 image file; open it, read it, map
 * it and its dirty bitmaps, write to it, add a bitmap (stored on close).
 * The block layer must answer with errors, never crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "block/blockdev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void map_bitmaps(struct blockdev *bd, uint64_t size)
{
    struct blockdev_bitmap_info *list;
    int n;
    if (blockdev_bitmap_list(bd, &list, &n, NULL) < 0) {
        return;
    }
    for (int i = 0; i < n; i++) {
        uint64_t len = 1;
        bool dirty;
        for (uint64_t off = 0; off < size; off += len) {
            len = size - off;
            if (blockdev_bitmap_status(bd, list[i].name, off, &len, &dirty, NULL) < 0 || !len) {
                break;
            }
        }
    }
    blockdev_bitmap_list_free(list, n);
}

static void exercise(unsigned flags)
{
    struct blockdev *bd;
    struct blockdev_open_opts opts = { .format = "qcow2", .flags = flags | BDEV_NO_BACKING };
    if (blockdev_open(&bd, path, &opts, NULL) < 0) {
        return;
    }
    static uint8_t buf[1 << 20];
    uint64_t size = blockdev_size(bd) < sizeof(buf) ? blockdev_size(bd) : sizeof(buf);
    blockdev_pread(bd, 0, buf, size, NULL);
    if (blockdev_size(bd) > sizeof(buf)) {
        blockdev_pread(bd, blockdev_size(bd) - 4096, buf, 4096, NULL);
    }
    struct block_status st;
    for (uint64_t off = 0; off < size; off += st.len) {
        if (blockdev_block_status(bd, off, size - off, &st, NULL) < 0 || st.len == 0) {
            break;
        }
    }
    map_bitmaps(bd, size);
    if (!(flags & BDEV_READ_ONLY)) {
        struct blockdev_bitmap_add_opts bo = { .granularity = 512, .persistent = true };
        blockdev_bitmap_add(bd, "fuzz", &bo, NULL);
    }
    if (!(flags & BDEV_READ_ONLY) && size >= 8192) {
        blockdev_pwrite(bd, 4096, buf, 4096, NULL);
        blockdev_pwrite_zeroes(bd, 0, 4096, 0, NULL);
        blockdev_discard(bd, 0, size, NULL);
        blockdev_pread(bd, 0, buf, 8192, NULL);
    }
    blockdev_close(bd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof(path), "/tmp/cowvisor-fuzz-%d.qcow2", (int)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    exercise(BDEV_READ_ONLY);
    /* The read-write open mutates the copy: rewrite it first. */
    f = fopen(path, "wb");
    fwrite(data, 1, size, f);
    fclose(f);
    exercise(0);
    unlink(path);
    return 0;
}
