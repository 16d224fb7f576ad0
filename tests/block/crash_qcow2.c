/* Crash consistency: a child process works on an image and is killed with
 * SIGKILL at a random moment; then qemu-img check must find no corruption
 * (leaks are allowed, and after a snapshot operation COPIED flags out of
 * step, as QEMU leaves them), our repair must leave a clean image, and everything
 * the child flushed before it died must read back. With lazy refcounts the
 * image is dirty after the kill: opening it with our driver repairs it first.
 *
 * Two workloads, each with and without lazy refcounts: snapshot create /
 * delete / apply mixed with guest writes (an interrupted snapshot operation
 * must have happened entirely or not at all), and plain guest writes. The kill times
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
#define SNAPSHOT_TRIALS 60
#define WRITE_TRIALS 80

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
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
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

static void expect_qemu_consistent(const char *path, int trial)
{
    /* exit status 0: clean, 3: leaks only; 2: corruption */
    int st = run("qemu-img check -q '%s' >/dev/null 2>&1", path);
    if (st != 0 && st != 3) {
        run("qemu-img check '%s' >&2", path);
        fail_msg("trial %d: qemu-img check found corruption (status %d)", trial, st);
    }
}

/* Snapshot create and delete update refcounts and COPIED flags in place, in
 * QEMU's order (qcow2_snapshot_refs.c): a kill between the two leaves, as
 * with QEMU, a COPIED flag out of step with a refcount (harmless: at worst a
 * copy on the next write; check -r all repairs it), besides leaks. */
static void expect_qemu_consistent_but_copied(const char *path, int trial)
{
    int st = run("qemu-img check -q '%s' >/dev/null 2>&1", path);
    if (st != 0 && st != 3 &&
        run("qemu-img check '%s' 2>&1 | grep '^ERROR' | grep -qv 'ERROR OFLAG_COPIED'", path) == 0) {
        run("qemu-img check '%s' >&2", path);
        fail_msg("trial %d: qemu-img check found corruption (status %d)", trial, st);
    }
}

