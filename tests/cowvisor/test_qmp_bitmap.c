/* Dirty bitmaps through QMP on a stub machine whose disk is a real qcow2
 * image: writes to the disk (made here through the block layer, standing in
 * for the guest's virtio-blk requests) show in query-block's counts while a
 * bitmap records, not while it is disabled; clear and merge act on them; on
 * quit the persistent bitmap reaches the image with the recorded ranges.
 * (The replies' words are compared with QEMU's in qmp_bitmap_compare.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "qmp_client.h"
#include "qmp_fixture.h"

static char dir[] = "/tmp/cowvisor-qmp-bitmap-XXXXXX";
static char image[128];
static struct machine_config cfg;
static struct fixture *f;
static struct qmp_client c;

static int setup(void **state)
{
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(image, sizeof(image), "%s/disk.qcow2", dir);
    struct blockdev_create_opts o;
    blockdev_create_opts_init(&o);
    o.size = 16 << 20;
    if (blockdev_create(image, &o, NULL) < 0) {
        return -1;
    }
    cfg = qmp_fixture_config;
    cfg.disks[0] = (struct disk_config){ .file = image, .format = "qcow2" };
    f = start_config(&cfg, "unix:%s,server,nowait");
    return qmp_client_open(&c, f->path);
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void cmd_ok(const char *text)
{
    json_t *r = qmp_client_cmd(&c, text);
    if (!r || !json_object_get(r, "return")) {
        char *dump = r ? json_dumps(r, 0) : NULL;
        fail_msg("%s: %s", text, dump ? dump : "no reply");
    }
    json_decref(r);
}

/* The dirty count query-block reports for a bitmap of disk0 (-1: absent). */
static json_int_t count_of(const char *name)
{
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"query-block\"}");
    json_t *inserted = json_object_get(json_array_get(json_object_get(r, "return"), 0), "inserted");
    json_int_t count = -1;
    size_t i;
    json_t *bm;
    json_array_foreach(json_object_get(inserted, "dirty-bitmaps"), i, bm) {
        if (strcmp(json_string_value(json_object_get(bm, "name")), name) == 0) {
            count = json_integer_value(json_object_get(bm, "count"));
        }
    }
    json_decref(r);
    return count;
}

/* A write to disk0 as the guest's would reach it. */
static void disk_write(uint64_t off, size_t len)
{
    struct disk_layer l[4];
    bool ro;
    assert_int_equal(machine_disk_chain(f->m, 0, l, 4, &ro), 1);
    assert_non_null(l[0].bd);
    uint8_t *buf = calloc(1, len);
    assert_int_equal(blockdev_pwrite(l[0].bd, off, buf, len, NULL), 0);
    free(buf);
}

static void test_tracking(void **state)
{
    cmd_ok("{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"disk0\","
           "\"name\":\"inc\",\"granularity\":4096,\"persistent\":true}}");
    cmd_ok("{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"disk0\","
           "\"name\":\"all\",\"disabled\":true}}");
    assert_int_equal(count_of("inc"), 0);
    disk_write(8192, 100);
    disk_write(1 << 20, 8192);
    assert_int_equal(count_of("inc"), 4096 + 8192);
    assert_int_equal(count_of("all"), 0);
    cmd_ok("{\"execute\":\"block-dirty-bitmap-disable\",\"arguments\":{\"node\":\"disk0\",\"name\":\"inc\"}}");
    disk_write(2 << 20, 4096);
    assert_int_equal(count_of("inc"), 4096 + 8192);
    cmd_ok("{\"execute\":\"block-dirty-bitmap-merge\",\"arguments\":{\"node\":\"disk0\","
           "\"target\":\"all\",\"bitmaps\":[\"inc\"]}}");
    /* 64 KiB granules of the default granularity cover both ranges. */
    assert_int_equal(count_of("all"), 2 * 65536);
    cmd_ok("{\"execute\":\"block-dirty-bitmap-clear\",\"arguments\":{\"node\":\"disk0\",\"name\":\"all\"}}");
    assert_int_equal(count_of("all"), 0);
    cmd_ok("{\"execute\":\"block-dirty-bitmap-enable\",\"arguments\":{\"node\":\"disk0\",\"name\":\"inc\"}}");
    disk_write(3 << 20, 1);
    assert_int_equal(count_of("inc"), 4096 + 8192 + 4096);
}

/* A node whose bitmaps were all removed lists none (found by the QMP
 * fuzzer: the empty list leaked on every query-named-block-nodes, which
 * LeakSanitizer reports when the test ends). */
static void test_all_removed_lists_none(void **state)
{
    cmd_ok("{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"null-co\",\"node-name\":\"n0\"}}");
    cmd_ok("{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"n0\",\"name\":\"b\"}}");
    cmd_ok("{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"n0\",\"name\":\"b\"}}");
    for (int i = 0; i < 3; i++) {
        json_t *r = qmp_client_cmd(&c, "{\"execute\":\"query-named-block-nodes\"}");
        json_t *nodes = json_object_get(r, "return");
        size_t k;
        json_t *node;
        bool seen = false;
        json_array_foreach(nodes, k, node) {
            if (strcmp(json_string_value(json_object_get(node, "node-name")), "n0") == 0) {
                seen = true;
                assert_null(json_object_get(node, "dirty-bitmaps"));
            }
        }
        assert_true(seen);
        json_decref(r);
    }
    cmd_ok("{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"n0\"}}");
}

/* quit closes the disk: the persistent bitmap is stored with its ranges,
 * the other one is gone, and the image is consistent for QEMU. */
static void test_stored_on_quit(void **state)
{
    qmp_client_close(&c);
    stop(f, NULL);
    struct blockdev *bd;
    struct blockdev_open_opts o = { .format = "qcow2", .flags = BDEV_READ_ONLY };
    assert_int_equal(blockdev_open(&bd, image, &o, NULL), 0);
    struct blockdev_bitmap_info *list;
    int n;
    assert_int_equal(blockdev_bitmap_list(bd, &list, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "inc");
    assert_true(list[0].persistent);
    assert_true(list[0].recording);
    assert_int_equal(list[0].count, 4096 + 8192 + 4096);
    blockdev_bitmap_list_free(list, n);
    blockdev_close(bd);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", image);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracking),
        cmocka_unit_test(test_all_removed_lists_none),
        cmocka_unit_test(test_stored_on_quit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
