/* Crash consistency: a child process works on an image and is killed with
 * SIGKILL at a random moment; then qemu-img check must find no corruption
 * (leaks are allowed), our repair must leave a clean image, and everything
 * the child flushed before it died must read back.
 *
 * Two workloads: snapshot create / delete / apply mixed with guest writes,
 * and plain guest writes (with and without lazy refcounts). The kill times
 * come from a fixed seed, so a failure can be replayed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "block/qcow2.h"
#include "qcow2_test_util.h"

#define DISK (4u << 20)
#define SNAPSHOT_TRIALS 120
#define WRITE_TRIALS 100

static char dir[] = "/tmp/cowvisor-crash-XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    return run("rm -rf %s", dir);
}

static void sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static void create_image(const char *path, bool lazy, uint32_t cluster_size)
{
    struct qcow2_create_opts o;
    struct error err = { 0 };
    qcow2_create_opts_init(&o);
    o.size = DISK;
    o.lazy_refcounts = lazy;
    o.cluster_size = cluster_size;
    if (qcow2_create(path, &o, &err) < 0) {
        fail_msg("create: %s", err.msg);
    }
}

static struct blockdev *open_image(const char *path, unsigned flags)
{
    struct blockdev *bd;
    struct blockdev_open_opts o = { .flags = flags };
    struct error err = { 0 };
    if (blockdev_open(&bd, path, &o, &err) < 0) {
        fail_msg("open %s: %s", path, err.msg);
    }
    return bd;
}

/* The child: snapshot operations and guest writes until it is killed. */
static void snapshot_workload(const char *path, uint64_t seed)
{
    struct blockdev *bd = open_image(path, 0);
    struct error err = { 0 };
    uint8_t *buf = malloc(256 << 10);
    int next = 0;
    for (;;) {
        uint64_t r = test_rand(&seed);
        struct qcow2_snapshot_info *list;
        int n = 0;
        if (qcow2_snapshot_list(bd, &list, &n, &err) < 0) {
            _exit(3);
        }
        char name[32];
        int ret = 0;
        switch (r % 6) {
        case 0:
            if (n < 6) {
                snprintf(name, sizeof(name), "s%d", next++);
                ret = qcow2_snapshot_create(bd, name, NULL, &err);
            }
            break;
        case 1:
            if (n > 0) {
                ret = qcow2_snapshot_delete(bd, list[(r >> 8) % n].id, &err);
            }
            break;
        case 2:
            if (n > 0) {
                ret = qcow2_snapshot_apply(bd, list[(r >> 8) % n].id, &err);
            }
            break;
        default: {
            uint64_t len = 1 + (r >> 8) % (256 << 10);
            uint64_t off = (r >> 32) % (DISK - len);
            fill_pattern(buf, len, r);
            ret = blockdev_pwrite(bd, off, buf, len, &err);
        }
        }
        qcow2_snapshot_list_free(list, n);
        if (ret < 0) {
            fprintf(stderr, "child: %s\n", err.msg);
            _exit(4);
        }
    }
}

static void expect_qemu_consistent(const char *path, int trial)
{
    /* exit status 0: clean, 3: leaks only; 2: corruption */
    int st = run("qemu-img check -q '%s' >/dev/null 2>&1", path);
    if (st != 0 && st != 3) {
        run("qemu-img check '%s' >&2", path);
        fail_msg("trial %d: qemu-img check found corruption (status %d)", trial, st);
    }
}

static void repair_and_verify(const char *path, int trial)
{
    struct blockdev *bd = open_image(path, BDEV_CHECK);
    struct qcow2_check_result res;
    struct error err = { 0 };
    if (qcow2_check(bd, QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS, &res, &err) < 0) {
        fail_msg("trial %d: repair: %s", trial, err.msg);
    }
    blockdev_close(bd);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
    if (run("qemu-img check -q '%s'", path) != 0) {
        fail_msg("trial %d: not clean after our repair", trial);
    }
}

static pid_t start_child(void (*work)(const char *, uint64_t, int), const char *path,
                         uint64_t seed, int fd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        work(path, seed, fd);
        _exit(0);
    }
    return pid;
}

static void snapshot_child(const char *path, uint64_t seed, int fd)
{
    snapshot_workload(path, seed);
}

static void kill_child(pid_t pid, int trial)
{
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) {
        fail_msg("trial %d: the child ended by itself (status %d)", trial, WEXITSTATUS(st));
    }
}

