/* Record/replay with a disk (issue 13), on a bare machine: a virtio-blk
 * device on MMIO served synchronously (as in record mode), a scripted guest
 * that writes entropy to the disk and reads it back. machine_replay_start
 * puts the disk on a temporary overlay: the user's image is never written,
 * the overlay's file is gone at once, and every replay starts from the same
 * content and ends with the same guest memory and device state.
 *
 * Time travel with the disk: a recording with snapshots keeps its overlay
 * with an internal snapshot per time-travel snapshot; a replay that starts
 * at a snapshot (--replay-break) or seeks back to one reads the disk as it
 * was at that exit. Block jobs on a replayed disk are refused: a commit
 * into the recording's overlay viewed at an exit would write the
 * recording and drop the view. */
#include <dirent.h>
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

#include "../machine/bare_machine.h"
#include "block/block_job.h"
#include "block/blockdev.h"
#include "block/commit.h"
#include "machine/machine_replay.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_mmio.h"

#define DISK_SIZE (1u << 20)
#define HDR 0x30000
#define DATA 0x31000
#define STATUS 0x32000
#define BACK 0x33000

static char tmpdir[64], image[96], log_path[96];
static struct machine_config config = { .cpus = 1, .memory = 16ull << 20, .record_replay = true, .ndisks = 1 };

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/replay-disks-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(image, sizeof(image), "%s/user.img", tmpdir);
    snprintf(log_path, sizeof(log_path), "%s/run.log", tmpdir);
    int fd = open(image, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    assert_true(fd >= 0 && ftruncate(fd, DISK_SIZE) == 0);
    close(fd);
    config.disks[0] = (struct disk_config){ .file = image, .format = "raw", .transport = TRANSPORT_MMIO };
    setenv("TMPDIR", tmpdir, 1);    /* where the overlays go: checked empty */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(image);
    unlink(log_path);
    rmdir(tmpdir);
    unsetenv("TMPDIR");
    return 0;
}

static uint8_t *gmem(struct machine *m, uint64_t gpa, uint64_t len)
{
    uint8_t *p = guest_memory_ptr(&m->vm.mem, gpa, len);
    assert_non_null(p);
    guest_memory_mark_dirty(&m->vm.mem, gpa, len);     /* as KVM's dirty log would: diff snapshots */
    return p;
}

/* virtio-blk as the machine composes it in record mode, in slot 1. */
static void add_disk(struct machine *m)
{
    struct error err = { 0 };
    struct blockdev_open_opts opts = { .format = "raw" };
    assert_int_equal(blockdev_open(&m->disks[0], image, &opts, &err), 0);
    struct virtio_blk *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    assert_int_equal(virtio_blk_init(b, &m->vm.mem, m->disks[0], false, "", 1, &err), 0);
    virtio_blk_make_synchronous(b);
    struct virtio_slot *s = &m->virtio[1];
    s->dev = &b->dev;
    s->mmio = calloc(1, sizeof(*s->mmio));
    assert_non_null(s->mmio);
    assert_int_equal(virtio_mmio_create(s->mmio, s->dev, NULL, NULL, VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE,
                                        machine_irq_line(m, machine_mmio_irq(m, 1)), &err), 0);
    m->nvirtio = m->nmmio = 2;
    assert_int_equal(machine_add_device(m, "virtio", 1, &machine_virtio_slot_ops, s, &err), 0);
}

/* Queue 0 of the device in slot `slot` with its rings at base. */
static void setup_queue(struct machine *m, int slot, uint64_t base)
{
    struct virtio_mmio *t = m->virtio[slot].mmio;
    virtio_mmio_write(t, 0x70, 4, 3);
    virtio_mmio_write(t, 0x24, 4, 1);
    virtio_mmio_write(t, 0x20, 4, 1);       /* VERSION_1 */
    virtio_mmio_write(t, 0x70, 4, 0xb);
    virtio_mmio_write(t, 0x30, 4, 0);
    virtio_mmio_write(t, 0x38, 4, 16);
    virtio_mmio_write(t, 0x80, 4, base);
    virtio_mmio_write(t, 0x90, 4, base + 0x1000);
    virtio_mmio_write(t, 0xa0, 4, base + 0x2000);
    virtio_mmio_write(t, 0x44, 4, 1);
    virtio_mmio_write(t, 0x70, 4, 0xf);
}

