/* A machine's disk as the monitor changes it, without a KVM VM: a bare
 * machine (guest memory, no vCPUs) with one virtio-blk device on a fake
 * transport. block_resize (machine_disk_resize) grows the image, bumps the
 * config generation and raises a config-change interrupt only once the
 * driver is up; the capacity the guest reads is the new one; the guest's
 * requests are counted (machine_disk_stats) from zero. An image switch (a
 * block job's replace) that fails puts the old image back, and when that
 * fails too leaves a placeholder failing every request, for a disk and for
 * a blockdev-add node alike: never no image. During a record or replay a
 * block job on a disk is refused (the replay's own switches are not). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/block_job.h"
#include "block/blockdev.h"
#include "machine/machine_int.h"
#include "machine/machine_replay.h"
#include "virtio/virtio_blk.h"

static int config_interrupts;

static void fake_notify_queue(void *t, int q) {}
static void fake_notify_config(void *t) { config_interrupts++; }
static const struct virtio_transport_ops fake_transport = { fake_notify_queue, fake_notify_config };

static const struct machine_config config = { .cpus = 1, .memory = 16ull << 20, .ndisks = 1 };

struct rig {
    struct machine m;
    struct virtio_blk blk;
    char path[64];
};

static struct rig *rig_create(void)
{
    struct rig *r = calloc(1, sizeof(*r));
    struct error err = { 0 };
    assert_non_null(r);
    snprintf(r->path, sizeof(r->path), "/tmp/cowvisor-disk-XXXXXX");
    int fd = mkstemp(r->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    r->m.cfg = &config;
    assert_int_equal(guest_memory_create(&r->m.vm.mem, config.memory, &err), 0);
    struct blockdev_open_opts opts = { .format = "raw" };
    assert_int_equal(blockdev_open(&r->m.disks[0], r->path, &opts, &err), 0);
    assert_int_equal(virtio_blk_init(&r->blk, &r->m.vm.mem, r->m.disks[0], false, "", 1, &err), 0);
    r->blk.dev.transport = &fake_transport;
    r->m.virtio[0].dev = &r->blk.dev;
    r->m.nvirtio = 1;
    config_interrupts = 0;
    return r;
}

static void rig_destroy(struct rig *r)
{
    virtio_blk_destroy(&r->blk);
    blockdev_close(r->m.disks[0]);
    guest_memory_destroy(&r->m.vm.mem);
    unlink(r->path);
    free(r);
}

static uint64_t guest_capacity(struct rig *r)
{
    uint64_t cap;
    r->blk.dev.ops->config_read(&r->blk.dev, 0, &cap, sizeof(cap));
    return cap;
}

static void test_resize_notifies_the_driver(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    assert_int_equal(guest_capacity(r), (1 << 20) / 512);
    /* Before the driver is up: the new size, but no interrupt. */
    uint32_t gen = r->blk.dev.config_generation;
    assert_int_equal(machine_disk_resize(&r->m, 0, 2 << 20, &err), 0);
    assert_int_equal(guest_capacity(r), (2 << 20) / 512);
    assert_int_equal(config_interrupts, 0);
    assert_int_not_equal(r->blk.dev.config_generation, gen);
    /* With the driver up: one config-change interrupt per resize. */
    r->blk.dev.status |= VIRTIO_STATUS_DRIVER_OK;
    assert_int_equal(machine_disk_resize(&r->m, 0, 4 << 20, &err), 0);
    assert_int_equal(config_interrupts, 1);
    assert_int_equal(guest_capacity(r), (4 << 20) / 512);
    struct disk_layer l;
    bool ro;
    assert_int_equal(machine_disk_chain(&r->m, 0, &l, 1, &ro), 1);
    assert_int_equal(l.size, 4 << 20);
    rig_destroy(r);
}

static void test_stats_start_at_zero(void **state)
{
    struct rig *r = rig_create();
    struct machine_disk_stats st;
    assert_int_equal(machine_disk_stats(&r->m, 0, &st), 0);
    assert_int_equal(st.rd_ops + st.wr_ops + st.flush_ops + st.rd_bytes + st.wr_bytes, 0);
    assert_int_equal(st.idle_ns, -1);
    assert_int_equal(machine_disk_stats(&r->m, 5, &st), -ENOENT);
    rig_destroy(r);
}

/* ---- an image switch (a block job's replace) that fails ---- */

static void assert_fails_requests(struct blockdev *bd)
{
    char buf[512];
    struct error err = { 0 };
    assert_non_null(bd);
    assert_int_equal(blockdev_pread(bd, 0, buf, sizeof(buf), &err), -EIO);
    assert_int_equal(blockdev_size(bd), 1 << 20);
}

/* The new image fails and the old one is back: the guest keeps its disk. */
static void test_failed_switch_puts_the_old_image_back(void **state)
{
    struct rig *r = rig_create();
    struct block_job_host host;
    struct error err = { 0 };
    char buf[512];
    assert_int_equal(machine_disk_job_host(&r->m, 0, &host, &err), 0);
    assert_true(host.replace(host.opaque, "/nonexistent/top.qcow2", "qcow2", &err) < 0);
    assert_non_null(r->m.disks[0]);
    assert_ptr_equal(r->blk.bdev, r->m.disks[0]);
    assert_string_equal(blockdev_filename(r->m.disks[0]), r->path);
    assert_int_equal(blockdev_pread(r->m.disks[0], 0, buf, sizeof(buf), &err), 0);
    rig_destroy(r);
}

