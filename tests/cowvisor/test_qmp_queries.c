/* The queries management tools send first, against a stub machine: every
 * one answers with QEMU 7.2's reply shape (the members QEMU's schema makes
 * mandatory, with their JSON types), refuses unexpected arguments, and
 * query-qmp-schema describes exactly the commands the server has. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "qmp_client.h"
#include "qmp_fixture.h"
#include "stub_machine.h"

static struct fixture *f;
static struct qmp_client c;

static int setup(void **state)
{
    f = start("unix:%s,server,nowait");
    return qmp_client_open(&c, f->path);
}

static int teardown(void **state)
{
    qmp_client_close(&c);
    stop(f, NULL);
    return 0;
}

/* The return value of a command that must succeed. */
static json_t *run(const char *cmd)
{
    char text[256];
    snprintf(text, sizeof(text), "{\"execute\":\"%s\"}", cmd);
    json_t *r = qmp_client_cmd(&c, text);
    if (!r || !json_object_get(r, "return")) {
        char *dump = r ? json_dumps(r, 0) : NULL;
        fail_msg("%s: %s", cmd, dump ? dump : "no reply");
    }
    json_t *ret = json_incref(json_object_get(r, "return"));
    json_decref(r);
    return ret;
}

/* The return value of cmd with arguments (a JSON object's text). */
static json_t *run_args(const char *cmd, const char *args)
{
    char text[256];
    snprintf(text, sizeof(text), "{\"execute\":\"%s\",\"arguments\":%s}", cmd, args);
    json_t *r = qmp_client_cmd(&c, text);
    json_t *ret = r ? json_object_get(r, "return") : NULL;
    if (!ret) {
        char *dump = r ? json_dumps(r, 0) : NULL;
        fail_msg("%s %s: %s", cmd, args, dump ? dump : "no reply");
    }
    json_incref(ret);
    json_decref(r);
    return ret;
}

/* cmd with args fails with a GenericError whose text has want. */
static void expect_error(const char *cmd, const char *args, const char *want)
{
    char text[256];
    snprintf(text, sizeof(text), "{\"execute\":\"%s\",\"arguments\":%s}", cmd, args);
    json_t *r = qmp_client_cmd(&c, text);
    const char *desc = json_string_value(json_object_get(json_object_get(r, "error"), "desc"));
    if (!desc || !strstr(desc, want)) {
        fail_msg("%s %s: expected an error with '%s', got '%s'", cmd, args, want, desc ? desc : "no error");
    }
    json_decref(r);
}

/* keys: "name:t name:t ...", t one of s (string), i (integer), b (boolean),
 * o (object), a (array). Every one must be there with that type. */
static void expect(json_t *o, const char *what, const char *keys)
{
    if (!json_is_object(o)) {
        fail_msg("%s: not an object", what);
    }
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", keys);
    char *save = NULL;
    for (char *k = strtok_r(buf, " ", &save); k; k = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(k, ':');
        *colon = 0;
        json_t *v = json_object_get(o, k);
        bool ok = v && (colon[1] == 's' ? json_is_string(v) : colon[1] == 'i' ? json_is_integer(v)
                      : colon[1] == 'b' ? json_is_boolean(v) : colon[1] == 'o' ? json_is_object(v)
                      : json_is_array(v));
        if (!ok) {
            fail_msg("%s: member '%s' missing or not of type %c", what, k, colon[1]);
        }
    }
}

static void test_identity(void **state)
{
    json_t *v = run("query-version");
    expect(v, "query-version", "qemu:o package:s");
    expect(json_object_get(v, "qemu"), "query-version qemu", "major:i minor:i micro:i");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "qemu"), "major")), 7);
    json_decref(v);
    v = run("query-kvm");
    expect(v, "query-kvm", "enabled:b present:b");
    json_decref(v);
    v = run("query-name");
    expect(v, "query-name", "name:s");
    assert_string_equal(json_string_value(json_object_get(v, "name")), "vm1");
    json_decref(v);
    v = run("query-uuid");
    expect(v, "query-uuid", "UUID:s");
    assert_int_equal(strlen(json_string_value(json_object_get(v, "UUID"))), 36);
    json_decref(v);
    v = run("query-target");
    expect(v, "query-target", "arch:s");
    json_decref(v);
    v = run("query-status");
    expect(v, "query-status", "status:s running:b singlestep:b");
    json_decref(v);
}