static void test_snapshot_operations_killed(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/snap.qcow2", dir);
    create_image(path, false, 65536);
    uint64_t seed = 0x5eed5eedULL;
    int with_snapshots = 0;
    for (int trial = 0; trial < SNAPSHOT_TRIALS; trial++) {
        pid_t pid = start_child(snapshot_child, path, test_rand(&seed) | 1, -1);
        sleep_us(2000 + (long)(test_rand(&seed) % 40000));
        kill_child(pid, trial);
        expect_qemu_consistent(path, trial);
        repair_and_verify(path, trial);
        with_snapshots += run("qemu-img snapshot -l '%s' | grep -q '^[0-9]'", path) == 0;
    }
    /* how much the workload got done (information, not a verdict) */
    printf("%d of %d trials left snapshots behind\n", with_snapshots, SNAPSHOT_TRIALS);
    assert_int_equal(run("qemu-img snapshot -l '%s' >/dev/null", path), 0);
}

/* One record per write: sent before it starts and again after its flush. */
struct write_note {
    uint32_t done;
    uint32_t len;
    uint64_t off;
    uint64_t seed;
};

static void write_child(const char *path, uint64_t seed, int fd)
{
    struct blockdev *bd = open_image(path, 0);
    struct error err = { 0 };
    uint8_t *buf = malloc(300 << 10);
    for (;;) {
        struct write_note n = { 0 };
        uint64_t r = test_rand(&seed);
        n.len = (uint32_t)(1 + r % (300 << 10));
        n.off = (r >> 24) % (DISK - n.len);
        n.seed = test_rand(&seed);
        if (write(fd, &n, sizeof(n)) != sizeof(n)) {
            _exit(5);
        }
        fill_pattern(buf, n.len, n.seed);
        if (blockdev_pwrite(bd, n.off, buf, n.len, &err) < 0 || blockdev_flush(bd, &err) < 0) {
            _exit(6);
        }
        n.done = 1;
        if (write(fd, &n, sizeof(n)) != sizeof(n)) {
            _exit(5);
        }
    }
}

static void test_guest_writes_killed(void **state)
{
    char path[512], raw[512];
    snprintf(path, sizeof(path), "%s/writes.qcow2", dir);
    snprintf(raw, sizeof(raw), "%s/writes.raw", dir);
    uint8_t *model = calloc(1, DISK);
    uint8_t *uncertain = calloc(1, DISK);
    uint8_t *buf = malloc(300 << 10);
    uint8_t *disk = malloc(DISK);
    uint64_t seed = 0xc0ffeeULL;
    for (int trial = 0; trial < WRITE_TRIALS; trial++) {
        /* A fresh image every 25 trials: lazy refcounts or not, 64k or 4k clusters. */
        int block = trial / 25;
        bool lazy = block % 2;
        if (trial % 25 == 0) {
            create_image(path, lazy, block == 0 || block == 3 ? 65536 : 4096);
            memset(model, 0, DISK);
        }
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = start_child(write_child, path, test_rand(&seed) | 1, fds[1]);
        close(fds[1]);
        sleep_us(2000 + (long)(test_rand(&seed) % 30000));
        kill_child(pid, trial);
        struct write_note n, pending = { .done = 1 };
        while (read(fds[0], &n, sizeof(n)) == sizeof(n)) {
            if (n.done) {
                fill_pattern(buf, n.len, n.seed);
                memcpy(model + n.off, buf, n.len);
            }
            pending = n;
        }
        close(fds[0]);
        /* Lazy refcounts: the image is dirty; our open repairs it first. */
        if (lazy) {
            blockdev_close(open_image(path, 0));
        }
        expect_qemu_consistent(path, trial);
        repair_and_verify(path, trial);
        assert_int_equal(run("qemu-img convert -O raw '%s' '%s'", path, raw), 0);
        FILE *f = fopen(raw, "rb");
        assert_non_null(f);
        assert_int_equal(fread(disk, 1, DISK, f), DISK);
        fclose(f);
        /* The write in flight at the kill may have landed, in part or whole. */
        memset(uncertain, 0, DISK);
        if (!pending.done) {
            fill_pattern(uncertain + pending.off, pending.len, pending.seed);
        }
        for (uint64_t i = 0; i < DISK; i++) {
            bool in_flight = !pending.done && i >= pending.off && i < pending.off + pending.len;
            if (in_flight && disk[i] == uncertain[i]) {
                model[i] = disk[i];
            } else if (disk[i] != model[i]) {
                fail_msg("trial %d: flushed data lost at offset %llu", trial,
                         (unsigned long long)i);
            }
        }
    }
    free(model);
    free(uncertain);
    free(buf);
    free(disk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_operations_killed),
        cmocka_unit_test(test_guest_writes_killed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