static void put_desc(struct machine *m, uint64_t base, int i, uint64_t gpa, uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *d = gmem(m, base + 16 * (uint64_t)i, 16);
    memcpy(d, &gpa, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void make_available(struct machine *m, uint64_t base, uint16_t idx, uint16_t head)
{
    uint16_t *avail = (uint16_t *)gmem(m, base + 0x1000, 4 + 2 * 16);
    avail[2 + idx % 16] = head;
    __atomic_store_n(&avail[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

/* The vCPU's exit for a notify write to slot's MMIO window (served first,
 * as the vCPU loop's bus dispatch does), through the exit clock. */
static int notify_exit(struct machine *m, int slot, uint32_t rip, struct error *err)
{
    virtio_mmio_write(m->virtio[slot].mmio, 0x50, 4, 0);
    static uint8_t run_area[8192];
    struct kvm_run *run = (struct kvm_run *)run_area;
    memset(run_area, 0, sizeof(run_area));
    run->exit_reason = KVM_EXIT_MMIO;
    run->mmio.phys_addr = VIRTIO_MMIO_BASE + (uint64_t)slot * VIRTIO_MMIO_SIZE + 0x50;
    run->mmio.len = 4;
    run->mmio.is_write = 1;
    struct kvm_regs regs = { .rip = rip, .rflags = 2 };
    uint8_t vector;
    return machine_replay_exit(m, run, &regs, &vector, err) == REPLAY_ACT_STOP ? -1 : 0;
}

static int blk_request(struct machine *m, uint16_t idx, uint32_t type, uint64_t sector, uint64_t buf,
                       struct error *err)
{
    uint32_t hdr[4] = { type, 0, (uint32_t)sector, (uint32_t)(sector >> 32) };
    memcpy(gmem(m, HDR, 16), hdr, 16);
    put_desc(m, 0x20000, 0, HDR, 16, 1, 1);
    put_desc(m, 0x20000, 1, buf, 512, (uint16_t)(1 | (type == 0 ? 2 : 0)), 2);
    put_desc(m, 0x20000, 2, STATUS, 1, 2, 0);
    make_available(m, 0x20000, idx, 0);
    return notify_exit(m, 1, 0x1000 + idx, err);
}

/* The guest: 512 bytes of entropy, written to sector 3, read back. */
static void run_guest(struct machine *m, uint8_t back[512])
{
    struct error err = { 0 };
    setup_queue(m, 0, 0x10000);
    setup_queue(m, 1, 0x20000);
    put_desc(m, 0x10000, 0, DATA, 512, 2, 0);
    make_available(m, 0x10000, 0, 0);
    if (notify_exit(m, 0, 0x100, &err) < 0 || blk_request(m, 0, 1 /* write */, 3, DATA, &err) < 0 ||
        blk_request(m, 1, 0 /* read */, 3, BACK, &err) < 0) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(*gmem(m, STATUS, 1), 0);
    memcpy(back, gmem(m, BACK, 512), 512);
    assert_memory_equal(back, gmem(m, DATA, 512), 512);
}

static int64_t run(enum machine_replay_mode mode, uint8_t back[512])
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    add_disk(m);
    if (machine_replay_start(m, mode, log_path, NULL, NULL, 0, &err) < 0) {
        fail_msg("start: %s", err.msg);
    }
    run_guest(m, back);
    int64_t n = machine_replay_finish(m, &(int){ 0 }, &err);
    if (n < 0) {
        fail_msg("finish: %s", err.msg);
    }
    bare_destroy(m);
    return n;
}

static bool image_is_zero(void)
{
    static uint8_t buf[DISK_SIZE], zero[DISK_SIZE];
    int fd = open(image, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, DISK_SIZE, 0), DISK_SIZE);
    close(fd);
    return memcmp(buf, zero, DISK_SIZE) == 0;
}

static int files_in_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        n += strncmp(e->d_name, "cowvisor-replay-", 16) == 0;
    }
    closedir(d);
    return n;
}

static void disk_writes_replay_on_an_overlay(void **state)
{
    (void)state;
    uint8_t rec[512], rep[512], zero[512] = { 0 };
    int64_t recorded = run(MACHINE_REPLAY_RECORD, rec);
    assert_memory_not_equal(rec, zero, sizeof(zero));   /* entropy, read back from the disk */
    assert_true(image_is_zero());                       /* the user's image was not written */
    assert_int_equal(files_in_tmpdir(), 0);             /* the overlay's file is gone */
    char snap[160];
    snprintf(snap, sizeof(snap), "%s.snap", log_path);
    assert_int_equal(access(snap, F_OK), -1);           /* no snapshot taken: no overlay kept beside the log */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(run(MACHINE_REPLAY_PLAY, rep), recorded);
        assert_memory_equal(rec, rep, sizeof(rec));
        assert_true(image_is_zero());
        assert_int_equal(files_in_tmpdir(), 0);
    }
}