static void test_machine(void **state)
{
    json_t *v = run("query-machines");
    assert_true(json_array_size(v) >= 1);
    expect(json_array_get(v, 0), "query-machines", "name:s hotpluggable-cpus:b numa-mem-supported:b cpu-max:i "
                                                   "deprecated:b");
    json_decref(v);
    v = run("query-cpus-fast");
    assert_int_equal(json_array_size(v), 2);
    for (size_t i = 0; i < 2; i++) {
        expect(json_array_get(v, i), "query-cpus-fast", "cpu-index:i qom-path:s thread-id:i props:o target:s");
    }
    json_decref(v);
    v = run("query-hotpluggable-cpus");
    assert_int_equal(json_array_size(v), 2);
    expect(json_array_get(v, 0), "query-hotpluggable-cpus", "type:s vcpus-count:i props:o qom-path:s");
    json_decref(v);
    v = run("query-memory-size-summary");
    expect(v, "query-memory-size-summary", "base-memory:i plugged-memory:i");
    assert_int_equal(json_integer_value(json_object_get(v, "base-memory")), 64 << 20);
    json_decref(v);
    v = run("query-chardev");
    assert_true(json_array_size(v) >= 2);
    for (size_t i = 0; i < json_array_size(v); i++) {
        expect(json_array_get(v, i), "query-chardev", "label:s filename:s frontend-open:b");
    }
    json_decref(v);
    v = run("query-iothreads");
    assert_true(json_is_array(v));
    json_decref(v);
}

static void test_pci(void **state)
{
    json_t *v = run("query-pci");
    assert_int_equal(json_array_size(v), 1);
    json_t *bus = json_array_get(v, 0);
    expect(bus, "query-pci bus", "bus:i devices:a");
    json_t *devs = json_object_get(bus, "devices");
    assert_int_equal(json_array_size(devs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *d = json_array_get(devs, i);
        expect(d, "PciDeviceInfo", "bus:i slot:i function:i class_info:o id:o irq_pin:i qdev_id:s regions:a");
        expect(json_object_get(d, "id"), "PciDeviceId", "vendor:i device:i");
        expect(json_object_get(d, "class_info"), "PciDeviceClass", "class:i");
    }
    json_t *blk = json_array_get(devs, 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(blk, "id"), "vendor")), 0x1af4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(blk, "class_info"), "class")), 0x0100);
    assert_int_equal(json_integer_value(json_object_get(blk, "irq")), 11);
    json_t *bar = json_array_get(json_object_get(blk, "regions"), 0);
    expect(bar, "PciMemoryRegion", "bar:i type:s address:i size:i prefetch:b mem_type_64:b");
    assert_int_equal(json_integer_value(json_object_get(bar, "address")), 0xe0000000);
    assert_int_equal(json_integer_value(json_object_get(bar, "size")), 16384);
    json_decref(v);
}

static void test_block(void **state)
{
    json_t *v = run("query-block");
    assert_int_equal(json_array_size(v), 1);
    json_t *b = json_array_get(v, 0);
    expect(b, "BlockInfo", "device:s qdev:s type:s removable:b locked:b inserted:o io-status:s");
    json_t *ins = json_object_get(b, "inserted");
    expect(ins, "BlockDeviceInfo", "file:s node-name:s ro:b drv:s backing_file_depth:i encrypted:b "
                                   "detect_zeroes:s bps:i bps_rd:i bps_wr:i iops:i iops_rd:i iops_wr:i "
                                   "image:o write_threshold:i cache:o");
    expect(json_object_get(ins, "cache"), "BlockdevCacheInfo", "writeback:b direct:b no-flush:b");
    expect(json_object_get(ins, "image"), "ImageInfo", "filename:s format:s virtual-size:i");
    json_decref(v);
    v = run("query-named-block-nodes");
    assert_int_equal(json_array_size(v), 2);   /* the disk's format node, then its file's */
    expect(json_array_get(v, 0), "named node", "node-name:s drv:s image:o");
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 1), "drv")), "file");
    json_decref(v);
    v = run("query-blockstats");
    assert_int_equal(json_array_size(v), 1);
    json_t *st = json_array_get(v, 0);
    expect(st, "BlockStats", "device:s node-name:s qdev:s stats:o");
    json_t *s = json_object_get(st, "stats");
    expect(s, "BlockDeviceStats", "rd_bytes:i wr_bytes:i unmap_bytes:i rd_operations:i wr_operations:i "
                                  "flush_operations:i unmap_operations:i rd_total_time_ns:i wr_total_time_ns:i "
                                  "flush_total_time_ns:i unmap_total_time_ns:i wr_highest_offset:i rd_merged:i "
                                  "wr_merged:i unmap_merged:i failed_rd_operations:i failed_wr_operations:i "
                                  "failed_flush_operations:i failed_unmap_operations:i invalid_rd_operations:i "
                                  "invalid_wr_operations:i invalid_flush_operations:i "
                                  "invalid_unmap_operations:i account_invalid:b account_failed:b timed_stats:a");
    /* The machine's counters, not zeroes. */
    assert_int_equal(json_integer_value(json_object_get(s, "rd_bytes")), 12288);
    assert_int_equal(json_integer_value(json_object_get(s, "rd_operations")), 3);
    assert_int_equal(json_integer_value(json_object_get(s, "wr_operations")), 1);
    json_decref(v);
    v = run("query-block-jobs");
    assert_true(json_is_array(v));
    json_decref(v);
}

