/* The QMP server against a machine without a guest (stub_machine.c): its
 * output queue (a client that does not read never stalls the main loop;
 * issue 16, bug 5), its sockets (UNIX mode 0600, TCP) and hostile input.
 * The main loop runs in a thread; the test is the clients. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "qmp_client.h"
#include "qmp_fixture.h"
#include "stub_machine.h"
#include "tools/cowvisor/qmp.h"
#include "util/server_socket.h"

/* Issue 16, bug 5: a client that sends commands but never reads the
 * replies. The loop stays free all along (it used to sleep in send() for
 * ever), the client is dropped once its queue passes the bound, and the
 * next client is served. The timeouts are generous: a loaded machine
 * running the ASan build answers a flooded loop's heartbeat late, not
 * never (2 s failed under load 20). */
static void test_client_that_never_reads(void **state)
{
    struct fixture *f = start("unix:%s,server,nowait");
    struct qmp_client a, b;
    assert_int_equal(qmp_client_open(&a, f->path), 0);
    static const char cmd[] = "{\"execute\":\"query-commands\"}\n";
    bool dropped = false;
    int sent = 0;
    for (; sent < 200000 && !dropped; sent++) {
        if (!qmp_client_write(&a, cmd, 10000)) {
            dropped = true;     /* the server shut the socket (EPIPE), or stopped reading */
        }
        if (sent % 500 == 0) {
            assert_true(loop_alive(f, 15000));
        }
    }
    assert_true(loop_alive(f, 15000));
    assert_true(qmp_client_closed(&a, 5000));
    qmp_client_close(&a);
    assert_int_equal(qmp_client_open(&b, f->path), 0);
    json_t *r = qmp_client_cmd(&b, "{\"execute\":\"query-status\",\"id\":7}");
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
    qmp_client_close(&b);
    stop(f, NULL);
}

/* A client that reads slowly is not dropped: a burst of replies bigger than
 * the socket buffer (about 550 KB, under the bound) waits in the queue and
 * arrives whole, in order. */
static void test_slow_reader_gets_everything(void **state)
{
    struct fixture *f = start("unix:%s,server,nowait");
    struct qmp_client a;
    assert_int_equal(qmp_client_open(&a, f->path), 0);
    char line[96];
    for (int i = 0; i < 500; i++) {
        snprintf(line, sizeof(line), "{\"execute\":\"query-commands\",\"id\":%d}\n", i);
        assert_true(qmp_client_write(&a, line, 5000));
    }
    assert_true(loop_alive(f, 2000));
    for (int i = 0; i < 500; i++) {
        json_t *r = qmp_client_read(&a, 5000);
        assert_non_null(r);
        assert_int_equal(json_integer_value(json_object_get(r, "id")), i);
        json_decref(r);
    }
    qmp_client_close(&a);
    stop(f, NULL);
}

/* Only the owner may connect to the monitor's UNIX socket. */
static void test_unix_socket_mode(void **state)
{
    mode_t old = umask(0);     /* the mode must not depend on the umask */
    struct fixture *f = start("unix:%s,server,nowait");
    umask(old);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    stop(f, NULL);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_tcp(void **state)
{
    /* Port 0 would not tell the client where to go: try a few. */
    struct fixture *f = NULL;
    char spec[64], addr[64];
    for (int port = 44321 + (getpid() % 500); !f && port < 46000; port += 7) {
        snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%d,server,nowait", port);
        struct machine *m = stub_machine_create(&qmp_fixture_config);
        struct qmp_server *q;
        struct error err = { 0 };
        if (qmp_server_start(&q, m, spec, &err) == 0) {
            qmp_server_stop(q);
            stub_machine_destroy(m);
            snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
            strcat(spec, "%.0s");
            f = start(spec);
        } else {
            stub_machine_destroy(m);
        }
    }
    assert_non_null(f);
    struct qmp_client c;
    assert_int_equal(qmp_client_open(&c, addr), 0);
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"query-status\"}");
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "return"), "status")), "running");
    json_decref(r);
    qmp_client_close(&c);
    stop(f, addr);
}

/* Guest RAM lost (a truncated memory file): QEMU's internal-error state,
 * where cont is refused until a reset. */
static void test_cont_needs_reset_after_memory_loss(void **state)
{
    struct fixture *f = start("unix:%s,server,nowait");
    struct qmp_client c;
    stub_machine_lose_memory(f->m);
    assert_int_equal(qmp_client_open(&c, f->path), 0);
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"query-status\"}");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "return"), "status")), "internal-error");
    json_decref(r);
    r = qmp_client_cmd(&c, "{\"execute\":\"cont\"}");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
                        "Resetting the Virtual Machine is required");
    json_decref(r);
    r = qmp_client_cmd(&c, "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"cont\"}}");
    assert_string_equal(json_string_value(json_object_get(r, "return")),
                        "Error: Resetting the Virtual Machine is required\r\n");
    json_decref(r);
    assert_int_equal(stub_machine_calls(f->m, "resume"), 0);
    r = qmp_client_cmd(&c, "{\"execute\":\"system_reset\"}");
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
    r = qmp_client_cmd(&c, "{\"execute\":\"cont\"}");
    assert_non_null(json_object_get(r, "return"));
    json_decref(r);
    assert_int_equal(stub_machine_calls(f->m, "resume"), 1);
    qmp_client_close(&c);
    stop(f, NULL);
}

