/* Block jobs (commit, stream, backup) on a disk that a writer thread keeps
 * writing: the result is checked against a model of what the disk holds,
 * by qemu-img check, and against qemu-img's own commit/rebase/convert with
 * qemu-img compare. Also the verbs, pause, cancel and an injected error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "block/block_job.h"
#include "block/blockdev.h"
#include "block/blockdev_top_ranges.h"
#include "qcow2_test_util.h"

#define SIZE (4u << 20)
#define MB (1u << 20)

static char dir[] = "/tmp/block-job-XXXXXX";

/* The host: one disk; the writer thread is its user (drained with a lock). */
struct disk {
    struct blockdev *bd;
    int replaced;
};
static pthread_rwlock_t users = PTHREAD_RWLOCK_INITIALIZER;

static struct blockdev *disk_top(void *opaque)
{
    return ((struct disk *)opaque)->bd;
}

static void drain_begin(void *opaque)
{
    pthread_rwlock_wrlock(&users);
}

static void drain_end(void *opaque)
{
    pthread_rwlock_unlock(&users);
}

static int disk_replace(void *opaque, const char *filename, const char *format, struct error *err)
{
    struct disk *d = opaque;
    blockdev_close(d->bd);
    d->bd = NULL;
    struct blockdev_open_opts o = { .format = format };
    d->replaced++;
    return blockdev_open(&d->bd, filename, &o, err);
}

static struct block_job_host host_of(struct disk *d)
{
    return (struct block_job_host){ .top = disk_top, .drain_begin = drain_begin, .drain_end = drain_end,
                                    .replace = disk_replace, .opaque = d };
}

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

/* base: 0-1M pattern 1; mid: 1M-2M pattern 2; top: 2M-2.5M pattern 3,
 * zeros written at 3M-3.5M in mid. model gets what the chain shows. */
static void make_chain(uint8_t *model)
{
    assert_int_equal(run("cd %s && rm -f *.qcow2 && cp pristine/*.qcow2 .", dir), 0);
    memset(model, 0, SIZE);
    memset(model, 1, MB);
    memset(model + MB, 2, MB);
    memset(model + 2 * MB, 3, MB / 2);
    memset(model + 3 * MB + MB / 2, 7, MB / 2);
}

static void open_disk(struct disk *d, const char *name)
{
    struct error err = { 0 };
    struct blockdev_open_opts o = { .format = "qcow2" };
    d->replaced = 0;
    assert_int_equal(blockdev_open(&d->bd, path(name), &o, &err), 0);
}

/* The chain copied fresh, its model, and the disk open on its top. */
static uint8_t *begin(struct disk *d)
{
    uint8_t *model = malloc(SIZE);
    make_chain(model);
    open_disk(d, "top.qcow2");
    return model;
}

static struct block_job *start(struct disk *d, const struct block_job_params *p)
{
    static struct block_job_host h;
    struct block_job *job;
    struct error err = { 0 };
    h = host_of(d);
    if (block_job_start(&job, p, &h, &err) < 0) {
        fail_msg("block_job_start: %s", err.msg);
    }
    return job;
}

/* A new empty qcow2 image of the disk's size as p's backup target. */
static void new_target(const char *name, struct block_job_params *p)
{
    struct error err = { 0 };
    struct blockdev_create_opts co;
    blockdev_create_opts_init(&co);
    co.size = SIZE;
    assert_int_equal(blockdev_create(path(name), &co, &err), 0);
    struct blockdev_open_opts o = { .format = "qcow2" };
    assert_int_equal(blockdev_open(&p->target, path(name), &o, &err), 0);
}

static void check_contents(struct blockdev *bd, const uint8_t *model)
{
    uint8_t *buf = malloc(SIZE);
    struct error err = { 0 };
    assert_int_equal(blockdev_pread(bd, 0, buf, SIZE, &err), 0);
    for (uint32_t off = 0; off < SIZE; off += 4096) {
        if (memcmp(buf + off, model + off, 4096) != 0) {
            fail_msg("contents differ at %u: %u, expected %u", off, buf[off], model[off]);
        }
    }
    free(buf);
}

