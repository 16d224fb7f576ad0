/* libFuzzer target: any bytes as a qcow2 image; check it, repair it (-r all),
 * then write, discard and zero across it. Repair and the write paths meet the
 * damaged metadata they must refuse or fix, never follow into a crash (the
 * header-rewrite overflow of the security issue lived here). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "block/blockdev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void write_file(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof(path), "/tmp/cowvisor-fuzz-repair-%d.qcow2", (int)getpid());
    }
    write_file(data, size);
    struct blockdev *bd;
    struct blockdev_open_opts opts = { .format = "qcow2",
                                       .flags = BDEV_CHECK | BDEV_NO_BACKING | BDEV_NO_FLUSH };
    if (blockdev_open(&bd, path, &opts, NULL) == 0) {
        struct blockdev_check_result res;
        blockdev_check(bd, BDEV_FIX_LEAKS | BDEV_FIX_ERRORS, &res, NULL);
        static uint8_t buf[65536];
        uint64_t n = blockdev_size(bd) < sizeof(buf) ? blockdev_size(bd) : sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)i;
        }
        blockdev_pwrite(bd, 0, buf, n, NULL);
        if (n > 4096) {
            blockdev_pwrite(bd, 512, buf, 1000, NULL);
            blockdev_pwrite_zeroes(bd, 1024, n / 2, BDEV_ZERO_MAY_UNMAP, NULL);
            blockdev_discard(bd, 0, n, NULL);
            uint32_t cluster = blockdev_cluster_size(bd);
            blockdev_pwrite_compressed(bd, 0, buf, cluster <= n ? cluster : n, NULL);
        }
        blockdev_flush(bd, NULL);
        blockdev_close(bd);
    }
    unlink(path);
    return 0;
}
