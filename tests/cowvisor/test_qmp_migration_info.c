/* query-migrate's "ram" and "disk" members against QEMU 7.2's: a
 * qemu-system-x86_64 -M none migrates a drive with blk=true to exec: at
 * 1 MiB/s (so it is still active when asked), and the members of its
 * reply must be the ones cowvisor builds from its statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "qmp_migration_info.h"

static char dir[64];

static const char *qemu_session =
    /* meson sets MALLOC_PERTURB_, under which this QEMU finishes at once */
    "set -e; unset MALLOC_PERTURB_; cd %s; qemu-img create -q -f qcow2 d.qcow2 64M; qemu-io -f qcow2 -c 'write -P 1 0 48M' d.qcow2 >/dev/null;"
    "(printf '{\"execute\":\"qmp_capabilities\"}\\n"
    "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":1048576}}\\n"
    "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat >/dev/null\",\"blk\":true}}\\n';"
    " for i in 1 2 3 4 5 6 7 8; do sleep 0.2; printf '{\"execute\":\"query-migrate\"}\\n'; done;"
    " printf '{\"execute\":\"migrate_cancel\"}\\n{\"execute\":\"quit\"}\\n') |"
    " timeout 30 qemu-system-x86_64 -M none -nodefaults -display none -drive file=d.qcow2,if=none,id=d0 -qmp stdio";

/* QEMU's first reply to query-migrate that shows the disk copy, or NULL
 * (asked a few times: how soon the copy shows varies). */
static json_t *qemu_query_migrate(void)
{
    char cmd[1024], line[8192];
    snprintf(cmd, sizeof(cmd), qemu_session, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_t *found = NULL;
    while (!found && fgets(line, sizeof(line), p)) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *ret = j ? json_object_get(j, "return") : NULL;
        if (ret && json_object_get(ret, "ram") && json_object_get(ret, "disk")) {
            found = json_incref(ret);
        }
        json_decref(j);
    }
    while (fgets(line, sizeof(line), p)) {
    }
    pclose(p);
    return found;
}

/* Every member of one object is in the other, and the other way round. */
static void assert_same_members(json_t *qemu, json_t *ours, const char *what)
{
    assert_non_null(qemu);
    assert_non_null(ours);
    const char *key;
    json_t *v;
    json_object_foreach(qemu, key, v) {
        if (!json_object_get(ours, key)) {
            fail_msg("%s: QEMU reports '%s', cowvisor does not", what, key);
        }
    }
    json_object_foreach(ours, key, v) {
        if (!json_object_get(qemu, key)) {
            fail_msg("%s: cowvisor reports '%s', QEMU does not", what, key);
        }
    }
}

static void test_members_match_qemu(void **state)
{
    if (system("command -v qemu-system-x86_64 >/dev/null") != 0) {
        skip();
    }
    json_t *q = qemu_query_migrate();
    if (!q) {
        fail_msg("no query-migrate reply with \"disk\" from qemu-system-x86_64");
    }
    assert_string_equal(json_string_value(json_object_get(q, "status")), "active");
    struct migration_stats st = { .status = MIGRATION_ACTIVE, .disk_total = 64 << 20, .disk_transferred = 1 };
    json_t *ours = json_object();
    qmp_migration_put_stats(ours, &st);
    assert_same_members(json_object_get(q, "ram"), json_object_get(ours, "ram"), "ram");
    assert_same_members(json_object_get(q, "disk"), json_object_get(ours, "disk"), "disk");
    /* QEMU counts a drive's whole virtual size. */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(q, "disk"), "total")), 64 << 20);
    json_decref(ours);
    json_decref(q);
}

/* Only while the copy runs, as QEMU drops its block migration state. */
static void test_disk_only_while_copying(void **state)
{
    struct migration_stats st = { .status = MIGRATION_COMPLETED, .disk_total = 1 << 20 };
    json_t *o = json_object();
    qmp_migration_put_stats(o, &st);
    assert_null(json_object_get(o, "disk"));
    st.status = MIGRATION_ACTIVE;
    st.disk_total = 0;      /* shared storage: no copy */
    qmp_migration_put_stats(o, &st);
    assert_null(json_object_get(o, "disk"));
    json_decref(o);
}

/* QEMU shows the downtime once completed and the expected one before,
 * post-copy included (cowvisor showed the downtime in postcopy-active). */