/* Takes events until the job reaches want; returns the statuses seen as
 * a string ("running ready ...") in seen. */
static void wait_status(struct block_job *job, enum block_job_status want, char *seen, size_t n)
{
    struct block_job_info info;
    for (int tries = 0; tries < 2000; tries++) {
        struct block_job_event ev[8];
        int k = block_job_take_events(job, ev, 8);
        for (int i = 0; i < k && seen; i++) {
            size_t used = strlen(seen);
            snprintf(seen + used, n - used, "%s%s%s", used ? " " : "", ev[i].error_event ? "ERROR " : "",
                     block_job_status_name(ev[i].status));
        }
        if (k > 0) {
            continue;
        }
        block_job_info(job, &info);
        if (info.status == want) {
            return;
        }
        block_job_run_pending(job);
        struct pollfd p = { block_job_event_fd(job), POLLIN, 0 };
        poll(&p, 1, 10);
    }
    fail_msg("job stuck in %s waiting for %s", block_job_status_name(info.status), block_job_status_name(want));
}

/* Writes small patterns at pseudo-random offsets until told to stop, into
 * the disk and the model (a lock keeps both in step). */
struct writer {
    struct disk *d;
    uint8_t *model;
    volatile bool stop;
    int writes;
    pthread_t thread;
};

