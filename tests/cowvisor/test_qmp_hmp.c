/* HMP through human-monitor-command against a stub machine: the info set
 * operators type (status, version, block, blockstats, registers, cpus,
 * qtree, mtree, snapshots, migrate) and help, with QEMU's text. */
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

/* The text of an HMP command line (malloc'd); fails the test on a QMP error. */
static char *hmp(const char *line, int cpu)
{
    char text[256];
    if (cpu >= 0) {
        snprintf(text, sizeof(text), "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"%s\","
                 "\"cpu-index\":%d}}", line, cpu);
    } else {
        snprintf(text, sizeof(text), "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"%s\"}}",
                 line);
    }
    json_t *r = qmp_client_cmd(&c, text);
    const char *s = json_string_value(json_object_get(r, "return"));
    if (!s) {
        char *dump = r ? json_dumps(r, 0) : NULL;
        fail_msg("%s: %s", line, dump ? dump : "no reply");
    }
    char *out = strdup(s);
    json_decref(r);
    return out;
}

static void expect_text(const char *line, const char *needle)
{
    char *out = hmp(line, -1);
    if (!strstr(out, needle)) {
        fail_msg("'%s' printed '%s', without '%s'", line, out, needle);
    }
    free(out);
}

static void test_info_set(void **state)
{
    expect_text("info status", "VM status: running\r\n");
    expect_text("info version", "7.2.0 (cowvisor");
    expect_text("info name", "vm1\r\n");
    expect_text("info block", "disk0 (#block001): /nonexistent/disk.qcow2 (qcow2)\r\n");
    expect_text("info block", "Attached to:");
    expect_text("info blockstats", "disk0: rd_bytes=12288 wr_bytes=4096 rd_operations=3 wr_operations=1");
    expect_text("info cpus", "* CPU #0: thread_id=");
    expect_text("info cpus", "  CPU #1: thread_id=");
    expect_text("info qtree", "bus: pci.0");
    expect_text("info qtree", "pci id 1af4:1042");
    expect_text("info mtree", "(prio 0, ram): pc.ram");
    expect_text("info mtree", "00000000e0000000-00000000e0003fff");
    expect_text("info migrate", "globals:\r\n");
    expect_text("info snapshots", "no guest");
    expect_text("info nonsense", "unknown info command: 'nonsense'");
    expect_text("help", "info [subcommand]");
    expect_text("help info", "info registers");
    expect_text("info", "info blockstats");
}

/* The VM pauses while its registers are read and runs again after. */
static void test_info_registers(void **state)
{
    int pauses = stub_machine_calls(f->m, "pause"), resumes = stub_machine_calls(f->m, "resume");
    char *out = hmp("info registers", 1);
    assert_non_null(strstr(out, "RIP=0000000000100001"));
    assert_non_null(strstr(out, "RAX=0000000000001234"));
    assert_non_null(strstr(out, "CS =0008 0000000000000000 ffffffff 00a09b00\r\n"));
    assert_non_null(strstr(out, "EFER=0000000000000500"));
    free(out);
    out = hmp("info registers -a", -1);
    assert_non_null(strstr(out, "CPU#0\r\n"));
    assert_non_null(strstr(out, "CPU#1\r\n"));
    free(out);
    assert_int_equal(stub_machine_calls(f->m, "pause"), pauses + 2);
    assert_int_equal(stub_machine_calls(f->m, "resume"), resumes + 2);
    expect_text("info status", "VM status: running");
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"human-monitor-command\",\"arguments\":"
                                   "{\"command-line\":\"info registers\",\"cpu-index\":9}}");
    assert_non_null(json_object_get(r, "error"));
    json_decref(r);
}

/* HMP's stop and cont, short forms included. */
static void test_run_control(void **state)
{
    free(hmp("s", -1));
    expect_text("info status", "VM status: paused");
    free(hmp("c", -1));
    expect_text("info status", "VM status: running");
    expect_text("frobnicate", "unknown command: 'frobnicate'");
    expect_text("info status extra", "extraneous characters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_set),
        cmocka_unit_test(test_info_registers),
        cmocka_unit_test(test_run_control),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
