/* hostfile_flush after a failed fdatasync: the kernel reports a writeback
 * error once, so a second fdatasync succeeds over writes that never reached
 * the disk. Every later flush must fail, as QEMU's file-posix does. The
 * fdatasync calls are wrapped (--wrap) so that one fails on demand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/hostfile.h"

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

static int fail_next_sync;      /* the next fdatasync fails with EIO */
static int syncs;

int __wrap_fdatasync(int fd)
{
    syncs++;
    if (fail_next_sync) {
        fail_next_sync = 0;
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

/* A new empty file from the mkstemp template path, opened writable. */
static struct hostfile *open_temp(char *path)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct hostfile *f = NULL;
    struct error err = { 0 };
    assert_int_equal(hostfile_open(&f, path, false, false, &err), 0);
    return f;
}

static void test_failed_sync_fails_every_later_flush(void **state)
{
    (void)state;
    char path[] = "/tmp/cowvisor-hostfile-flush-XXXXXX";
    struct hostfile *f = open_temp(path);
    char buf[4096] = { 1 };
    syncs = 0;
    assert_int_equal(hostfile_pwrite(f, 0, buf, sizeof(buf)), 0);
    fail_next_sync = 1;
    assert_int_equal(hostfile_flush(f), -EIO);
    /* Nothing written since: the retry must not report the data durable. */
    assert_int_equal(hostfile_flush(f), -EIO);
    assert_int_equal(hostfile_pwrite(f, 4096, buf, sizeof(buf)), 0);
    assert_int_equal(hostfile_flush(f), -EIO);
    assert_int_equal(syncs, 1);     /* the failed one; later ones know better */
    hostfile_close(f);
    unlink(path);
}

static void test_good_syncs_are_not_affected(void **state)
{
    (void)state;
    char path[] = "/tmp/cowvisor-hostfile-flush-XXXXXX";
    struct hostfile *f = open_temp(path);
    char buf[4096] = { 2 };
    syncs = 0;
    assert_int_equal(hostfile_pwrite(f, 0, buf, sizeof(buf)), 0);
    assert_int_equal(hostfile_flush(f), 0);
    assert_int_equal(hostfile_flush(f), 0);     /* nothing new: skipped */
    assert_int_equal(syncs, 1);
    hostfile_close(f);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_syncs_are_not_affected),
        cmocka_unit_test(test_failed_sync_fails_every_later_flush),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