static void *writer_thread(void *opaque)
{
    struct writer *w = opaque;
    uint64_t seed = 42;
    uint8_t buf[8192];
    while (!w->stop) {
        uint64_t off = test_rand(&seed) % (SIZE / 4096) * 4096;
        size_t len = (test_rand(&seed) % 2 + 1) * 4096;
        if (off + len > SIZE) {
            len = SIZE - off;
        }
        memset(buf, 0x40 + w->writes % 64, len);
        struct error err = { 0 };
        pthread_rwlock_rdlock(&users);
        if (blockdev_pwrite(w->d->bd, off, buf, len, &err) < 0) {
            fprintf(stderr, "writer: %s\n", err.msg);
            abort();
        }
        memcpy(w->model + off, buf, len);
        pthread_rwlock_unlock(&users);
        w->writes++;
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void writer_start(struct writer *w, struct disk *d, uint8_t *model)
{
    *w = (struct writer){ .d = d, .model = model };
    assert_int_equal(pthread_create(&w->thread, NULL, writer_thread, w), 0);
}

static void writer_stop(struct writer *w)
{
    w->stop = true;
    pthread_join(w->thread, NULL);
    assert_true(w->writes > 10);
}

static struct block_job_params params(enum block_job_type t, int top, int base, uint64_t speed)
{
    struct block_job_params p = { .type = t, .top_depth = top, .base_depth = base, .speed = speed,
                                  .auto_finalize = true, .auto_dismiss = true };
    snprintf(p.id, sizeof(p.id), "job0");
    return p;
}

/* qemu-img's result of the same operation on a copy of the chain. */
static void reference_copy(void)
{
    assert_int_equal(run("cd %s && rm -rf ref && mkdir ref && cp base.qcow2 mid.qcow2 top.qcow2 ref/", dir), 0);
}

static void test_stream_with_writes(void **state)
{
    struct disk d;
    uint8_t *model = begin(&d);
    struct block_job_params p = params(BLOCK_JOB_STREAM, 0, 3, 8 * MB);
    struct writer w;
    writer_start(&w, &d, model);
    struct block_job *job = start(&d, &p);
    char seen[512] = "";
    wait_status(job, JOB_STATUS_NULL, seen, sizeof(seen));
    writer_stop(&w);
    assert_string_equal(seen, "created running waiting pending concluded null");
    block_job_free(job);
    assert_int_equal(d.replaced, 1);
    assert_null(blockdev_backing(d.bd));        /* streamed to the end: no backing file */
    check_contents(d.bd, model);
    blockdev_close(d.bd);
    assert_int_equal(run("qemu-img check -q %s/top.qcow2", dir), 0);
    assert_int_equal(run("qemu-img info %s/top.qcow2 | grep -q 'backing file'", dir), 1);
    free(model);
}

/* Intermediate commit (mid into base) without writes, against qemu-img
 * commit of mid on a copy; the guest-visible disk is unchanged. */
static void test_commit_intermediate(void **state)
{
    uint8_t *model = malloc(SIZE);
    struct disk d;
    make_chain(model);
    reference_copy();
    open_disk(&d, "top.qcow2");
    struct block_job_params p = params(BLOCK_JOB_COMMIT, 1, 2, 0);
    struct block_job *job = start(&d, &p);
    wait_status(job, JOB_STATUS_NULL, NULL, 0);
    block_job_free(job);
    check_contents(d.bd, model);
    assert_string_equal(blockdev_filename(blockdev_backing(d.bd)) + strlen(dir) + 1, "base.qcow2");
    blockdev_close(d.bd);
    assert_int_equal(run("cd %s/ref && qemu-img commit -q mid.qcow2 && "
                         "qemu-img compare -q base.qcow2 ../base.qcow2 && "
                         "qemu-img rebase -u -b base.qcow2 -F qcow2 top.qcow2 && "
                         "qemu-img compare -q top.qcow2 ../top.qcow2 && qemu-img check -q ../base.qcow2 && "
                         "qemu-img check -q ../top.qcow2", dir), 0);
    free(model);
}

/* Active commit while the writer writes: ready, then complete switches
 * the disk to base, which holds everything. */
static void test_commit_active_with_writes(void **state)
{
    struct disk d;
    uint8_t *model = begin(&d);
    struct block_job_params p = params(BLOCK_JOB_COMMIT, 0, 2, 0);
    struct writer w;
    writer_start(&w, &d, model);
    struct block_job *job = start(&d, &p);
    char seen[512] = "";
    wait_status(job, JOB_STATUS_READY, seen, sizeof(seen));
    struct timespec ts = { 0, 100000000 };
    nanosleep(&ts, NULL);                       /* writes after ready are mirrored too */
    writer_stop(&w);
    struct error err = { 0 };
    assert_int_equal(block_job_complete(job, &err), 0);
    wait_status(job, JOB_STATUS_NULL, seen, sizeof(seen));
    assert_string_equal(seen, "created running ready waiting pending concluded null");
    block_job_free(job);
    assert_string_equal(blockdev_filename(d.bd) + strlen(dir) + 1, "base.qcow2");
    check_contents(d.bd, model);
    blockdev_close(d.bd);
    assert_int_equal(run("qemu-img check -q %s/base.qcow2", dir), 0);
    free(model);
}

/* The backup is the disk as it was at the start, whatever the writer does. */
static void test_backup_point_in_time(void **state)
{
    uint8_t *model = malloc(SIZE), *before = malloc(SIZE);
    struct disk d;
    make_chain(model);
    memcpy(before, model, SIZE);
    reference_copy();
    open_disk(&d, "top.qcow2");
    struct block_job_params p = params(BLOCK_JOB_BACKUP, 0, 0, 8 * MB);
    new_target("backup.qcow2", &p);
    struct writer w;
    struct block_job *job = start(&d, &p);
    writer_start(&w, &d, model);            /* the backup is the disk as the job started */
    wait_status(job, JOB_STATUS_NULL, NULL, 0);
    writer_stop(&w);
    block_job_free(job);
    check_contents(d.bd, model);
    blockdev_close(d.bd);
    struct disk b;
    open_disk(&b, "backup.qcow2");
    check_contents(b.bd, before);
    blockdev_close(b.bd);
    assert_int_equal(run("cd %s && qemu-img check -q backup.qcow2 && qemu-img convert -O qcow2 ref/top.qcow2 "
                         "ref/full.qcow2 && qemu-img compare -q ref/full.qcow2 backup.qcow2", dir), 0);
    free(model);
    free(before);
}

/* The incremental hook: only the granules given are copied. */
static void test_backup_granules(void **state)
{
    struct disk d;
    uint8_t *model = begin(&d);
    struct block_job_params p = params(BLOCK_JOB_BACKUP, 0, 0, 0);
    uint64_t granules[1] = { 1ull << 1 };      /* 1 MiB granules: only [1M, 2M) */
    p.granules = granules;
    p.granule_size = MB;
    new_target("inc.qcow2", &p);
    struct block_job *job = start(&d, &p);
    wait_status(job, JOB_STATUS_NULL, NULL, 0);
    block_job_free(job);
    blockdev_close(d.bd);
    memset(model, 0, MB);
    memset(model + 2 * MB, 0, 2 * MB);
    open_disk(&d, "inc.qcow2");
    check_contents(d.bd, model);
    blockdev_close(d.bd);
    free(model);
}

/* sync=top: only what the top layer itself defines ([2M, 2.5M)) is
 * copied; the target allocates exactly the top's ranges. */
static void test_backup_sync_top(void **state)
{
    struct disk d;
    uint8_t *model = begin(&d);
    struct block_job_params p = params(BLOCK_JOB_BACKUP, 0, 0, 0);
    p.top_only = true;
    new_target("top-only.qcow2", &p);
    struct block_job *job = start(&d, &p);
    wait_status(job, JOB_STATUS_NULL, NULL, 0);
    block_job_free(job);
    blockdev_close(d.bd);
    memset(model, 0, 2 * MB);
    memset(model + 2 * MB + MB / 2, 0, MB + MB / 2);
    open_disk(&d, "top-only.qcow2");
    check_contents(d.bd, model);
    struct blockdev_top_ranges it;
    uint64_t off, len;
    struct error err = { 0 };
    blockdev_top_ranges_init(&it, d.bd);
    assert_int_equal(blockdev_top_ranges_next(&it, &off, &len, &err), 1);
    assert_int_equal(off, 2 * MB);
    assert_int_equal(len, MB / 2);
    assert_int_equal(blockdev_top_ranges_next(&it, &off, &len, &err), 0);
    blockdev_close(d.bd);
    free(model);
}

/* Pause holds the copy; resume finishes it; the verbs refused as QEMU does. */
static void test_pause_resume_verbs(void **state)
{
    struct disk d;
    uint8_t *model = begin(&d);
    struct block_job_params p = params(BLOCK_JOB_STREAM, 0, 2, 2 * MB);
    p.auto_finalize = p.auto_dismiss = false;
    struct block_job *job = start(&d, &p);
    struct error err = { 0 };
    assert_int_equal(block_job_complete(job, &err), -EBUSY);
    assert_string_equal(err.msg, "Job 'job0' in state 'running' cannot accept command verb 'complete'");
    assert_int_equal(block_job_resume(job, &err), -EBUSY);
    assert_string_equal(err.msg, "Can't resume a job that was not paused");
    assert_int_equal(block_job_pause(job, &err), 0);
    assert_int_equal(block_job_pause(job, &err), -EBUSY);
    wait_status(job, JOB_STATUS_PAUSED, NULL, 0);
    struct block_job_info a, b;
    block_job_info(job, &a);
    struct timespec ts = { 0, 200000000 };
    nanosleep(&ts, NULL);
    block_job_info(job, &b);
    assert_true(a.paused && !a.busy);
    assert_int_equal(a.offset, b.offset);
    assert_int_equal(block_job_set_speed(job, 0, &err), 0);
    assert_int_equal(block_job_resume(job, &err), 0);
    char seen[256] = "";
    wait_status(job, JOB_STATUS_PENDING, seen, sizeof(seen));
    assert_string_equal(seen, "running waiting pending");
    assert_int_equal(block_job_dismiss(job, &err), -EBUSY);
    assert_int_equal(block_job_finalize(job, &err), 0);
    wait_status(job, JOB_STATUS_CONCLUDED, NULL, 0);
    block_job_info(job, &b);
    assert_int_equal(b.offset, SIZE);
    assert_int_equal(block_job_dismiss(job, &err), 0);
    block_job_free(job);
    /* Streamed down to mid's base: top now backs onto base directly. */
    assert_string_equal(blockdev_filename(blockdev_backing(d.bd)) + strlen(dir) + 1, "base.qcow2");
    check_contents(d.bd, model);
    blockdev_close(d.bd);
    free(model);
}

/* A cancelled stream leaves the chain as it was and says so. */
static void test_cancel(void **state)
{
    struct disk d;
    uint8_t *model = begin(&d);
    struct block_job_params p = params(BLOCK_JOB_STREAM, 0, 3, 1 * MB);
    struct block_job *job = start(&d, &p);
    struct error err = { 0 };
    assert_int_equal(block_job_cancel(job, false, &err), 0);
    char seen[256] = "";
    wait_status(job, JOB_STATUS_NULL, seen, sizeof(seen));
    assert_string_equal(seen, "created running aborting concluded null");
    struct block_job_info info;
    block_job_info(job, &info);
    assert_string_equal(info.error, "Operation canceled");
    block_job_free(job);
    assert_int_equal(d.replaced, 0);
    assert_non_null(blockdev_backing(d.bd));
    check_contents(d.bd, model);
    blockdev_close(d.bd);
    free(model);
}

/* A read error in the copy fails the job with BLOCK_JOB_ERROR (read) and
 * the disk goes on. */
static void test_read_error(void **state)
{
    uint8_t *model = malloc(SIZE);
    struct disk d = { 0 };
    make_chain(model);
    struct error err = { 0 };
    char opts[512];
    snprintf(opts, sizeof(opts), "driver=qcow2,file.driver=blkdebug,file.inject-error.0.event=read_aio,"
             "file.inject-error.0.errno=5,file.image.filename=%s", path("top.qcow2"));
    assert_int_equal(blockdev_open_spec(&d.bd, NULL, opts, NULL, &err), 0);
    struct block_job_params p = params(BLOCK_JOB_BACKUP, 0, 0, 0);
    new_target("err.qcow2", &p);
    struct block_job *job = start(&d, &p);
    char seen[256] = "";
    wait_status(job, JOB_STATUS_NULL, seen, sizeof(seen));
    assert_string_equal(seen, "created running ERROR aborting concluded null");
    struct block_job_info info;
    block_job_info(job, &info);
    assert_string_equal(info.error, "Input/output error");
    assert_true(info.io_error);
    block_job_free(job);
    blockdev_close(d.bd);
    free(model);
}

/* The chain every test starts from, made once by qemu-img and qemu-io. */
static int setup(void **state)
{
    if (!mkdtemp(dir)) {
        return -1;
    }
    return run("cd %s && mkdir pristine && cd pristine && qemu-img create -q -f qcow2 base.qcow2 4M && "
               "qemu-io -c 'write -P 1 0 1M' -c 'write -P 7 3M 1M' base.qcow2 >/dev/null && "
               "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 && "
               "qemu-io -c 'write -P 2 1M 1M' -c 'write -z 3M 512k' mid.qcow2 >/dev/null && "
               "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 && "
               "qemu-io -c 'write -P 3 2M 512k' top.qcow2 >/dev/null", dir);
}

static int teardown(void **state)
{
    return run("rm -rf %s", dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_with_writes),
        cmocka_unit_test(test_commit_intermediate),
        cmocka_unit_test(test_commit_active_with_writes),
        cmocka_unit_test(test_backup_point_in_time),
        cmocka_unit_test(test_backup_granules),
        cmocka_unit_test(test_backup_sync_top),
        cmocka_unit_test(test_pause_resume_verbs),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_read_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
