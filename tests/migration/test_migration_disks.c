/* Live migration with disks on shared storage, between bare machines (no
 * KVM): both sides open the same qcow2 image, the destination inactive
 * while the source runs and writes; at switchover the image locks pass
 * from the source to the destination, which then reads what the source
 * wrote (no metadata cached before is trusted). The hand-over runs between
 * two processes, so QEMU's qemu-io sees the locks as another host program
 * would. A migration that fails after the hand-over gives the disks back.
 * The overlay-only mode (migrate blk+inc) sends the clusters of a qcow2
 * overlay and never its base's, and refuses a destination whose base
 * differs or whose overlay is not empty before the source stops. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "block/block_job.h"
#include "block/blockdev.h"
#include "migration/migration.h"

#define MEMORY (8ull << 20)
#define DISK_SIZE (64ull << 20)
#define DATA_OFF (40ull << 20)      /* an L2 table the destination has not seen allocated */
#define DATA_LEN (256u << 10)

static char dir[64], image[96];

static struct machine_config disk_config(void)
{
    struct machine_config c = { .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO }, .ndisks = 1 };
    c.disks[0] = (struct disk_config){ .file = image, .format = "qcow2", .transport = TRANSPORT_MMIO };
    return c;
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/cowvisor-migdisk.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(image, sizeof(image), "%s/disk.qcow2", dir);
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = DISK_SIZE;
    o.lazy_refcounts = true;        /* the source's refcounts live in memory until it hands over */
    assert_int_equal(blockdev_create(image, &o, &err), 0);
    return 0;
}

static int teardown(void **state)
{
    unlink(image);
    rmdir(dir);
    return 0;
}

static struct blockdev *open_disk(unsigned flags)
{
    struct blockdev *bd = NULL;
    struct error err = { 0 };
    struct blockdev_open_opts o = { .format = "qcow2", .flags = flags };
    if (blockdev_open(&bd, image, &o, &err) < 0) {
        fail_msg("open %s: %s", image, err.msg);
    }
    return bd;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 13 + seed);
    }
}

/* qemu-io's write on the image: 0 when it could open it for writing;
 * otherwise its complaint must be QEMU's lock message. */
static int qemu_io_write(void)
{
    char cmd[256], out[1024] = "";
    snprintf(cmd, sizeof(cmd), "qemu-io -f qcow2 -c 'write -P 0x11 0 512' %s 2>&1", image);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    if (st != 0 && !strstr(out, "Failed to get \"write\" lock")) {
        fail_msg("qemu-io failed otherwise: %s", out);
    }
    return st;
}

