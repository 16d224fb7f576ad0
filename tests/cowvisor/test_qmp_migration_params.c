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

#include "qmp_json_u64.h"
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
    /* Input past INT64_MAX: uint64 up to 2^64-1, a double beyond (QEMU's parser) */
    "{\"max-bandwidth\":18446744073709551615}",
    "{\"max-bandwidth\":18446744073709551616}",
    "{\"max-bandwidth\":-9223372036854775809}",
    "{\"max-postcopy-bandwidth\":9223372036854775808}",
    "{\"downtime-limit\":18446744073709551615}",
    "{\"cpu-throttle-initial\":18446744073709551615}",
    /* uint64 members past INT64_MAX: QEMU prints 18446744073709551615 */
    "{\"max-bandwidth\":-1,\"max-postcopy-bandwidth\":-2}",
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* QEMU's reply to each case ("" for success, else its error's desc) and
 * its query-migrate-parameters at the start and the end, as text (jansson
 * cannot read uint64 values past INT64_MAX). */
struct qemu_run {
    char desc[NCASES][512];
    char before[8192], after[8192];
    char hmp[8192];         /* info migrate_parameters at the end, \r dropped */
};

/* The text of member key's value in a JSON object's text ("" if none). */
static void member_text(const char *json, const char *key, char *out, size_t size)
{
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "\"%s\":", key);
    const char *p = strstr(json, quoted);
    out[0] = 0;
    if (p) {
        p += strlen(quoted);
        p += strspn(p, " ");
        snprintf(out, size, "%.*s", (int)strcspn(p, ",}"), p);
    }
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
    fprintf(f, "{\"execute\":\"query-migrate-parameters\"}\n"
               "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info migrate_parameters\"}}\n"
               "{\"execute\":\"quit\"}\n");
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
            snprintf(q->before, sizeof(q->before), "%s", line);
        } else if (n >= 0 && n < (int)NCASES) {
            json_t *j = json_loads(line, 0, NULL);
            json_t *e = json_object_get(json_object_get(j, "error"), "desc");
            snprintf(q->desc[n], sizeof(q->desc[n]), "%s", e ? json_string_value(e) : "");
            json_decref(j);
        } else if (n == (int)NCASES) {
            snprintf(q->after, sizeof(q->after), "%s", line);
        } else if (n == (int)NCASES + 1) {
            json_t *j = json_loads(line, 0, NULL);
            const char *t = json_string_value(json_object_get(j, "return"));
            for (size_t k = 0, o = 0; t && t[k] && o + 1 < sizeof(q->hmp); k++) {
                if (t[k] != '\r') {
                    q->hmp[o++] = t[k];
                }
            }
            json_decref(j);
        }
        n++;
    }
    pclose(p);
    unlink(script);
    return strstr(q->before, "\"return\"") && strstr(q->after, "\"return\"") && q->hmp[0] && n > (int)NCASES + 1;
}

/* Each of cowvisor's members has QEMU's value, as the client reads it
 * (cowvisor's reply text as the QMP server writes it). */
static void assert_values_match(const char *qemu, json_t *ours, const char *when)
{
    char *text = qmp_json_dumps(ours, JSON_COMPACT);
    const char *key;
    json_t *v;
    assert_non_null(text);
    json_object_foreach(ours, key, v) {
        char a[64], b[64];
        member_text(qemu, key, a, sizeof(a));
        member_text(text, key, b, sizeof(b));
        if (!a[0] || strcmp(a, b) != 0) {
            fail_msg("%s: '%s' is %s in QEMU, %s in cowvisor", when, key, a[0] ? a : "missing", b);
        }
    }
    free(text);
}

/* Each line of cowvisor's info migrate_parameters is one of QEMU's. */
static void assert_hmp_lines_match(const char *qemu, const struct migration_params *p)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    qmp_migration_params_hmp(p, f);
    fclose(f);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char want[256];
        snprintf(want, sizeof(want), "\n%s\n", line);
        if (!strstr(qemu, want) && strncmp(qemu, want + 1, strlen(want + 1)) != 0) {
            fail_msg("info migrate_parameters: cowvisor prints '%s', QEMU has no such line:\n%s", line, qemu);
        }
    }
    free(text);
}

/* A command's arguments as the QMP server reads them (qmp.c). */
static json_t *load_marked(const char *text)
{
    bool oom;
    size_t len;
    char *marked = qmp_json_mark_input(text, strlen(text), &len, &oom);
    assert_false(oom);
    json_t *j = json_loadb(marked ? marked : text, marked ? len : strlen(text), 0, NULL);
    free(marked);
    return j;
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
        json_t *args = load_marked(cases[i]);
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
    assert_hmp_lines_match(q.hmp, &p);
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

/* uint64 values past INT64_MAX come out as plain numbers; a client's
 * string that looks like the mark stays a string. */
static void test_u64_text(void **state)
{
    json_t *o = json_object();
    json_object_set_new(o, "big", qmp_json_u64(UINT64_MAX));
    json_object_set_new(o, "small", qmp_json_u64(7));
    json_object_set_new(o, "echo", json_string("\x01u64:0123456789abcdef:5"));
    char *text = qmp_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"big\":18446744073709551615,\"small\":7,\"echo\":\"\\u0001u64:0123456789abcdef:5\"}");
    free(text);
    json_decref(o);
}

/* The input's rewrite touches numbers past int64 only, never strings'
 * text, and reads them back as QEMU's visitor does. */
static void test_u64_input(void **state)
{
    json_t *j = load_marked("{\"a\":18446744073709551615,\"b\":\"18446744073709551615\",\"c\":[-1,"
                            "18446744073709551616,1e3,\"x\\\"9223372036854775808\"]}");
    assert_non_null(j);
    uint64_t v = 0;
    assert_true(qmp_json_get_u64(json_object_get(j, "a"), &v));
    assert_true(v == UINT64_MAX);
    assert_false(qmp_json_get_u64(json_object_get(j, "b"), &v));
    assert_string_equal(json_string_value(json_object_get(j, "b")), "18446744073709551615");
    json_t *c = json_object_get(j, "c");
    assert_true(qmp_json_get_u64(json_array_get(c, 0), &v));
    assert_true(v == UINT64_MAX);
    assert_true(json_is_real(json_array_get(c, 1)));
    assert_false(qmp_json_get_u64(json_array_get(c, 1), &v));
    assert_true(json_is_real(json_array_get(c, 2)));
    assert_string_equal(json_string_value(json_array_get(c, 3)), "x\"9223372036854775808");
    char *text = qmp_json_dumps(json_object_get(j, "a"), JSON_ENCODE_ANY);
    assert_string_equal(text, "18446744073709551615");
    free(text);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_qemu),
        cmocka_unit_test(test_refused_changes_nothing),
        cmocka_unit_test(test_u64_text),
        cmocka_unit_test(test_u64_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