/* ---- time travel with a disk ---- */

#define ROUNDS 4
#define SNAP_EVERY 3

/* Exit n (from 1) of a guest that, each round of three exits, takes 512
 * bytes of entropy, reads sector 3 (what the last round wrote) and writes
 * the entropy there; then a time-travel snapshot when one is due. */
static void round_exit(struct machine *m, int n)
{
    struct error err = { 0 };
    int r = (n - 1) / 3, ret = 0;
    switch ((n - 1) % 3) {
    case 0:
        put_desc(m, 0x10000, 0, DATA, 512, 2, 0);
        make_available(m, 0x10000, (uint16_t)r, 0);
        ret = notify_exit(m, 0, 0x100 + (uint32_t)n, &err);
        break;
    case 1:
        ret = blk_request(m, (uint16_t)(2 * r), 0, 3, BACK + 512 * (uint64_t)r, &err);
        break;
    default:
        ret = blk_request(m, (uint16_t)(2 * r + 1), 1, 3, DATA, &err);
        break;
    }
    if (ret < 0 || (machine_replay_snapshot_due(m) && machine_replay_snapshot(m, &err) < 0)) {
        fail_msg("exit %d: %s", n, err.msg);
    }
}

static struct machine *start(enum machine_replay_mode mode, uint64_t every, uint64_t break_at)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    add_disk(m);
    machine_replay_set_snapshot_interval(m, every);
    if (machine_replay_start(m, mode, log_path, NULL, NULL, break_at, &err) < 0) {
        fail_msg("start: %s", err.msg);
    }
    if (replay_ordinal(m->replay->rp) == 0) {
        setup_queue(m, 0, 0x10000);
        setup_queue(m, 1, 0x20000);
    }
    return m;
}

static void run_to(struct machine *m, int last)
{
    for (int n = (int)replay_ordinal(m->replay->rp) + 1; n <= last; n++) {
        round_exit(m, n);
    }
}

static void sector3(struct machine *m, uint8_t out[512])
{
    struct error err = { 0 };
    assert_int_equal(blockdev_pread(m->disks[0], 3 * 512, out, 512, &err), 0);
}

static int64_t finish(struct machine *m)
{
    struct error err = { 0 };
    int64_t n = machine_replay_finish(m, &(int){ 0 }, &err);
    if (n < 0) {
        fail_msg("finish: %s", err.msg);
    }
    bare_destroy(m);
    return n;
}

/* A commit of the travel's top into the recording's overlay (what a
 * block-commit job does, were it allowed to start) is refused, and the
 * overlay's file is not written; the disk still shows the exit. */
static void refuses_block_jobs(struct machine *m, const char *overlay)
{
    struct error err = { 0 };
    struct block_job_host host;
    uint8_t before[512], after[512];
    char cmd[PATH_MAX * 2 + 32];
    sector3(m, before);
    assert_int_equal(machine_disk_job_host(m, 0, &host, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "in use by record/replay"));
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s.orig'", overlay, log_path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(block_commit(m->disks[0], blockdev_backing(m->disks[0]), NULL, &err), -EPERM);
    assert_int_equal(blockdev_invalidate_cache(blockdev_backing(m->disks[0]), &err), -EPERM);
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s.orig' && rm '%s.orig'", overlay, log_path, log_path);
    assert_int_equal(system(cmd), 0);
    sector3(m, after);
    assert_memory_equal(after, before, 512);
}