/* Both fail (the old file removed meanwhile): the disk is a placeholder
 * of the old size failing every request, never NULL; monitors still see
 * a disk. */
static void test_both_reopens_failing_leave_a_failing_image(void **state)
{
    struct rig *r = rig_create();
    struct block_job_host host;
    struct error err = { 0 };
    assert_int_equal(machine_disk_job_host(&r->m, 0, &host, &err), 0);
    assert_int_equal(unlink(r->path), 0);
    assert_true(host.replace(host.opaque, "/nonexistent/top.qcow2", "qcow2", &err) < 0);
    assert_non_null(strstr(err.msg, "could not be opened again"));
    assert_ptr_equal(r->blk.bdev, r->m.disks[0]);
    assert_fails_requests(r->m.disks[0]);
    assert_int_equal(guest_capacity(r), (1 << 20) / 512);
    struct disk_layer l;
    bool ro;
    assert_int_equal(machine_disk_chain(&r->m, 0, &l, 1, &ro), 1);
    /* A job can start on it again, and a switch away from it works. */
    assert_int_equal(machine_disk_job_host(&r->m, 0, &host, &err), 0);
    rig_destroy(r);
}

/* A record or replay owns its disks: a commit, stream or backup job (all
 * start through machine_disk_job_host) and an external snapshot are refused with QEMU's words for a
 * busy node; the replay's own switch of the disk (a time travel) goes on. */
static void test_replay_refuses_block_jobs(void **state)
{
    struct rig *r = rig_create();
    struct block_job_host host;
    struct error err = { 0 };
    r->m.replay = calloc(1, sizeof(*r->m.replay));
    assert_non_null(r->m.replay);
    assert_int_equal(machine_disk_job_host(&r->m, 0, &host, &err), -EBUSY);
    assert_string_equal(err.msg, "Node 'disk0' is busy: block device is in use by record/replay");
    assert_int_equal(machine_disk_switch_host(&r->m, 0, &host, &err), 0);
    host.release(host.opaque);
    /* blockdev-snapshot-sync too: a travel would drop its overlay. */
    char overlay[80];
    snprintf(overlay, sizeof(overlay), "%s.overlay", r->path);
    assert_int_equal(machine_disk_overlay(&r->m, 0, overlay, &err), -EBUSY);
    assert_string_equal(err.msg, "Node 'disk0' is busy: block device is in use by record/replay");
    assert_int_equal(access(overlay, F_OK), -1);
    free(r->m.replay);
    r->m.replay = NULL;
    assert_int_equal(machine_disk_job_host(&r->m, 0, &host, &err), 0);
    host.release(host.opaque);
    rig_destroy(r);
}

/* The same for a blockdev-add node: one swap serves both. */
static void test_node_keeps_a_failing_image(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    char path[64] = "/tmp/cowvisor-node-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    json_t *args = json_pack("{s:s,s:s,s:{s:s,s:s}}", "driver", "raw", "node-name", "n0", "file", "driver", "file",
                             "filename", path);
    int ret = block_nodes_add(&r->m.nodes, args, &err);
    json_decref(args);
    assert_int_equal(ret, 0);
    struct block_node *n = machine_block_node_find(&r->m, "n0");
    struct block_job_host host;
    block_node_job_host(n, &host);
    assert_int_equal(unlink(path), 0);
    assert_true(host.replace(host.opaque, "/nonexistent/top.qcow2", "qcow2", &err) < 0);
    assert_fails_requests(n->node.bd);
    block_nodes_close_all(&r->m.nodes);
    rig_destroy(r);
}

static void make_qcow2(const char *path, const char *backing)
{
    struct error err = { 0 };
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 1 << 20;
    o.backing_file = backing;
    o.backing_format = backing ? "qcow2" : NULL;
    assert_int_equal(blockdev_create(path, &o, &err), 0);
}

/* After an active commit switched a node to its base, a reopen (a backup
 * gives its target back) opens the base, not the top it was added with. */
static void test_node_reopens_the_image_a_job_left(void **state)
{
    struct block_node_table t = { 0 };
    struct error err = { 0 };
    char base[64] = "/tmp/cowvisor-base-XXXXXX", top[64] = "/tmp/cowvisor-top-XXXXXX";
    close(mkstemp(base));
    close(mkstemp(top));
    make_qcow2(base, NULL);
    make_qcow2(top, base);
    json_t *args = json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "driver", "qcow2", "node-name", "n0", "discard", "unmap",
                             "file", "driver", "file", "filename", top);
    assert_int_equal(block_nodes_add(&t, args, &err), 0);
    json_decref(args);
    struct block_node *n = t.nodes[0];
    struct block_job_host host;
    block_node_job_host(n, &host);
    assert_int_equal(host.replace(host.opaque, base, "qcow2", &err), 0);
    blockdev_close(block_node_take_image(n));
    assert_int_equal(block_nodes_reopen(&t, n, &err), 0);
    assert_string_equal(blockdev_filename(n->node.bd), base);
    assert_false(blockdev_discard_ignored(n->node.bd));     /* what blockdev-add asked stays */
    block_nodes_close_all(&t);
    unlink(top);
    unlink(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_notifies_the_driver),
        cmocka_unit_test(test_stats_start_at_zero),
        cmocka_unit_test(test_failed_switch_puts_the_old_image_back),
        cmocka_unit_test(test_both_reopens_failing_leave_a_failing_image),
        cmocka_unit_test(test_replay_refuses_block_jobs),
        cmocka_unit_test(test_node_keeps_a_failing_image),
        cmocka_unit_test(test_node_reopens_the_image_a_job_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