static void test_downtime_or_expected(void **state)
{
    const enum migration_status before[] = { MIGRATION_ACTIVE, MIGRATION_POSTCOPY_ACTIVE, MIGRATION_POSTCOPY_PAUSED };
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        struct migration_stats st = { .status = before[i], .expected_downtime_ms = 42, .downtime_ms = 7 };
        json_t *o = json_object();
        qmp_migration_put_times(o, &st);
        assert_int_equal(json_integer_value(json_object_get(o, "expected-downtime")), 42);
        assert_null(json_object_get(o, "downtime"));
        assert_non_null(json_object_get(o, "total-time"));
        json_decref(o);
    }
    struct migration_stats st = { .status = MIGRATION_COMPLETED, .expected_downtime_ms = 42, .downtime_ms = 7 };
    json_t *o = json_object();
    qmp_migration_put_times(o, &st);
    assert_int_equal(json_integer_value(json_object_get(o, "downtime")), 7);
    assert_null(json_object_get(o, "expected-downtime"));
    json_decref(o);
}

/* QEMU's destination after a post-copy with postcopy-blocktime on (two
 * qemu-system-x86_64 -accel tcg, qemu_postcopy_blocktime.py): its reply
 * once completed, or NULL. */
static json_t *qemu_destination_reply(int cpus)
{
    char cmd[512], line[8192];
    snprintf(cmd, sizeof(cmd), "timeout 60 python3 %s %s %d", BLOCKTIME_SCRIPT, dir, cpus);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_t *j = fgets(line, sizeof(line), p) ? json_loads(line, 0, NULL) : NULL;
    while (fgets(line, sizeof(line), p)) {
    }
    pclose(p);
    return j;
}

static void assert_uint32_list(json_t *list, size_t n, const char *who)
{
    if (!json_is_array(list) || json_array_size(list) != n) {
        fail_msg("%s: postcopy-vcpu-blocktime is not a list of %zu", who, n);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(list, i);
        assert_true(json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= UINT32_MAX);
    }
}

/* The destination's reply once completed: status, postcopy-blocktime and
 * one blocktime per vCPU (faulted or not), all integers, as QEMU's. */
static void test_blocktime_matches_qemu(void **state)
{
    if (system("command -v qemu-system-x86_64 >/dev/null") != 0) {
        skip();
    }
    json_t *q = qemu_destination_reply(2);
    if (!q) {
        fail_msg("no query-migrate reply from QEMU's destination (qemu_postcopy_blocktime.py)");
    }
    assert_string_equal(json_string_value(json_object_get(q, "status")), "completed");
    struct migration_stats st = { .status = MIGRATION_COMPLETED, .postcopy_ran = true, .postcopy_vcpus = 2,
                                  .postcopy_all_vcpus_blocktime_ms = 3, .postcopy_vcpu_blocktime_ms = { 5, 0 } };
    json_t *ours = json_pack("{s:s}", "status", "completed");
    qmp_migration_put_blocktime(ours, &st);
    assert_same_members(q, ours, "the destination's query-migrate");
    assert_true(json_is_integer(json_object_get(q, "postcopy-blocktime")));
    assert_true(json_is_integer(json_object_get(ours, "postcopy-blocktime")));
    assert_uint32_list(json_object_get(q, "postcopy-vcpu-blocktime"), 2, "QEMU");
    assert_uint32_list(json_object_get(ours, "postcopy-vcpu-blocktime"), 2, "cowvisor");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(ours, "postcopy-vcpu-blocktime"), 0)), 5);
    assert_int_equal(json_integer_value(json_object_get(ours, "postcopy-blocktime")), 3);
    json_decref(ours);
    json_decref(q);
}

/* QEMU shows neither before completion, nor after a migration that never
 * went post-copy (its blocktime context is made at post-copy's start). */
static void test_blocktime_only_after_postcopy(void **state)
{
    const enum migration_status before[] = { MIGRATION_ACTIVE, MIGRATION_POSTCOPY_ACTIVE, MIGRATION_POSTCOPY_PAUSED,
                                             MIGRATION_FAILED };
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        struct migration_stats st = { .status = before[i], .postcopy_ran = true, .postcopy_vcpus = 1 };
        json_t *o = json_object();
        qmp_migration_put_blocktime(o, &st);
        assert_int_equal(json_object_size(o), 0);
        json_decref(o);
    }
    struct migration_stats st = { .status = MIGRATION_COMPLETED, .postcopy_vcpus = 1 };
    json_t *o = json_object();
    qmp_migration_put_blocktime(o, &st);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/cowvisor-miginfo.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_match_qemu),
        cmocka_unit_test(test_disk_only_while_copying),
        cmocka_unit_test(test_downtime_or_expected),
        cmocka_unit_test(test_blocktime_matches_qemu),
        cmocka_unit_test(test_blocktime_only_after_postcopy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
