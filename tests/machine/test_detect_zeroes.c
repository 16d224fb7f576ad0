/* detect-zeroes and discard of a blockdev-add node, as QEMU 7.2 has them
 * (the same images through qemu-system-x86_64 in
 * tests/cowvisor/qmp_hotplug_compare.py): a write of zeros becomes a
 * write-zeroes, which with detect-zeroes=unmap and discard=unmap frees the
 * cluster and otherwise keeps it (a zero cluster still allocated);
 * discard=ignore makes a discard free nothing; 'unmap' without
 * discard=unmap is refused in QEMU's words; a block job's image switch
 * keeps the node's options. */
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
#include "machine/block_nodes.h"

#define CLUSTER 65536

struct rig {
    struct block_node_table nodes;
    char path[64];
};

static struct rig *rig_create(void)
{
    struct rig *r = calloc(1, sizeof(*r));
    struct error err = { 0 };
    assert_non_null(r);
    snprintf(r->path, sizeof(r->path), "/tmp/cowvisor-dz-XXXXXX");
    int fd = mkstemp(r->path);
    assert_true(fd >= 0);
    close(fd);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 1 << 20;
    assert_int_equal(blockdev_create(r->path, &o, &err), 0);
    return r;
}

static void rig_destroy(struct rig *r)
{
    block_nodes_close_all(&r->nodes);
    unlink(r->path);
    free(r);
}

/* blockdev-add of a qcow2 node "n0" over the rig's image. */
static int add(struct rig *r, const char *detect_zeroes, const char *discard, struct error *err)
{
    json_t *args = json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "driver", "qcow2", "node-name", "n0", "detect-zeroes",
                             detect_zeroes, "file", "driver", "file", "filename", r->path);
    if (discard) {
        json_object_set_new(args, "discard", json_string(discard));
    }
    int ret = block_nodes_add(&r->nodes, args, err);
    json_decref(args);
    return ret;
}

static struct blockdev *node_image(struct rig *r)
{
    return r->nodes.nodes[0]->node.bd;
}

/* Cluster 1 written with data, then with zeros through the node. */
static struct block_status data_then_zeros(struct blockdev *bd)
{
    static char buf[CLUSTER];
    struct error err = { 0 };
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, CLUSTER, buf, sizeof(buf), &err), 0);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, CLUSTER, buf, sizeof(buf), &err), 0);
    struct block_status st;
    assert_int_equal(blockdev_block_status(bd, CLUSTER, CLUSTER, &st, &err), 0);
    return st;
}

static void test_unmap_needs_discard_unmap(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    assert_true(add(r, "unmap", NULL, &err) < 0);
    assert_string_equal(err.msg, "setting detect-zeroes to unmap is not allowed without setting discard "
                                 "operation to unmap");
    assert_true(add(r, "unmap", "ignore", &err) < 0);
    assert_int_equal(r->nodes.count, 0);
    rig_destroy(r);
}

static void test_unmap_frees_the_cluster(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    assert_int_equal(add(r, "unmap", "unmap", &err), 0);
    struct block_status st = data_then_zeros(node_image(r));
    assert_true(st.flags & BDEV_STATUS_ZERO);
    assert_false(st.flags & BDEV_STATUS_DATA);
    assert_false(st.flags & BDEV_STATUS_OFFSET_VALID);   /* QEMU's map: no "offset" */
    rig_destroy(r);
}

static void test_on_keeps_the_cluster(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    assert_int_equal(add(r, "on", NULL, &err), 0);
    struct block_status st = data_then_zeros(node_image(r));
    assert_true(st.flags & BDEV_STATUS_ZERO);
    assert_false(st.flags & BDEV_STATUS_DATA);
    assert_true(st.flags & BDEV_STATUS_OFFSET_VALID);    /* still allocated, as in QEMU */
    rig_destroy(r);
}

/* discard=ignore (the default): a guest's discard succeeds and frees nothing. */
static void test_discard_ignored(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    static char buf[CLUSTER], back[CLUSTER];
    assert_int_equal(add(r, "off", NULL, &err), 0);
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(blockdev_pwrite(node_image(r), 0, buf, sizeof(buf), &err), 0);
    assert_int_equal(blockdev_discard(node_image(r), 0, CLUSTER, &err), 0);
    assert_int_equal(blockdev_pread(node_image(r), 0, back, sizeof(back), &err), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    /* detect-zeroes off: zeros are written as data. */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(blockdev_pwrite(node_image(r), 0, buf, sizeof(buf), &err), 0);
    struct block_status st;
    assert_int_equal(blockdev_block_status(node_image(r), 0, CLUSTER, &st, &err), 0);
    assert_true(st.flags & BDEV_STATUS_DATA);
    rig_destroy(r);
}

/* A block job's new image is the node's: its options stay. */
static void test_image_switch_keeps_the_options(void **state)
{
    struct rig *r = rig_create();
    struct error err = { 0 };
    assert_int_equal(add(r, "unmap", "unmap", &err), 0);
    struct block_job_host host;
    block_node_job_host(r->nodes.nodes[0], &host);
    assert_int_equal(host.replace(host.opaque, r->path, "qcow2", &err), 0);
    assert_int_equal(blockdev_detect_zeroes(node_image(r)), BDEV_DETECT_ZEROES_UNMAP);
    assert_false(blockdev_discard_ignored(node_image(r)));
    struct block_status st = data_then_zeros(node_image(r));
    assert_false(st.flags & BDEV_STATUS_OFFSET_VALID);
    rig_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unmap_needs_discard_unmap),
        cmocka_unit_test(test_unmap_frees_the_cluster),
        cmocka_unit_test(test_on_keeps_the_cluster),
        cmocka_unit_test(test_discard_ignored),
        cmocka_unit_test(test_image_switch_keeps_the_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
