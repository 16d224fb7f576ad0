/* device_add/device_del and system_powerdown through QMP on a stub
 * machine: QEMU's argument errors, the reply and event shapes, the
 * DEVICE_DELETED pair once the guest ejects (never before), and the node
 * taken while the device lives. The machine's own rules are tested on a
 * bare machine (tests/machine/test_hotplug.c); the replies' words against
 * qemu-system-x86_64 in qmp_device_compare.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "qmp_client.h"
#include "qmp_fixture.h"
#include "stub_machine.h"

static struct fixture *f;
static struct qmp_client c;

static void expect_error(const char *text, const char *cls, const char *desc)
{
    json_t *r = qmp_client_cmd(&c, text);
    json_t *e = json_object_get(r, "error");
    if (!e) {
        char *dump = r ? json_dumps(r, 0) : NULL;
        fail_msg("%s: no error: %s", text, dump ? dump : "no reply");
    }
    assert_string_equal(json_string_value(json_object_get(e, "class")), cls);
    assert_string_equal(json_string_value(json_object_get(e, "desc")), desc);
    json_decref(r);
}

static void expect_ok(const char *text)
{
    json_t *r = qmp_client_cmd(&c, text);
    if (!r || !json_object_get(r, "return")) {
        char *dump = r ? json_dumps(r, 0) : NULL;
        fail_msg("%s: %s", text, dump ? dump : "no reply");
    }
    json_decref(r);
}

/* The next message, which must be event name; returns its data. */
static json_t *expect_event(const char *name)
{
    json_t *ev = qmp_client_read(&c, 5000);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), name);
    json_t *data = json_incref(json_object_get(ev, "data"));
    json_decref(ev);
    return data;
}

static void test_device_add_del(void **state)
{
    f = start("unix:%s,server,nowait");
    assert_int_equal(qmp_client_open(&c, f->path), 0);
    expect_ok("{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"null-co\",\"node-name\":\"n1\"}}");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pcx\",\"id\":\"d1\",\"drive\":\"n1\"}}",
                 "GenericError", "'virtio-blk-pcx' is not a valid device model name");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\"}}",
                 "GenericError", "drive property not set");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\","
                 "\"bogus\":\"x\"}}", "GenericError", "Property 'virtio-blk-pci.bogus' not found");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"no\"}}",
                 "GenericError", "Property 'virtio-blk-device.drive' can't find value 'no'");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"id\":\"d1\"}}", "GenericError",
                 "Parameter 'driver' is missing");
    expect_ok("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\"}}");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\"}}",
                 "GenericError", "Duplicate device ID 'd1'");
    /* The node is the device's now. */
    expect_error("{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"n1\"}}", "GenericError",
                 "Node n1 is in use");
    expect_error("{\"execute\":\"device_del\",\"arguments\":{\"id\":\"nope\"}}", "DeviceNotFound",
                 "Device 'nope' not found");
    expect_ok("{\"execute\":\"device_del\",\"arguments\":{\"id\":\"d1\"}}");
    expect_error("{\"execute\":\"device_del\",\"arguments\":{\"id\":\"d1\"}}", "GenericError",
                 "Device d1 is already in the process of unplug");
    /* Nothing is deleted until the guest ejects: then the backend, then d1. */
    json_t *none = qmp_client_read(&c, 200);
    assert_null(none);
    stub_machine_guest_eject(f->m, "d1");
    json_t *d = expect_event("DEVICE_DELETED");
    assert_string_equal(json_string_value(json_object_get(d, "path")), "/machine/peripheral/d1/virtio-backend");
    assert_null(json_object_get(d, "device"));
    json_decref(d);
    d = expect_event("DEVICE_DELETED");
    assert_string_equal(json_string_value(json_object_get(d, "device")), "d1");
    assert_string_equal(json_string_value(json_object_get(d, "path")), "/machine/peripheral/d1");
    json_decref(d);
    expect_error("{\"execute\":\"device_del\",\"arguments\":{\"id\":\"d1\"}}", "DeviceNotFound",
                 "Device 'd1' not found");
    expect_ok("{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"n1\"}}");
    qmp_client_close(&c);
    stop(f, NULL);
}

/* queue-threads and poll-max-ns (ours, as --disk's) reach the machine;
 * a poll-max-ns out of range or without queue threads is refused, named. */
static void test_device_add_serving_options(void **state)
{
    f = start("unix:%s,server,nowait");
    assert_int_equal(qmp_client_open(&c, f->path), 0);
    expect_ok("{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"null-co\",\"node-name\":\"n1\"}}");
    expect_ok("{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"null-co\",\"node-name\":\"n2\"}}");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\","
                 "\"poll-max-ns\":1000}}", "GenericError",
                 "Property 'virtio-blk-pci.poll-max-ns' needs queue-threads=true (only queue threads poll)");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\","
                 "\"queue-threads\":true,\"poll-max-ns\":-1}}", "GenericError",
                 "Property 'virtio-blk-pci.poll-max-ns' must be 0 to 1000000000 nanoseconds, not -1");
    expect_error("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\","
                 "\"queue-threads\":\"yes\"}}", "GenericError",
                 "Invalid parameter type for 'queue-threads', expected: boolean");
    expect_ok("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d1\",\"drive\":\"n1\","
              "\"queue-threads\":true,\"poll-max-ns\":5000}}");
    expect_ok("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\",\"id\":\"d2\",\"drive\":\"n2\"}}");
    struct machine_blk_options o;
    assert_true(stub_machine_device_serving(f->m, "d1", &o));
    assert_true(o.queue_threads);
    assert_int_equal(o.poll_max_ns, 5000);
    assert_true(stub_machine_device_serving(f->m, "d2", &o));
    assert_false(o.queue_threads);
    qmp_client_close(&c);
    stop(f, NULL);
}

static void test_system_powerdown_presses_the_button(void **state)
{
    f = start("unix:%s,server,nowait");
    assert_int_equal(qmp_client_open(&c, f->path), 0);
    assert_true(qmp_client_write(&c, "{\"execute\":\"system_powerdown\"}", 5000));
    json_decref(expect_event("POWERDOWN"));
    json_t *r = qmp_client_read(&c, 5000);
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
    assert_int_equal(stub_machine_calls(f->m, "power-button"), 1);
    qmp_client_close(&c);
    stop(f, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_add_del),
        cmocka_unit_test(test_device_add_serving_options),
        cmocka_unit_test(test_system_powerdown_presses_the_button),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
