/* migrate-set-parameters and query-migrate-parameters against QEMU 7.2's:
 * the same sequence of commands goes to qemu-system-x86_64 and to
 * cowvisor's translation (qmp_migration_params.c, with the migration
 * library's range checks); each must succeed or fail alike, with the same
 * words, and the values queried at the end must be the same. */
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
#include <jansson.h>

#include "qmp_migration_params.h"

/* In order: each builds on the ones before (QEMU checks the merged set). */
static const char *const cases[] = {
    "{\"downtime-limit\":2000001}",
    "{\"downtime-limit\":-1}",
    "{\"downtime-limit\":\"x\"}",
    "{\"downtime-limit\":1.5}",
    "{\"downtime-limit\":2000000}",
    "{\"downtime-limit\":0}",
    "{\"max-bandwidth\":\"x\"}",
    "{\"max-bandwidth\":0}",
    "{\"max-postcopy-bandwidth\":true}",
    "{\"cpu-throttle-initial\":0}",
    "{\"cpu-throttle-initial\":100}",
    "{\"cpu-throttle-initial\":300}",
    "{\"cpu-throttle-initial\":-1}",
    "{\"cpu-throttle-increment\":100}",
    "{\"cpu-throttle-increment\":-5}",
    "{\"throttle-trigger-threshold\":0}",
    "{\"throttle-trigger-threshold\":101}",
    "{\"cpu-throttle-initial\":0,\"throttle-trigger-threshold\":0}",
    "{\"max-cpu-throttle\":100}",
    "{\"max-cpu-throttle\":10}",
    "{\"max-cpu-throttle\":10,\"cpu-throttle-initial\":5}",
    "{\"cpu-throttle-initial\":30}",
    "{\"max-cpu-throttle\":60,\"cpu-throttle-initial\":60,\"cpu-throttle-increment\":7}",
    "{\"cpu-throttle-tailslow\":1}",
    "{\"cpu-throttle-tailslow\":true,\"throttle-trigger-threshold\":80}",
    "{\"bogus\":1}",
    "{\"bogus\":1,\"downtime-limit\":\"x\"}",
    "{\"max-bandwidth\":1048576,\"max-postcopy-bandwidth\":4096,\"downtime-limit\":123}",
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* QEMU's reply to each case ("" for success, else its error's desc) and
 * its query-migrate-parameters at the start and the end. */
struct qemu_run {
    char desc[NCASES][512];
    json_t *before, *after;
};

static json_t *qmp_return(const char *line)
{
    json_t *j = json_loads(line, 0, NULL);
    json_t *ret = j ? json_incref(json_object_get(j, "return")) : NULL;
    json_decref(j);
    return ret;
}

static bool run_qemu(struct qemu_run *q)
{
    char script[] = "/tmp/cowvisor-migparams.XXXXXX";
    int fd = mkstemp(script);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-migrate-parameters\"}\n");
    for (size_t i = 0; i < NCASES; i++) {
        fprintf(f, "{\"execute\":\"migrate-set-parameters\",\"arguments\":%s}\n", cases[i]);
    }
    fprintf(f, "{\"execute\":\"query-migrate-parameters\"}\n{\"execute\":\"quit\"}\n");
    fclose(f);
    char cmd[256];
    /* QEMU reads its monitor line by line: the whole script at once is fine. */
    snprintf(cmd, sizeof(cmd),
             "timeout 30 qemu-system-x86_64 -M none -display none -nodefaults -qmp stdio <%s 2>/dev/null", script);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[8192];
    int n = -3;     /* greeting, qmp_capabilities, the first query */
    while (fgets(line, sizeof(line), p)) {
        if (strstr(line, "\"event\"")) {
            continue;
        }
        if (n == -1) {
            q->before = qmp_return(line);
        } else if (n >= 0 && n < (int)NCASES) {
            json_t *j = json_loads(line, 0, NULL);
            json_t *e = json_object_get(json_object_get(j, "error"), "desc");
            snprintf(q->desc[n], sizeof(q->desc[n]), "%s", e ? json_string_value(e) : "");
            json_decref(j);
        } else if (n == (int)NCASES) {
            q->after = qmp_return(line);
        }
        n++;
    }
    pclose(p);
    unlink(script);
    return q->before && q->after && n > (int)NCASES;
}

/* Each of cowvisor's members has QEMU's value. */
static void assert_values_match(json_t *qemu, json_t *ours, const char *when)
{
    const char *key;
    json_t *v;
    json_object_foreach(ours, key, v) {
        json_t *qv = json_object_get(qemu, key);
        if (!qv || !json_equal(qv, v)) {
            char *a = json_dumps(qv ? qv : json_null(), JSON_ENCODE_ANY), *b = json_dumps(v, JSON_ENCODE_ANY);
            fail_msg("%s: '%s' is %s in QEMU, %s in cowvisor", when, key, a, b);
        }
    }
}

static void test_same_as_qemu(void **state)
{
    if (system("command -v qemu-system-x86_64 >/dev/null") != 0) {
        skip();
    }
    struct qemu_run q = { 0 };
    if (!run_qemu(&q)) {
        fail_msg("no complete session from qemu-system-x86_64");
    }
    struct migration_params p;
    migration_params_default(&p);
    json_t *ours = qmp_migration_params_query(&p);
    assert_values_match(q.before, ours, "defaults");
    json_decref(ours);
    for (size_t i = 0; i < NCASES; i++) {
        json_t *args = json_loads(cases[i], 0, NULL);
        assert_non_null(args);
        struct error err = { 0 };
        int ret = qmp_migration_params_set(args, &p, &err);
        json_decref(args);
        if (ret < 0 ? strcmp(err.msg, q.desc[i]) != 0 : q.desc[i][0] != 0) {
            fail_msg("%s: QEMU says '%s', cowvisor '%s'", cases[i], q.desc[i], ret < 0 ? err.msg : "");
        }
    }
    ours = qmp_migration_params_query(&p);
    assert_values_match(q.after, ours, "after the changes");
    json_decref(ours);
    json_decref(q.before);
    json_decref(q.after);
}

/* A refused command changes nothing, even members it named rightly. */
static void test_refused_changes_nothing(void **state)
{
    struct migration_params p, before;
    migration_params_default(&p);
    before = p;
    json_t *args = json_loads("{\"downtime-limit\":5,\"max-cpu-throttle\":100}", 0, NULL);
    struct error err = { 0 };
    assert_int_equal(qmp_migration_params_set(args, &p, &err), -EINVAL);
    assert_memory_equal(&p, &before, sizeof(p));
    json_decref(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_qemu),
        cmocka_unit_test(test_refused_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
