/* The library's warnings (an image marked corrupt, a probed raw image, a
 * check's findings) reach the sink the program chose and nothing else: a
 * daemon's stderr stays untouched. Unset, the sink is the logger. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/warning.h"

static char captured[8192];

static void capture(const char *text, void *opaque)
{
    (void)opaque;
    strncat(captured, text, sizeof(captured) - strlen(captured) - 1);
}

/* What the program's stderr received while the library worked. */
struct stderr_watch {
    int saved;
    FILE *file;
};

static void watch_stderr(struct stderr_watch *w)
{
    fflush(stderr);
    w->file = tmpfile();
    assert_non_null(w->file);
    w->saved = dup(STDERR_FILENO);
    assert_true(dup2(fileno(w->file), STDERR_FILENO) >= 0);
}

static char *stderr_text(struct stderr_watch *w)
{
    static char text[4096];
    fflush(stderr);
    dup2(w->saved, STDERR_FILENO);
    close(w->saved);
    rewind(w->file);
    size_t n = fread(text, 1, sizeof(text) - 1, w->file);
    text[n] = '\0';
    fclose(w->file);
    return text;
}

static int setup(void **state)
{
    (void)state;
    captured[0] = '\0';
    warning_set_sink(capture, NULL);
    return 0;
}

static void make_image(char *path, const char *format, uint64_t size)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.format = format;
    o.size = size;
    struct error err = { 0 };
    assert_int_equal(blockdev_create(path, &o, &err), 0);
}

static struct blockdev *open_image(const char *path, const char *format, unsigned flags)
{
    struct blockdev *bd;
    struct error err = { 0 };
    struct blockdev_open_opts opts = { .format = format, .flags = flags };
    assert_int_equal(blockdev_open(&bd, path, &opts, &err), 0);
    return bd;
}

static void test_corruption_marking(void **state)
{
    (void)state;
    char path[] = "/tmp/cowvisor-warn-XXXXXX";
    make_image(path, "qcow2", 1 << 20);
    struct blockdev *bd = open_image(path, "qcow2", 0);
    struct stderr_watch w;
    watch_stderr(&w);
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    assert_int_equal(qcow2_signal_corruption(s, NULL, "test entry %d", 7), -EIO);
    pthread_mutex_unlock(&s->lock);
    assert_string_equal(stderr_text(&w), "");
    assert_string_equal(captured, "qcow2: Marking image as corrupt: test entry 7; further corruption "
                        "events will be suppressed\n");
    blockdev_close(bd);
    unlink(path);
}

static void test_probed_raw(void **state)
{
    (void)state;
    char path[] = "/tmp/cowvisor-warn-XXXXXX";
    make_image(path, "raw", 1 << 20);
    struct blockdev *bd = open_image(path, NULL, 0);
    struct stderr_watch w;
    watch_stderr(&w);
    blockdev_warn_probed_raw(bd, path);
    assert_string_equal(stderr_text(&w), "");
    assert_non_null(strstr(captured, "WARNING: Image format was not specified for '"));
    assert_non_null(strstr(captured, "probing guessed raw.\n"));
    blockdev_close(bd);
    unlink(path);
}

/* A cluster past the image's end counted as used: the check names the leak. */
static void test_check_report(void **state)
{
    (void)state;
    char path[] = "/tmp/cowvisor-warn-XXXXXX";
    make_image(path, "qcow2", 1 << 20);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint64_t table, block;
    assert_int_equal(pread(fd, &table, 8, 48), 8);
    assert_int_equal(pread(fd, &block, 8, (off_t)be64_to_cpu(table)), 8);
    uint8_t one[2] = { 0, 1 };    /* a 16-bit refcount of 1, big-endian */
    assert_int_equal(pwrite(fd, one, 2, (off_t)be64_to_cpu(block) + 2 * 9), 2);
    assert_int_equal(ftruncate(fd, 10 << 16), 0);
    close(fd);
    struct blockdev *bd = open_image(path, "qcow2", BDEV_READ_ONLY | BDEV_CHECK);
    struct stderr_watch w;
    watch_stderr(&w);
    struct blockdev_check_result res;
    struct error err = { 0 };
    assert_int_equal(blockdev_check(bd, 0, &res, &err), 0);
    assert_string_equal(stderr_text(&w), "");
    assert_int_equal(res.leaks, 1);
    assert_string_equal(captured, "Leaked cluster 9 refcount=1 reference=0\n");
    blockdev_close(bd);
    unlink(path);
}

/* No sink chosen: the logger's lines, one per line of the text. */
static void test_default_is_logger(void **state)
{
    (void)state;
    warning_set_sink(NULL, NULL);
    log_set_level(LOG_WARN);
    struct stderr_watch w;
    watch_stderr(&w);
    warning_print("first %d\nsecond", 1);
    assert_string_equal(stderr_text(&w), "warning: first 1\nwarning: second\n");
    assert_string_equal(captured, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_corruption_marking, setup),
        cmocka_unit_test_setup(test_probed_raw, setup),
        cmocka_unit_test_setup(test_check_report, setup),
        cmocka_unit_test_setup(test_default_is_logger, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
