/* blockdev-add's children given by node name, nested: a qcow2 node over a
 * raw node over a file node opens the file the file node names. The raw
 * node's stored options name "f0" as a string; resolved one level only,
 * that string was taken as a filename, relative to the current directory
 * (found by review). QEMU accepts this graph. And what QEMU's permissions
 * refuse: two writers of one node. */
#include <jansson.h>
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

#include "block/blockdev.h"
#include "machine/block_nodes.h"

static void add(struct block_node_table *t, const char *json)
{
    struct error err = { 0 };
    json_t *args = json_loads(json, 0, NULL);
    assert_non_null(args);
    if (block_nodes_add(t, args, &err) < 0) {
        fail_msg("blockdev-add %s: %s", json, err.msg);
    }
    json_decref(args);
}

static void test_nested_named_children(void **state)
{
    char dir[] = "/tmp/cowvisor-children-XXXXXX", cmd[512], json[512], old_cwd[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s/img.qcow2 1M && "
             "qemu-io -c 'write -P 0x5a 64k 4k' %s/img.qcow2 >/dev/null", dir, dir);
    assert_int_equal(system(cmd), 0);
    /* A decoy where the wrong reading of "f0" would look. */
    assert_non_null(getcwd(old_cwd, sizeof(old_cwd)));
    assert_int_equal(chdir(dir), 0);
    FILE *decoy = fopen("f0", "w");
    assert_non_null(decoy);
    fputs("not an image", decoy);
    fclose(decoy);

    struct block_node_table t = { 0 };
    snprintf(json, sizeof(json), "{\"driver\":\"file\",\"node-name\":\"f0\",\"filename\":\"%s/img.qcow2\"}", dir);
    add(&t, json);
    add(&t, "{\"driver\":\"raw\",\"node-name\":\"r0\",\"file\":\"f0\"}");
    add(&t, "{\"driver\":\"qcow2\",\"node-name\":\"q0\",\"file\":\"r0\"}");
    struct block_node *q0 = NULL;
    for (int i = 0; i < t.count; i++) {
        q0 = strcmp(t.nodes[i]->name, "q0") == 0 ? t.nodes[i] : q0;
    }
    assert_non_null(q0);
    assert_int_equal(blockdev_size(q0->node.bd), 1 << 20);
    uint8_t buf[4096];
    struct error err = { 0 };
    assert_int_equal(blockdev_pread(q0->node.bd, 64 << 10, buf, sizeof(buf), &err), 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        assert_int_equal(buf[i], 0x5a);
    }
    /* A child that names a node that is not there is refused by name. */
    json_t *bad = json_loads("{\"driver\":\"qcow2\",\"node-name\":\"q1\",\"file\":\"nope\"}", 0, NULL);
    assert_int_equal(block_nodes_add(&t, bad, &err), -ENOENT);
    assert_string_equal(err.msg, "Cannot find device='nope' nor node-name='nope'");
    json_decref(bad);

    block_nodes_close_all(&t);
    assert_int_equal(chdir(old_cwd), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static struct block_node *node(struct block_node_table *t, const char *name)
{
    for (int i = 0; i < t->count; i++) {
        if (strcmp(t->nodes[i]->name, name) == 0) {
            return t->nodes[i];
        }
    }
    fail_msg("no node %s", name);
    return NULL;
}

static int add_error(struct block_node_table *t, const char *json, struct error *err)
{
    json_t *args = json_loads(json, 0, NULL);
    assert_non_null(args);
    int ret = block_nodes_add(t, args, err);
    json_decref(args);
    return ret;
}

/* Two writers of one node are refused with QEMU 7.2's words (taken from a
 * qemu-system-x86_64 session with the same commands): a second qcow2 node
 * over a file node another one writes (two allocators on one file), a
 * device on a node a qcow2 node uses as its file (guest writes inside the
 * image's metadata), and a qcow2 node over the file a device writes. A
 * read-only user takes nothing from the writer. (Found by review.) */
static void test_two_writers_refused(void **state)
{
    char path[] = "/tmp/cowvisor-perm-XXXXXX", cmd[256], json[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 1M", path);
    assert_int_equal(system(cmd), 0);
    struct block_node_table t = { 0 };
    struct error err = { 0 };
    snprintf(json, sizeof(json), "{\"driver\":\"file\",\"node-name\":\"f0\",\"filename\":\"%s\"}", path);
    add(&t, json);
    add(&t, "{\"driver\":\"qcow2\",\"node-name\":\"q0\",\"file\":\"f0\"}");
    assert_int_equal(add_error(&t, "{\"driver\":\"qcow2\",\"node-name\":\"q1\",\"file\":\"f0\"}", &err), -EPERM);
    assert_string_equal(err.msg, "Permission conflict on node 'f0': permissions 'write, resize' are both required "
                        "by node 'q0' (uses node 'f0' as 'file' child) and unshared by node 'q1' (uses node 'f0' "
                        "as 'file' child).");
    error_clear(&err);
    assert_int_equal(t.count, 2);
    assert_int_equal(block_node_attach(&t, node(&t, "f0"), "/machine/peripheral/d1", &err), -EPERM);
    assert_string_equal(err.msg, "Permission conflict on node 'f0': permissions 'write' are both required by node "
                        "'q0' (uses node 'f0' as 'file' child) and unshared by block device "
                        "'/machine/peripheral/d1/virtio-backend' (uses node 'f0' as 'root' child).");
    error_clear(&err);
    add(&t, "{\"driver\":\"qcow2\",\"node-name\":\"r1\",\"file\":\"f0\",\"read-only\":true}");
    assert_int_equal(block_node_attach(&t, node(&t, "q0"), "/machine/peripheral/d2", &err), 0);

    /* A read-only parent first does not hide a writable one after it. */
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s.third 1M", path);
    assert_int_equal(system(cmd), 0);
    snprintf(json, sizeof(json), "{\"driver\":\"file\",\"node-name\":\"f2\",\"filename\":\"%s.third\"}", path);
    add(&t, json);
    add(&t, "{\"driver\":\"qcow2\",\"node-name\":\"ro2\",\"file\":\"f2\",\"read-only\":true}");
    add(&t, "{\"driver\":\"qcow2\",\"node-name\":\"q3\",\"file\":\"f2\"}");
    assert_int_equal(block_node_attach(&t, node(&t, "f2"), "/machine/peripheral/d4", &err), -EPERM);
    assert_non_null(strstr(err.msg, "required by node 'q3'"));
    error_clear(&err);
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s.second 1M", path);
    assert_int_equal(system(cmd), 0);
    snprintf(json, sizeof(json), "{\"driver\":\"file\",\"node-name\":\"f1\",\"filename\":\"%s.second\"}", path);
    add(&t, json);
    assert_int_equal(block_node_attach(&t, node(&t, "f1"), "/machine/peripheral/d3", &err), 0);
    assert_int_equal(add_error(&t, "{\"driver\":\"qcow2\",\"node-name\":\"q2\",\"file\":\"f1\"}", &err), -EPERM);
    assert_string_equal(err.msg, "Permission conflict on node 'f1': permissions 'write' are both required by block "
                        "device '/machine/peripheral/d3/virtio-backend' (uses node 'f1' as 'root' child) and "
                        "unshared by node 'q2' (uses node 'f1' as 'file' child).");
    error_clear(&err);
    block_node_detach(node(&t, "q0"));
    block_node_detach(node(&t, "f1"));
    block_nodes_close_all(&t);
    unlink(path);
    snprintf(cmd, sizeof(cmd), "%s.second", path);
    unlink(cmd);
    snprintf(cmd, sizeof(cmd), "%s.third", path);
    unlink(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_named_children),
        cmocka_unit_test(test_two_writers_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
