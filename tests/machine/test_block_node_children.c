/* blockdev-add's children given by node name, nested: a qcow2 node over a
 * raw node over a file node opens the file the file node names. The raw
 * node's stored options name "f0" as a string; resolved one level only,
 * that string was taken as a filename, relative to the current directory
 * (found by review). QEMU accepts this graph. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_named_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