static void test_bad_addresses(void **state)
{
    static const char *bad[] = {
        "unix:", "tcp:", "tcp:127.0.0.1", "tcp:127.0.0.1:1x,server", "udp:1.2.3.4:5,server",
        "unix:/tmp/x.sock", "unix:/tmp/x.sock,server,bogus=1", "tcp:nonexistent.invalid:4444,server,nowait",
        "unix:/tmp/x.sock,server,perm=9", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        struct machine *m = stub_machine_create(&qmp_fixture_config);
        struct qmp_server *q = NULL;
        struct error err = { 0 };
        assert_true(qmp_server_start(&q, m, bad[i], &err) < 0);
        assert_true(err.msg[0] != 0);
        stub_machine_destroy(m);
    }
}

/* A console's address: a server without saying so, not waiting; UNIX
 * sockets mode 0600 there too, perm= to open them up. */
static void test_console_addresses(void **state)
{
    char dir[] = "/tmp/cowvisor-console-XXXXXX", spec[128];
    assert_non_null(mkdtemp(dir));
    struct server_socket ss;
    struct error err = { 0 };
    snprintf(spec, sizeof(spec), "unix:%s/c.sock", dir);
    assert_int_equal(server_socket_open(&ss, spec, "--console", true, &err), 0);
    assert_false(ss.wait);
    struct stat st;
    assert_int_equal(stat(ss.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    server_socket_close(&ss);
    snprintf(spec, sizeof(spec), "unix:%s/c.sock,perm=0660", dir);
    assert_int_equal(server_socket_open(&ss, spec, "--console", true, &err), 0);
    assert_int_equal(stat(ss.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    server_socket_close(&ss);
    assert_int_equal(server_socket_open(&ss, "tcp:127.0.0.1:0", "--console", true, &err), 0);
    assert_false(ss.is_unix);
    server_socket_close(&ss);
    assert_true(server_socket_open(&ss, "tcp:127.0.0.1:0,perm=0600", "--console", true, &err) < 0);
    rmdir(dir);
}

/* Hostile input gets errors, never a crash, and the session goes on. */
static void test_hostile_input(void **state)
{
    struct fixture *f = start("unix:%s,server,nowait");
    struct qmp_client c;
    assert_int_equal(qmp_client_open(&c, f->path), 0);
    static const char *inputs[] = {
        "[]", "42", "\"x\"", "{\"execute\":1}", "{\"execute\":\"query-status\",\"arguments\":[]}",
        "{\"execute\":\"query-status\",\"arguments\":{\"x\":1}}", "{\"bogus\":1}", "{\"id\":{\"a\":[1]}}",
        "{\"execute\":\"no-such-command\"}", "{\"execute\":\"human-monitor-command\",\"arguments\":{}}",
        "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info\"}}",
        "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info nope\"}}",
        "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"savevm a\"}}",
        "{\"execute\":\"blockdev-snapshot-sync\",\"arguments\":{\"device\":\"disk9\",\"snapshot-file\":\"x\"}}",
        "{\"execute\":\"query-status\",\"execute\":\"stop\"}", NULL,
    };
    for (int i = 0; inputs[i]; i++) {
        char line[512];
        snprintf(line, sizeof(line), "%s\n", inputs[i]);   /* a bare scalar ends at white space */
        json_t *r = qmp_client_cmd(&c, line);
        if (!r) {
            fail_msg("no reply to %s", inputs[i]);
        }
        json_decref(r);
    }
    /* Nesting too deep, then bad UTF-8 and a stray closing bracket. */
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    deep[399] = 0;
    assert_true(qmp_client_write(&c, deep, 2000));
    json_t *r = qmp_client_read(&c, 5000);
    assert_non_null(json_object_get(r, "error"));
    json_decref(r);
    qmp_client_close(&c);
    assert_true(loop_alive(f, 2000));
    /* More than 1 MiB of input that never completes a value: an error,
     * then the session ends (and the next client is served). */
    assert_int_equal(qmp_client_open(&c, f->path), 0);
    size_t big = (2u << 20) + 100;
    char *junk = malloc(big + 1);
    assert_non_null(junk);
    memcpy(junk, "{\"execute\":\"", 12);
    memset(junk + 12, 'a', big - 12);
    junk[big] = 0;
    qmp_client_write(&c, junk, 5000);    /* may fail part-way: the server hangs up */
    free(junk);
    r = qmp_client_read(&c, 5000);
    assert_non_null(r);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "desc")), "too long"));
    json_decref(r);
    assert_true(qmp_client_closed(&c, 5000));
    qmp_client_close(&c);
    stop(f, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_that_never_reads),
        cmocka_unit_test(test_slow_reader_gets_everything),
        cmocka_unit_test(test_unix_socket_mode),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_cont_needs_reset_after_memory_loss),
        cmocka_unit_test(test_console_addresses),
        cmocka_unit_test(test_hostile_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