static bool has_name(json_t *list, const char *name, const char *meta)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        const char *n = json_string_value(json_object_get(e, "name"));
        const char *m = json_string_value(json_object_get(e, "meta-type"));
        if (n && strcmp(n, name) == 0 && (!meta || (m && strcmp(m, meta) == 0))) {
            return true;
        }
    }
    return false;
}

/* What management tools probe first (issue 17), all implemented. */
static const char *const probes[] = {
    "query-version", "query-commands", "query-qmp-schema", "query-kvm", "query-name", "query-uuid",
    "query-target", "query-machines", "query-cpus-fast", "query-hotpluggable-cpus",
    "query-memory-size-summary", "query-chardev", "query-pci", "query-block", "query-named-block-nodes",
    "query-blockstats", "query-block-jobs", "query-iothreads", "query-status", "query-events", "query-replay",
    NULL,
};

static void test_introspection(void **state)
{
    json_t *cmds = run("query-commands");
    json_t *schema = run("query-qmp-schema");
    for (int i = 0; probes[i]; i++) {
        if (!has_name(cmds, probes[i], NULL)) {
            fail_msg("query-commands lacks %s", probes[i]);
        }
    }
    /* The schema: each command listed, each type it names defined. */
    for (size_t i = 0; i < json_array_size(cmds); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(cmds, i), "name"));
        if (!has_name(schema, name, "command")) {
            fail_msg("query-qmp-schema lacks command %s", name);
        }
    }
    for (size_t i = 0; i < json_array_size(schema); i++) {
        json_t *e = json_array_get(schema, i);
        expect(e, "SchemaInfo", "name:s meta-type:s");
        static const char *const refs[] = { "arg-type", "ret-type", "element-type" };
        for (int k = 0; k < 3; k++) {
            const char *t = json_string_value(json_object_get(e, refs[k]));
            if (t && !has_name(schema, t, NULL)) {
                fail_msg("query-qmp-schema: %s names undefined type %s", refs[k], t);
            }
        }
        json_t *members = json_object_get(e, "members");
        for (size_t m = 0; m < json_array_size(members); m++) {
            const char *t = json_string_value(json_object_get(json_array_get(members, m), "type"));
            if (!t || !has_name(schema, t, NULL)) {
                fail_msg("query-qmp-schema: a member's type %s is undefined", t ? t : "(none)");
            }
        }
    }
    json_t *events = run("query-events");
    assert_true(has_name(events, "SHUTDOWN", NULL) && has_name(events, "STOP", NULL));
    assert_true(has_name(schema, "SHUTDOWN", "event"));
    json_decref(events);
    json_decref(cmds);
    json_decref(schema);
}

/* Arguments a query does not take are refused as QEMU refuses them. */
static void test_unexpected_arguments(void **state)
{
    for (int i = 0; probes[i]; i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"execute\":\"%s\",\"arguments\":{\"bogus\":1}}", probes[i]);
        json_t *r = qmp_client_cmd(&c, text);
        json_t *e = json_object_get(r, "error");
        if (!e || strcmp(json_string_value(json_object_get(e, "class")), "GenericError") != 0) {
            fail_msg("%s accepted an unexpected argument", probes[i]);
        }
        json_decref(r);
    }
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"query-blockstats\",\"arguments\":{\"query-nodes\":\"yes\"}}");
    assert_non_null(json_object_get(r, "error"));
    json_decref(r);
}

/* block_resize changes the size query-block reports; bad requests are
 * refused with QEMU's messages. */
