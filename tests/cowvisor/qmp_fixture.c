/* The monitor's test fixture (see qmp_fixture.h). */
#include "qmp_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <cmocka.h>

#include "qmp_client.h"
#include "stub_machine.h"
#include "tools/cowvisor/qmp.h"

const struct machine_config qmp_fixture_config = {
    .cpus = 2, .memory = 64ull << 20, .ndisks = 1,
    .disks = { { .file = "/nonexistent/disk.qcow2", .format = "qcow2" } },
    .console = "stdio", .name = "vm1",
};

static void echo_beat(void *opaque, int fd, uint32_t events)
{
    struct fixture *f = opaque;
    char c;
    if (read(fd, &c, 1) == 1 && write(f->beat_out[1], &c, 1) != 1) {
        abort();
    }
}

static void *loop_thread(void *opaque)
{
    struct fixture *f = opaque;
    struct error err = { 0 };
    event_loop_run(machine_loop(f->m), &err);
    return NULL;
}

/* True when the loop answered a heartbeat within timeout_ms. */
bool loop_alive(struct fixture *f, int timeout_ms)
{
    char c = 'b';
    assert_int_equal(write(f->beat_in[1], &c, 1), 1);
    struct pollfd p = { .fd = f->beat_out[0], .events = POLLIN };
    return poll(&p, 1, timeout_ms) == 1 && read(f->beat_out[0], &c, 1) == 1;
}

struct fixture *start(const char *spec_fmt)
{
    return start_config(&qmp_fixture_config, spec_fmt);
}

struct fixture *start_config(const struct machine_config *cfg, const char *spec_fmt)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/cowvisor-qmp-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/qmp.sock", f->dir);
    char spec[256];
    snprintf(spec, sizeof(spec), spec_fmt, f->path);
    f->m = stub_machine_create(cfg);
    struct error err = { 0 };
    assert_int_equal(qmp_server_start(&f->qmp, f->m, spec, &err), 0);
    assert_int_equal(pipe2(f->beat_in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(f->beat_out, O_CLOEXEC), 0);
    assert_int_equal(event_loop_add(machine_loop(f->m), f->beat_in[0], EPOLLIN, echo_beat, f, &err), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
    return f;
}

/* Ends the loop through QMP's quit (a fresh client), then the server. */
void stop(struct fixture *f, const char *addr)
{
    struct qmp_client c;
    assert_int_equal(qmp_client_open(&c, addr ? addr : f->path), 0);
    json_t *r = qmp_client_cmd(&c, "{\"execute\":\"quit\"}");
    assert_non_null(r);
    json_decref(r);
    assert_int_equal(pthread_join(f->thread, NULL), 0);
    qmp_server_stop(f->qmp);
    qmp_client_close(&c);
    event_loop_remove(machine_loop(f->m), f->beat_in[0]);
    stub_machine_destroy(f->m);
    for (int i = 0; i < 2; i++) {
        close(f->beat_in[i]);
        close(f->beat_out[i]);
    }
    rmdir(f->dir);
    free(f);
}