static void repair_and_verify(const char *path, int trial)
{
    struct blockdev *bd = open_image(path, BDEV_CHECK);
    struct blockdev_check_result res;
    struct error err = { 0 };
    if (qcow2_check(bd, BDEV_FIX_LEAKS | BDEV_FIX_ERRORS, &res, &err) < 0) {
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

static void kill_child(pid_t pid, int trial)
{
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) {
        fail_msg("trial %d: the child ended by itself (status %d)", trial, WEXITSTATUS(st));
    }
}

/* The snapshot workload tells the parent each operation twice: before it
 * starts and once it is complete (and flushed). */
enum op { OP_WRITE, OP_CREATE, OP_DELETE, OP_APPLY };

struct snap_note {
    uint32_t op;
    uint32_t done;
    uint64_t off, len, seed;
    char name[24];
};

static int g_trial;

static void note(int fd, const struct snap_note *n)
{
    if (write(fd, n, sizeof(*n)) != sizeof(*n)) {
        _exit(5);
    }
}

/* The child: snapshot operations and guest writes until it is killed. */
static void snapshot_child(const char *path, uint64_t seed, int fd)
{
    struct blockdev *bd = open_image(path, 0);
    struct error err = { 0 };
    uint8_t *buf = malloc(256 << 10);
    for (int k = 0;; k++) {
        uint64_t r = test_rand(&seed);
        struct blockdev_snapshot_info *list;
        int n = 0;
        if (qcow2_snapshot_list(bd, &list, &n, &err) < 0) {
            _exit(3);
        }
        struct snap_note nt = { 0 };
        int ret = 0;
        nt.op = r % 6 < 3 ? (uint32_t)(r % 6) + 1 : OP_WRITE;
        if ((nt.op == OP_CREATE && n >= 6) || (nt.op != OP_CREATE && nt.op != OP_WRITE && !n)) {
            nt.op = OP_WRITE;
        }
        if (nt.op == OP_CREATE) {
            snprintf(nt.name, sizeof(nt.name), "t%d.%d", g_trial, k);
        } else if (nt.op != OP_WRITE) {
            snprintf(nt.name, sizeof(nt.name), "%s", list[(r >> 8) % n].name);
        } else {
            nt.len = 1 + (r >> 8) % (256 << 10);
            nt.off = (r >> 32) % (DISK - nt.len);
            nt.seed = test_rand(&seed);
        }
        blockdev_snapshot_list_free(list, n);
        note(fd, &nt);
        switch (nt.op) {
        case OP_CREATE: ret = qcow2_snapshot_create(bd, nt.name, NULL, &err); break;
        case OP_DELETE: ret = qcow2_snapshot_delete(bd, nt.name, &err); break;
        case OP_APPLY: ret = qcow2_snapshot_apply(bd, nt.name, &err); break;
        default:
            fill_pattern(buf, nt.len, nt.seed);
            ret = blockdev_pwrite(bd, nt.off, buf, nt.len, &err);
        }
        if (ret == 0) {
            ret = blockdev_flush(bd, &err);
        }
        if (ret < 0) {
            fprintf(stderr, "child: %s\n", err.msg);
            _exit(4);
        }
        nt.done = 1;
        note(fd, &nt);
    }
}

/* What the parent knows the image holds: the disk and each snapshot's disk. */
struct model {
    uint8_t *active;
    int count;
    char names[8][24];
    uint8_t *snaps[8];
};

static int model_find(const struct model *m, const char *name)
{
    for (int i = 0; i < m->count; i++) {
        if (!strcmp(m->names[i], name)) {
            return i;
        }
    }
    return -1;
}

static void model_apply(struct model *m, const struct snap_note *n, uint8_t *buf)
{
    int i = n->op == OP_WRITE ? -1 : model_find(m, n->name);
    switch (n->op) {
    case OP_WRITE:
        fill_pattern(buf, n->len, n->seed);
        memcpy(m->active + n->off, buf, n->len);
        break;
    case OP_CREATE:
        assert_true(m->count < 8);
        snprintf(m->names[m->count], sizeof(m->names[0]), "%s", n->name);
        m->snaps[m->count] = malloc(DISK);
        memcpy(m->snaps[m->count++], m->active, DISK);
        break;
    case OP_DELETE:
        assert_true(i >= 0);
        free(m->snaps[i]);
        m->count--;
        memmove(&m->snaps[i], &m->snaps[i + 1], (size_t)(m->count - i) * sizeof(m->snaps[0]));
        memmove(&m->names[i], &m->names[i + 1], (size_t)(m->count - i) * sizeof(m->names[0]));
        break;
    default:
        assert_true(i >= 0);
        memcpy(m->active, m->snaps[i], DISK);
    }
}

static void read_disk(const char *path, const char *snapshot, uint8_t *out)
{
    char raw[600];
    snprintf(raw, sizeof(raw), "%s.raw", path);
    char opt[100] = "";
    if (snapshot) {
        snprintf(opt, sizeof(opt), "-l 'snapshot.name=%s'", snapshot);
    }
    assert_int_equal(run("qemu-img convert %s -O raw '%s' '%s'", opt, path, raw), 0);
    FILE *f = fopen(raw, "rb");
    assert_non_null(f);
    assert_int_equal(fread(out, 1, DISK, f), DISK);
    fclose(f);
}

/* The image's snapshot names (read by us; qemu-img check has vouched for the image). */
struct names {
    int count;
    char name[16][24];
};

static void image_snapshots(const char *path, struct names *out)
{
    struct blockdev *bd = open_image(path, BDEV_READ_ONLY);
    struct blockdev_snapshot_info *list;
    struct error err = { 0 };
    int n;
    assert_int_equal(qcow2_snapshot_list(bd, &list, &n, &err), 0);
    assert_true(n <= 16);
    out->count = n;
    for (int i = 0; i < n; i++) {
        snprintf(out->name[i], sizeof(out->name[i]), "%s", list[i].name);
    }
    blockdev_snapshot_list_free(list, n);
    blockdev_close(bd);
}

static bool has_name(const struct names *l, const char *name)
{
    for (int i = 0; i < l->count; i++) {
        if (!strcmp(l->name[i], name)) {
            return true;
        }
    }
    return false;
}

static void test_snapshot_operations_killed(void **state)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/snap.qcow2", dir);
    struct model m = { .active = calloc(1, DISK) };
    uint8_t *buf = malloc(256 << 10), *disk = malloc(DISK);
    uint64_t seed = 0x5eed5eedULL;
    int snapshot_ops = 0, interrupted = 0;
    for (int trial = 0; trial < SNAPSHOT_TRIALS; trial++) {
        /* the second half on a fresh image with lazy refcounts */
        bool lazy = trial >= SNAPSHOT_TRIALS / 2;
        if (trial == 0 || trial == SNAPSHOT_TRIALS / 2) {
            create_image(path, lazy, 65536);
            for (int i = 0; i < m.count; i++) {
                free(m.snaps[i]);
            }
            m.count = 0;
            memset(m.active, 0, DISK);
        }
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        g_trial = trial;
        pid_t pid = start_child(snapshot_child, path, test_rand(&seed) | 1, fds[1]);
        close(fds[1]);
        sleep_us(2000 + (long)(test_rand(&seed) % 80000));
        kill_child(pid, trial);
        struct snap_note n, pending = { .done = 1 };
        while (read(fds[0], &n, sizeof(n)) == sizeof(n)) {
            if (n.done) {
                model_apply(&m, &n, buf);
                snapshot_ops += n.op != OP_WRITE;
            }
            pending = n;
        }
        close(fds[0]);
        if (lazy) {
            blockdev_close(open_image(path, 0));   /* repairs the dirty image */
        }
        expect_qemu_consistent_but_copied(path, trial);
        repair_and_verify(path, trial);

        /* An interrupted snapshot operation happened entirely or not at all. */
        if (!pending.done && pending.op != OP_WRITE) {
            interrupted++;
            bool took_effect;
            if (pending.op == OP_APPLY) {
                read_disk(path, NULL, disk);
                took_effect = !memcmp(disk, m.snaps[model_find(&m, pending.name)], DISK);
                if (!took_effect && memcmp(disk, m.active, DISK)) {
                    fail_msg("trial %d: interrupted apply left a disk that is neither before "
                             "nor after", trial);
                }
            } else {
                struct names l;
                image_snapshots(path, &l);
                took_effect = has_name(&l, pending.name) == (pending.op == OP_CREATE);
            }
            if (took_effect) {
                model_apply(&m, &pending, buf);
            }
        }
        /* The snapshots are exactly the model's, with the model's content. */
        struct names l;
        image_snapshots(path, &l);
        assert_int_equal(l.count, m.count);
        for (int i = 0; i < m.count; i++) {
            if (!has_name(&l, m.names[i])) {
                fail_msg("trial %d: snapshot %s is missing", trial, m.names[i]);
            }
        }
        read_disk(path, NULL, disk);
        uint64_t lo = pending.off, hi = !pending.done && pending.op == OP_WRITE ?
                                        pending.off + pending.len : 0;
        if (hi) {
            fill_pattern(buf, pending.len, pending.seed);
        }
        for (uint64_t i = 0; i < DISK; i++) {
            if (i >= lo && i < hi && disk[i] == buf[i - lo]) {
                m.active[i] = disk[i];      /* the write in flight landed here */
            } else if (disk[i] != m.active[i]) {
                fail_msg("trial %d: disk differs from the model at %llu", trial,
                         (unsigned long long)i);
            }
        }
        if (m.count) {
            int i = (int)(test_rand(&seed) % (uint64_t)m.count);
            read_disk(path, m.names[i], disk);
            if (memcmp(disk, m.snaps[i], DISK)) {
                fail_msg("trial %d: snapshot %s does not hold what it did", trial, m.names[i]);
            }
        }
    }
    /* how much the workload got done (information, not a verdict) */
    printf("%d snapshot operations completed, %d interrupted\n", snapshot_ops, interrupted);
    for (int i = 0; i < m.count; i++) {
        free(m.snaps[i]);
    }
    free(m.active);
    free(buf);
    free(disk);
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
        /* A fresh image every 20 trials: lazy refcounts or not, 64k or 4k clusters. */
        int block = trial / 20;
        bool lazy = block % 2;
        if (trial % 20 == 0) {
            create_image(path, lazy, block == 0 || block == 3 ? 65536 : 4096);
            memset(model, 0, DISK);
        }
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = start_child(write_child, path, test_rand(&seed) | 1, fds[1]);
        close(fds[1]);
        sleep_us(1000 + (long)(test_rand(&seed) % 15000));
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