static void test_block_resize(void **state)
{
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"block_resize\",\"arguments\":{\"device\":\"disk0\","
                                   "\"size\":33554432}}");
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
    json_t *v = run("query-block");
    json_t *img = json_object_get(json_object_get(json_array_get(v, 0), "inserted"), "image");
    assert_int_equal(json_integer_value(json_object_get(img, "virtual-size")), 32 << 20);
    json_decref(v);
    static const char *const bad[][2] = {
        { "{\"device\":\"disk7\",\"size\":512}", "Cannot find device=\"disk7\" nor node-name=\"\"" },
        { "{\"node-name\":\"disk0\",\"size\":-1}", "Parameter 'size' expects a >0 size" },
        { "{\"device\":\"disk0\",\"size\":1000}", "multiple of 512" },
        { "{\"size\":512}", "Cannot find device" },
        { "{\"device\":\"disk0\"}", "Parameter 'size' is missing" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"execute\":\"block_resize\",\"arguments\":%s}", bad[i][0]);
        r = qmp_client_cmd(&c, text);
        const char *desc = json_string_value(json_object_get(json_object_get(r, "error"), "desc"));
        if (!desc || !strstr(desc, bad[i][1])) {
            fail_msg("%s: got '%s'", bad[i][0], desc ? desc : "no error");
        }
        json_decref(r);
    }
}

/* query-replay: QEMU's shape (mode, icount; filename only when there is
 * a log), the exit ordinal as icount. */
static void test_replay(void **state)
{
    json_t *v = run("query-replay");
    expect(v, "query-replay", "mode:s icount:i");
    assert_string_equal(json_string_value(json_object_get(v, "mode")), "none");
    assert_null(json_object_get(v, "filename"));
    json_decref(v);
    stub_machine_set_replay(f->m, MACHINE_REPLAY_PLAY, "run.rplay", 4242);
    v = run("query-replay");
    expect(v, "query-replay", "mode:s filename:s icount:i");
    assert_string_equal(json_string_value(json_object_get(v, "mode")), "play");
    assert_string_equal(json_string_value(json_object_get(v, "filename")), "run.rplay");
    assert_int_equal(json_integer_value(json_object_get(v, "icount")), 4242);
    json_decref(v);
    /* replay-break and replay-delete-break reach the machine, checked. */
    json_decref(run_args("replay-break", "{\"icount\":5000}"));
    assert_int_equal(stub_machine_replay_break(f->m), 5000);
    json_decref(run("replay-delete-break"));
    assert_int_equal(stub_machine_replay_break(f->m), 0);
    expect_error("replay-break", "{}", "Parameter 'icount' is missing");
    expect_error("replay-break", "{\"icount\":\"x\"}", "icount");
    expect_error("replay-break", "{\"icount\":0}", "expects an exit number");
    /* replay-seek reaches the machine with its exit; its refusals come back. */
    json_decref(run_args("replay-seek", "{\"icount\":17}"));
    assert_int_equal(stub_machine_replay_seek(f->m), 17);
    expect_error("replay-seek", "{}", "Parameter 'icount' is missing");
    expect_error("replay-seek", "{\"icount\":-3}", "expects an exit number");
    stub_machine_set_replay(f->m, MACHINE_REPLAY_RECORD, "rec.rplay", 7);
    v = run("query-replay");
    assert_string_equal(json_string_value(json_object_get(v, "mode")), "record");
    json_decref(v);
    expect_error("replay-break", "{\"icount\":9}", "setting the breakpoint is allowed only in play mode");
    expect_error("replay-seek", "{\"icount\":9}", "replay must be enabled to seek");
    /* HMP qemu-io may read a recording's disk, not write it (as block jobs may not). */
    v = run_args("human-monitor-command", "{\"command-line\":\"qemu-io disk0 \\\"write 0 512\\\"\"}");
    assert_string_equal(json_string_value(v), "Node 'disk0' is busy: block device is in use by record/replay\r\n");
    json_decref(v);
    v = run_args("human-monitor-command", "{\"command-line\":\"qemu-io disk0 \\\"read 0 512\\\"\"}");
    assert_null(strstr(json_string_value(v), "busy"));
    json_decref(v);
    stub_machine_set_replay(f->m, MACHINE_REPLAY_OFF, NULL, 0);
    expect_error("replay-delete-break", "{}", "only in play mode");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_machine),
        cmocka_unit_test(test_pci),
        cmocka_unit_test(test_block),
        cmocka_unit_test(test_introspection),
        cmocka_unit_test(test_unexpected_arguments),
        cmocka_unit_test(test_block_resize),
        cmocka_unit_test(test_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