static void disk_content_travels_with_snapshots(void **state)
{
    (void)state;
    struct error err = { 0 };
    static uint8_t reads[ROUNDS * 512], written[ROUNDS][512];
    uint8_t now[512];
    char path[160];
    struct machine *m = start(MACHINE_REPLAY_RECORD, SNAP_EVERY, 0);
    for (int r = 0; r < ROUNDS; r++) {
        run_to(m, 3 * r + 3);
        memcpy(written[r], gmem(m, DATA, 512), 512);
    }
    memcpy(reads, gmem(m, BACK, sizeof(reads)), sizeof(reads));
    int64_t recorded = finish(m);
    snprintf(path, sizeof(path), "%s.snap/disk0.qcow2", log_path);
    assert_int_equal(access(path, R_OK), 0);            /* the recording's overlay, kept */
    assert_true(image_is_zero());
    assert_int_equal(files_in_tmpdir(), 0);
    for (int r = 1; r < ROUNDS; r++) {
        assert_memory_equal(reads + 512 * r, written[r - 1], 512);     /* the guest read its last write */
    }

    /* --replay-break 8: from the snapshot of exit 6, round 1's write on the disk. */
    m = start(MACHINE_REPLAY_PLAY, 0, 8);
    assert_int_equal(replay_ordinal(m->replay->rp), 6);
    sector3(m, now);
    assert_memory_equal(now, written[1], 512);
    /* Nothing was copied: a new overlay over the recording's (viewed at exit 6). */
    char overlay[PATH_MAX];
    assert_non_null(realpath(path, overlay));
    assert_string_equal(blockdev_backing_filename(m->disks[0]), overlay);
    refuses_block_jobs(m, overlay);
    run_to(m, 12);
    assert_memory_equal(gmem(m, BACK, sizeof(reads)), reads, sizeof(reads));
    /* Seek back to exit 5: from the snapshot of exit 3, round 0's write. */
    assert_int_equal(machine_replay_seek(m, 5, &err), 0);
    assert_int_equal(replay_ordinal(m->replay->rp), 3);
    sector3(m, now);
    assert_memory_equal(now, written[0], 512);
    assert_int_equal(m->disk_jobs[0], 0);   /* each travel's switch gave the disk back (an eject waited for ever) */
    memset(gmem(m, BACK + 512, 512), 0, 512);
    run_to(m, 5);
    assert_memory_equal(gmem(m, BACK + 512, 512), reads + 512, 512);
    run_to(m, 12);
    assert_int_equal(finish(m), recorded);
    assert_true(image_is_zero());
    assert_int_equal(files_in_tmpdir(), 0);             /* the copies are gone */

    /* The image moved: the recording's overlay is not over this replay's
     * image, so the travel runs on a copy of it pointed at the image. */
    char moved[sizeof(image)], orig[sizeof(image)];
    snprintf(orig, sizeof(orig), "%s", image);
    snprintf(moved, sizeof(moved), "%s/moved.img", tmpdir);
    assert_int_equal(rename(orig, moved), 0);
    snprintf(image, sizeof(image), "%s", moved);       /* config.disks[0].file too */
    m = start(MACHINE_REPLAY_PLAY, 0, 8);
    sector3(m, now);
    assert_memory_equal(now, written[1], 512);
    assert_string_equal(blockdev_backing_filename(m->disks[0]), moved);
    run_to(m, 12);
    assert_memory_equal(gmem(m, BACK, sizeof(reads)), reads, sizeof(reads));
    assert_int_equal(finish(m), recorded);
    assert_int_equal(rename(moved, orig), 0);
    snprintf(image, sizeof(image), "%s", orig);
    assert_int_equal(files_in_tmpdir(), 0);

    /* Without the recording's overlay the travel is refused, naming it. */
    snprintf(path, sizeof(path), "%s.snap/disk0.qcow2", log_path);
    assert_int_equal(unlink(path), 0);
    m = bare_machine(&config);
    add_disk(m);
    assert_true(machine_replay_start(m, MACHINE_REPLAY_PLAY, log_path, NULL, NULL, 8, &err) < 0);
    if (!strstr(err.msg, "cannot open the disk overlay") || !strstr(err.msg, "disk0.qcow2")) {
        fail_msg("unexpected: %s", err.msg);
    }
    machine_replay_finish(m, &(int){ 0 }, &err);
    bare_destroy(m);
    assert_int_equal(files_in_tmpdir(), 0);
    snprintf(path, sizeof(path), "rm -rf %s.snap", log_path);
    assert_int_equal(system(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(disk_writes_replay_on_an_overlay, setup, teardown),
        cmocka_unit_test_setup_teardown(disk_content_travels_with_snapshots, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