static int run_cmd(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void put_byte(int fd, uint8_t b)
{
    assert_int_equal(write(fd, &b, 1), 1);
}

static uint8_t get_byte(int fd)
{
    uint8_t b = 0xff;
    assert_int_equal(read(fd, &b, 1), 1);
    return b;
}

/* ---- the source, in a child process ---- */

/* Returns the child's exit status: 0 when every check passed. */
static int source_process(int sock, int to_parent, int from_parent)
{
    struct machine_config cfg = disk_config();
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    m->disks[0] = open_disk(0);
    put_byte(to_parent, 1);                 /* running on the image */
    get_byte(from_parent);                  /* the destination opened it meanwhile */
    static uint8_t buf[DATA_LEN];
    fill(buf, sizeof(buf), 7);
    int bad = blockdev_pwrite(m->disks[0], DATA_OFF, buf, sizeof(buf), &err) < 0;
    struct migration_params p;
    migration_params_default(&p);
    struct migration_source *s = NULL;
    bad |= migration_source_start(&s, m, sock, &p, NULL, &err) < 0;
    bad |= s && migration_source_wait(s, &err) < 0;
    /* Handed over: the image is no longer this process's to write. */
    bad |= !blockdev_is_inactive(m->disks[0]);
    bad |= blockdev_pwrite(m->disks[0], 0, buf, 512, &err) != -EPERM;
    put_byte(to_parent, (uint8_t)bad);
    get_byte(from_parent);                  /* the parent looked at the locks */
    migration_source_free(s);
    machine_close_disks(m);
    bare_destroy(m);
    return bad;
}

/* The destination opens the image while the source runs on it; after the
 * migration it holds the write lock alone and reads the source's data. */
static void test_shared_disk_handover(void **state)
{
    int sv[2], down[2], up[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(down), 0);
    assert_int_equal(pipe(up), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(30);      /* a parent that failed an assertion never answers */
        close(sv[1]);
        _exit(source_process(sv[0], up[1], down[0]));
    }
    close(sv[0]);
    assert_int_equal(get_byte(up[0]), 1);
    assert_int_not_equal(qemu_io_write(), 0);      /* the source holds the image */

    struct machine_config cfg = disk_config();
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    m->disks[0] = open_disk(BDEV_INACTIVE);        /* refused before: "Failed to get "write" lock" */
    static uint8_t buf[DATA_LEN], want[DATA_LEN];
    /* Metadata read now (an unallocated L1 entry) must not survive. */
    assert_int_equal(blockdev_pread(m->disks[0], DATA_OFF, buf, sizeof(buf), &err), 0);
    assert_int_equal(blockdev_pwrite(m->disks[0], 0, buf, 512, &err), -EPERM);
    put_byte(down[1], 1);

    struct migration_dest *d = NULL;
    assert_int_equal(migration_dest_start(&d, m, sv[1], NULL, &err), 0);
    if (migration_dest_wait(d, &err) < 0) {
        fail_msg("destination: %s", err.msg);
    }
    assert_int_equal(get_byte(up[0]), 0);          /* the source's own checks */
    assert_false(blockdev_is_inactive(m->disks[0]));
    fill(want, sizeof(want), 7);
    assert_int_equal(blockdev_pread(m->disks[0], DATA_OFF, buf, sizeof(buf), &err), 0);
    assert_memory_equal(buf, want, sizeof(buf));
    assert_int_equal(blockdev_pwrite(m->disks[0], 4096, want, 4096, &err), 0);
    assert_int_not_equal(qemu_io_write(), 0);      /* now the destination holds it */

    put_byte(down[1], 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_not_equal(qemu_io_write(), 0);      /* the source is gone: the holder is this side */
    migration_dest_free(d);
    machine_close_disks(m);
    bare_destroy(m);
    assert_int_equal(qemu_io_write(), 0);          /* released on close */
    char cmd[192];
    snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", image);
    assert_int_equal(system(cmd), 0);              /* lazy refcounts written back, no leak */
}

/* ---- a migration that fails after the hand-over ---- */

struct cancel_at_stop {
    struct machine *m;
    struct migration_source *s;
    int starts;
    bool active_at_start;
};

/* Switchover begins: a cancel now lands after the disks went (an idle
 * guest leaves no page to send before them). */
static void stop_and_cancel(void *opaque)
{
    struct cancel_at_stop *c = opaque;
    machine_pause(c->m);
    struct migration_source *s;
    while (!(s = __atomic_load_n(&c->s, __ATOMIC_ACQUIRE))) {
        usleep(1000);
    }
    migration_source_cancel(s);
}

static void start_again(void *opaque)
{
    struct cancel_at_stop *c = opaque;
    c->active_at_start = !blockdev_is_inactive(c->m->disks[0]);
    machine_resume(c->m);
    c->starts++;
}

static void test_failed_migration_takes_disks_back(void **state)
{
    struct machine_config cfg = disk_config();
    struct machine *a = bare_machine(&cfg), *b = bare_machine(&cfg);
    struct error err = { 0 };
    a->disks[0] = open_disk(0);
    b->disks[0] = open_disk(BDEV_INACTIVE);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct cancel_at_stop c = { .m = a };
    struct migration_hooks h = { .stop = stop_and_cancel, .start = start_again, .opaque = &c };
    struct migration_params p;
    migration_params_default(&p);
    struct migration_dest *d = NULL;
    struct migration_source *s = NULL;
    assert_int_equal(migration_dest_start(&d, b, sv[1], NULL, &err), 0);
    assert_int_equal(migration_source_start(&s, a, sv[0], &p, &h, &err), 0);
    __atomic_store_n(&c.s, s, __ATOMIC_RELEASE);
    assert_int_equal(migration_source_wait(s, &err), -ECANCELED);
    assert_true(migration_dest_wait(d, &err) < 0);
    assert_int_equal(c.starts, 1);
    assert_true(c.active_at_start);                /* taken back before the guest ran */
    assert_true(blockdev_is_inactive(b->disks[0]));
    uint8_t buf[512];
    fill(buf, sizeof(buf), 3);
    assert_int_equal(blockdev_pwrite(a->disks[0], 0, buf, sizeof(buf), &err), 0);
    migration_source_free(s);
    migration_dest_free(d);
    machine_close_disks(a);
    machine_close_disks(b);
    bare_destroy(a);
    bare_destroy(b);
}

/* A disk a migration sends is not changed under it: jobs, overlays and
 * resizes are refused with QEMU's op blocker words while the machine
 * migrates (test_migration checks a migration sets that), and go again
 * after. */
static void test_disk_changes_refused_while_migrating(void **state)
{
    struct machine_config cfg = disk_config();
    struct machine *a = bare_machine(&cfg);
    struct error err = { 0 };
    struct block_job_host host;
    char overlay[128];
    a->disks[0] = open_disk(0);
    snprintf(overlay, sizeof(overlay), "%s/refused-overlay.qcow2", dir);
    machine_set_migrating(a, true);
    const char *busy = "Node 'disk0' is busy: block device is in use by migration";
    assert_int_equal(machine_disk_job_host(a, 0, &host, &err), -EBUSY);
    assert_string_equal(err.msg, busy);
    error_clear(&err);
    assert_int_equal(machine_disk_resize(a, 0, 64ull << 20, &err), -EBUSY);
    assert_string_equal(err.msg, busy);
    error_clear(&err);
    assert_int_equal(machine_disk_overlay(a, 0, overlay, &err), -EBUSY);
    assert_string_equal(err.msg, busy);
    error_clear(&err);
    assert_int_equal(access(overlay, F_OK), -1);       /* nothing created */
    machine_set_migrating(a, false);
    assert_int_equal(machine_disk_job_host(a, 0, &host, &err), 0);
    machine_close_disks(a);
    bare_destroy(a);
}

/* ---- persistent bitmaps on shared storage ---- */

#define BM_SRC_OFF (3ull << 20)     /* written by the source before the migration */
#define BM_DST_OFF (9ull << 20)     /* by the destination after it */

static bool bitmap_dirty_at(struct blockdev *bd, uint64_t off)
{
    struct error err = { 0 };
    uint64_t len = 512;
    bool dirty = false;
    if (blockdev_bitmap_status(bd, "b0", off, &len, &dirty, &err) < 0) {
        fail_msg("bitmap b0 at %llu: %s", (unsigned long long)off, err.msg);
    }
    return dirty;
}

/* qemu-img info's view of bitmap b0: its flags, e.g. ["auto"]. */
static void qemu_img_bitmap_flags(char *out, size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "qemu-img info --output=json %s | python3 -c 'import json,sys; "
             "b=json.load(sys.stdin)[\"format-specific\"][\"data\"].get(\"bitmaps\",[]); "
             "print(\",\".join(f for x in b if x[\"name\"]==\"b0\" for f in x[\"flags\"]) if b else \"none\")'",
             image);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    pclose(p);
}

/* The source records writes in an enabled persistent bitmap; after the
 * hand-over the destination goes on recording and stores it on close: the
 * image then holds both sides' bits, not flagged in use, and is clean. */
static void test_bitmap_handover(void **state)
{
    struct machine_config cfg = disk_config();
    struct machine *a = bare_machine(&cfg), *b = bare_machine(&cfg);
    struct error err = { 0 };
    a->disks[0] = open_disk(0);
    struct blockdev_bitmap_add_opts bo = { .persistent = true };
    assert_int_equal(blockdev_bitmap_add(a->disks[0], "b0", &bo, &err), 0);
    b->disks[0] = open_disk(BDEV_INACTIVE);
    uint8_t buf[4096];
    fill(buf, sizeof(buf), 5);
    assert_int_equal(blockdev_pwrite(a->disks[0], BM_SRC_OFF, buf, sizeof(buf), &err), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct migration_params p;
    migration_params_default(&p);
    struct migration_dest *d = NULL;
    struct migration_source *s = NULL;
    assert_int_equal(migration_dest_start(&d, b, sv[1], NULL, &err), 0);
    assert_int_equal(migration_source_start(&s, a, sv[0], &p, NULL, &err), 0);
    if (migration_source_wait(s, &err) < 0 || migration_dest_wait(d, &err) < 0) {
        fail_msg("migration: %s", err.msg);
    }
    migration_source_free(s);
    migration_dest_free(d);
    /* The destination has the source's bits and records its own writes. */
    assert_true(bitmap_dirty_at(b->disks[0], BM_SRC_OFF));
    assert_int_equal(blockdev_pwrite(b->disks[0], BM_DST_OFF, buf, sizeof(buf), &err), 0);
    assert_true(bitmap_dirty_at(b->disks[0], BM_DST_OFF));
    machine_close_disks(a);         /* the source goes first: it must not write the image now */
    bare_destroy(a);
    machine_close_disks(b);
    bare_destroy(b);

    char flags[256];
    qemu_img_bitmap_flags(flags, sizeof(flags));
    assert_string_equal(flags, "auto\n");       /* stored, not in-use */
    assert_int_equal(run_cmd("qemu-img check -q %s", image), 0);
    struct blockdev *bd = NULL;
    struct blockdev_open_opts o = { .format = "qcow2", .flags = BDEV_READ_ONLY };
    assert_int_equal(blockdev_open(&bd, image, &o, &err), 0);
    assert_true(bitmap_dirty_at(bd, BM_SRC_OFF));
    assert_true(bitmap_dirty_at(bd, BM_DST_OFF));
    assert_false(bitmap_dirty_at(bd, 0));
    blockdev_close(bd);
}

/* ---- overlay-only disks ---- */

static char base[96], base2[96], src_ovl[96], dst_ovl[96];

static void create_overlay(const char *file, const char *backing)
{
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.backing_file = backing;
    o.backing_format = "qcow2";
    if (blockdev_create(file, &o, &err) < 0) {
        fail_msg("create %s: %s", file, err.msg);
    }
}

static void create_base(const char *file, uint8_t seed)
{
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = DISK_SIZE / 2;
    assert_int_equal(blockdev_create(file, &o, &err), 0);
    struct blockdev_open_opts oo = { .format = "qcow2" };
    struct blockdev *bd = NULL;
    assert_int_equal(blockdev_open(&bd, file, &oo, &err), 0);
    static uint8_t buf[1 << 20];
    for (uint64_t off = 0; off < DISK_SIZE / 2; off += sizeof(buf)) {
        fill(buf, sizeof(buf), (uint8_t)(seed + off / sizeof(buf)));
        assert_int_equal(blockdev_pwrite(bd, off, buf, sizeof(buf), &err), 0);
    }
    blockdev_close(bd);
}

static int overlay_setup(void **state)
{
    setup(state);
    snprintf(base, sizeof(base), "%s/base.qcow2", dir);
    snprintf(base2, sizeof(base2), "%s/other-base.qcow2", dir);
    snprintf(src_ovl, sizeof(src_ovl), "%s/src.qcow2", dir);
    snprintf(dst_ovl, sizeof(dst_ovl), "%s/dst.qcow2", dir);
    create_base(base, 1);
    create_overlay(src_ovl, base);
    create_overlay(dst_ovl, base);
    return 0;
}

static int overlay_teardown(void **state)
{
    unlink(base);
    unlink(base2);
    unlink(src_ovl);
    unlink(dst_ovl);
    return teardown(state);
}

static struct machine *overlay_machine(struct machine_config *cfg, const char *file, unsigned flags)
{
    *cfg = disk_config();
    cfg->disks[0].file = file;
    struct machine *m = bare_machine(cfg);
    struct blockdev_open_opts o = { .format = "qcow2", .flags = flags };
    struct error err = { 0 };
    if (blockdev_open(&m->disks[0], file, &o, &err) < 0) {
        fail_msg("open %s: %s", file, err.msg);
    }
    return m;
}

static uint32_t disk_crc(struct blockdev *bd)
{
    static uint8_t buf[1 << 20];
    struct error err = { 0 };
    uint32_t crc = 0;
    for (uint64_t off = 0; off < blockdev_size(bd); off += sizeof(buf)) {
        assert_int_equal(blockdev_pread(bd, off, buf, sizeof(buf), &err), 0);
        for (size_t i = 0; i < sizeof(buf); i += 64) {
            crc = crc * 31 + buf[i] + ((uint32_t)buf[i + 1] << 8);     /* a cheap sum: both sides run it */
        }
    }
    return crc;
}

/* depth-0 allocated bytes of the overlay */
static uint64_t overlay_bytes(struct blockdev *bd)
{
    struct error err = { 0 };
    uint64_t n = 0;
    for (uint64_t off = 0; off < blockdev_size(bd);) {
        struct block_status st;
        assert_int_equal(blockdev_block_status(bd, off, blockdev_size(bd) - off, &st, &err), 0);
        n += st.depth == 0 && (st.flags & BDEV_STATUS_ALLOCATED) ? st.len : 0;
        off += st.len;
    }
    return n;
}

struct overlay_run {
    struct machine_config ca, cb;
    struct machine *a, *b;
    int sret, dret;
    struct error serr, derr;
    struct migration_stats ss;
};

static void overlay_migrate_with(struct overlay_run *r, const struct migration_params *p,
                                 const struct migration_hooks *h, struct migration_source **started)
{
    int sv[2];
    struct error err = { 0 };
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct migration_dest *d = NULL;
    struct migration_source *s = NULL;
    assert_int_equal(migration_dest_start(&d, r->b, sv[1], NULL, &err), 0);
    assert_int_equal(migration_source_start(&s, r->a, sv[0], p, h, &err), 0);
    if (started) {
        __atomic_store_n(started, s, __ATOMIC_RELEASE);
    }
    r->sret = migration_source_wait(s, &r->serr);
    r->dret = migration_dest_wait(d, &r->derr);
    migration_source_stats(s, &r->ss);
    migration_source_free(s);
    migration_dest_free(d);
}

static void overlay_migrate(struct overlay_run *r)
{
    struct migration_params p;
    migration_params_default(&p);
    p.block_incremental = true;
    overlay_migrate_with(r, &p, NULL, NULL);
}

static void overlay_free(struct overlay_run *r)
{
    machine_close_disks(r->a);
    machine_close_disks(r->b);
    bare_destroy(r->a);
    bare_destroy(r->b);
}

static void test_overlay_only(void **state)
{
    struct overlay_run r = { 0 };
    struct error err = { 0 };
    r.a = overlay_machine(&r.ca, src_ovl, 0);
    r.b = overlay_machine(&r.cb, dst_ovl, BDEV_INACTIVE);
    static uint8_t buf[300 << 10];
    fill(buf, sizeof(buf), 99);
    struct blockdev *src = r.a->disks[0];
    assert_int_equal(blockdev_pwrite(src, (1 << 20) + 512, buf, sizeof(buf), &err), 0);
    assert_int_equal(blockdev_pwrite(src, DISK_SIZE / 2 - 4096, buf, 4096, &err), 0);
    assert_int_equal(blockdev_pwrite_zeroes(src, 5 << 20, 128 << 10, 0, &err), 0);   /* hides base data */
    uint64_t allocated = overlay_bytes(src);
    assert_true(allocated > sizeof(buf) && allocated < (1 << 20));
    uint32_t want = disk_crc(src);

    overlay_migrate(&r);
    if (r.sret < 0 || r.dret < 0) {
        fail_msg("source: %s / destination: %s", r.serr.msg, r.derr.msg);
    }
    struct blockdev *dst = r.b->disks[0];
    assert_false(blockdev_is_inactive(dst));
    assert_int_equal(disk_crc(dst), want);
    assert_int_equal(overlay_bytes(dst), allocated);
    /* The 32 MiB base never went: RAM is almost all zero pages here. */
    assert_true(r.ss.transferred < allocated + (1 << 20));
    overlay_free(&r);
}

/* ---- the live copy: a guest writes the overlay while it goes ---- */

#define LIVE_DATA_OFF (1ull << 20)      /* allocated before the migration */
#define LIVE_DATA_LEN (4ull << 20)
#define WRITER_OFF (2ull << 20)         /* rewritten during it */
#define WRITER_LEN (1ull << 20)
#define WRITER_NEW_OFF (20ull << 20)    /* base data, first written during it */
#define WRITER_WRITES 300

struct live_writer {
    struct machine *m;
    struct migration_source *s;
    pthread_t thread;
    int writes;
    struct migration_stats at_stop;
};

/* Writes of 4-64 KiB into allocated and new clusters, some of them zero
 * writes, a little apart so the passes overlap them. */
static void *writer_main(void *opaque)
{
    struct live_writer *w = opaque;
    static uint8_t buf[64 << 10];
    struct error err = { 0 };
    unsigned seed = 12345;
    for (int i = 0; i < WRITER_WRITES; i++) {
        uint32_t len = (uint32_t)(4096u << (rand_r(&seed) % 5));
        bool fresh = i % 10 == 9;
        uint64_t area = fresh ? WRITER_NEW_OFF : WRITER_OFF;
        uint64_t off = area + (uint64_t)(rand_r(&seed) % ((WRITER_LEN - len) / 512)) * 512;
        fill(buf, len, (uint8_t)i);
        int ret = i % 7 == 3 ? blockdev_pwrite_zeroes(w->m->disks[0], off, len, 0, &err)
                             : blockdev_pwrite(w->m->disks[0], off, buf, len, &err);
        if (ret < 0) {
            fprintf(stderr, "writer: %s\n", err.msg);
            abort();
        }
        w->writes++;
        usleep(1000);
    }
    return NULL;
}

/* Switchover: the guest's writes are done (all of them during the
 * migration); what the disk stats say now was sent while it ran. */
static void live_stop(void *opaque)
{
    struct live_writer *w = opaque;
    pthread_join(w->thread, NULL);
    struct migration_source *s;
    while (!(s = __atomic_load_n(&w->s, __ATOMIC_ACQUIRE))) {
        usleep(1000);
    }
    migration_source_stats(s, &w->at_stop);
    machine_pause(w->m);
}

static void test_overlay_live(void **state)
{
    struct overlay_run r = { 0 };
    struct error err = { 0 };
    r.a = overlay_machine(&r.ca, src_ovl, 0);
    r.b = overlay_machine(&r.cb, dst_ovl, BDEV_INACTIVE);
    static uint8_t buf[LIVE_DATA_LEN];
    fill(buf, sizeof(buf), 42);
    assert_int_equal(blockdev_pwrite(r.a->disks[0], LIVE_DATA_OFF, buf, sizeof(buf), &err), 0);
    uint64_t allocated = overlay_bytes(r.a->disks[0]);

    struct live_writer w = { .m = r.a };
    struct migration_hooks h = { .stop = live_stop, .opaque = &w };
    struct migration_params p;
    migration_params_default(&p);
    p.block_incremental = true;
    p.converge.downtime_limit_ms = 1;        /* passes go on while the guest writes */
    assert_int_equal(pthread_create(&w.thread, NULL, writer_main, &w), 0);
    overlay_migrate_with(&r, &p, &h, &w.s);
    if (r.sret < 0 || r.dret < 0) {
        fail_msg("source: %s / destination: %s", r.serr.msg, r.derr.msg);
    }
    assert_int_equal(w.writes, WRITER_WRITES);
    assert_true(r.ss.dirty_sync_count >= 1);
    /* Sent while the guest ran: the first pass at least; at switchover,
     * only what the guest wrote after the last pass (at most the writer's
     * areas), never the whole overlay again. */
    assert_true(w.at_stop.disk_transferred >= allocated);
    uint64_t downtime_bytes = r.ss.disk_transferred - w.at_stop.disk_transferred;
    assert_true(downtime_bytes <= 2 * WRITER_LEN);
    assert_true(r.ss.disk_transferred > allocated);             /* rewritten clusters went again */
    assert_int_equal(r.ss.disk_remaining, 0);
    assert_int_equal(r.ss.disk_total, DISK_SIZE / 2);
    assert_int_equal(overlay_bytes(r.b->disks[0]), overlay_bytes(r.a->disks[0]));
    /* The base's 32 MiB never went: the overlay once, then per pass at most
     * the writer's two areas again (how many passes there are depends on
     * how fast this machine runs the writer: a fixed bound failed under
     * load). */
    assert_true(r.ss.disk_transferred <= allocated + (r.ss.dirty_sync_count + 1) * 2 * WRITER_LEN);
    assert_true(r.ss.disk_transferred < DISK_SIZE / 2);
    overlay_free(&r);
    assert_int_equal(run_cmd("qemu-img compare -q -f qcow2 -F qcow2 %s %s", src_ovl, dst_ovl), 0);
    assert_int_equal(run_cmd("qemu-img check -q %s", dst_ovl), 0);
    assert_int_equal(run_cmd("qemu-img check -q %s", src_ovl), 0);
}

/* A destination on another base, or on an overlay already used, is
 * refused before the source stops; a source disk without a base at once. */
static void test_overlay_refusals(void **state)
{
    struct error err = { 0 };
    create_base(base2, 2);
    create_overlay(dst_ovl, base2);
    struct overlay_run r = { 0 };
    r.a = overlay_machine(&r.ca, src_ovl, 0);
    r.b = overlay_machine(&r.cb, dst_ovl, BDEV_INACTIVE);
    overlay_migrate(&r);
    assert_true(r.sret < 0 && r.dret < 0);
    assert_non_null(strstr(r.derr.msg, "differs from the source's"));
    assert_false(blockdev_is_inactive(r.a->disks[0]));        /* never handed over */
    overlay_free(&r);

    create_overlay(dst_ovl, base);
    r.b = overlay_machine(&r.cb, dst_ovl, 0);
    assert_int_equal(blockdev_pwrite(r.b->disks[0], 0, "x", 1, &err), 0);
    machine_close_disks(r.b);
    assert_int_equal(blockdev_open(&r.b->disks[0], dst_ovl, &(struct blockdev_open_opts){ .format = "qcow2",
                                   .flags = BDEV_INACTIVE }, &err), 0);
    r.a = overlay_machine(&r.ca, src_ovl, 0);
    overlay_migrate(&r);
    assert_true(r.sret < 0 && r.dret < 0);
    assert_non_null(strstr(r.derr.msg, "is not empty"));
    overlay_free(&r);

    struct machine_config c = disk_config();
    struct machine *m = overlay_machine(&c, base, 0);
    struct migration_params p;
    migration_params_default(&p);
    p.block_incremental = true;
    struct migration_source *s = NULL;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(migration_source_start(&s, m, sv[0], &p, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "is not a qcow2 overlay on a base image"));
    close(sv[1]);
    machine_close_disks(m);
    bare_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shared_disk_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_takes_disks_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_changes_refused_while_migrating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bitmap_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlay_only, overlay_setup, overlay_teardown),
        cmocka_unit_test_setup_teardown(test_overlay_live, overlay_setup, overlay_teardown),
        cmocka_unit_test_setup_teardown(test_overlay_refusals, overlay_setup, overlay_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
