#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/blockdev.h"

static int make_file(char *path, size_t size)
{
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        return -1;
    }
    close(fd);
    return 0;
}

static void test_raw_read_write(void **state)
{
    char path[] = "/tmp/cowvisor-raw-XXXXXX";
    assert_int_equal(make_file(path, 1 << 20), 0);
    struct blockdev *bd;
    struct error err = { 0 };
    struct blockdev_open_opts opts = { .format = "raw" };
    assert_int_equal(blockdev_open(&bd, path, &opts, &err), 0);
    assert_string_equal(blockdev_format(bd), "raw");
    assert_true(blockdev_size(bd) == 1 << 20);

    uint8_t buf[4096], back[4096];
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, 1000, buf, sizeof(buf), &err), 0);
    assert_int_equal(blockdev_pread(bd, 1000, back, sizeof(back), &err), 0);
    assert_memory_equal(buf, back, sizeof(buf));

    assert_int_equal(blockdev_pwrite_zeroes(bd, 1000, 100, 0, &err), 0);
    assert_int_equal(blockdev_pread(bd, 1000, back, 100, &err), 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(back[i], 0);
    }
    /* Requests past the end fail with a message, the data stays. */
    assert_int_equal(blockdev_pread(bd, (1 << 20) - 10, back, 20, &err), -EIO);
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(blockdev_pwrite(bd, 1 << 20, buf, 1, &err), -EIO);
    assert_int_equal(blockdev_flush(bd, &err), 0);
    blockdev_close(bd);

    /* Read-only opens refuse writes. */
    opts.flags = BDEV_READ_ONLY;
    assert_int_equal(blockdev_open(&bd, path, &opts, &err), 0);
    assert_int_equal(blockdev_pwrite(bd, 0, buf, 1, &err), -EACCES);
    blockdev_close(bd);
    unlink(path);
}

static void test_open_errors(void **state)
{
    struct blockdev *bd;
    struct error err = { 0 };
    assert_int_equal(blockdev_open(&bd, "/nonexistent/x.img", NULL, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/x.img"));
    struct blockdev_open_opts opts = { .format = "vmdk" };
    assert_int_equal(blockdev_open(&bd, "/dev/null", &opts, &err), -EINVAL);
    assert_string_equal(err.msg, "Unknown driver 'vmdk'");
}

static void test_backing_path(void **state)
{
    char *p = blockdev_backing_path("/a/b/top.qcow2", "base.qcow2");
    assert_string_equal(p, "/a/b/base.qcow2");
    free(p);
    p = blockdev_backing_path("top.qcow2", "base.qcow2");
    assert_string_equal(p, "base.qcow2");
    free(p);
    p = blockdev_backing_path("/a/top.qcow2", "/abs/base.raw");
    assert_string_equal(p, "/abs/base.raw");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_read_write),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_backing_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
