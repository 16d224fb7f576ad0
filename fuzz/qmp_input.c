/* libFuzzer target: any bytes as what a QMP client sends to cowvisor's
 * monitor (the real server: framing, JSON parsing, dispatch, argument
 * checks and the commands themselves, over a machine without a guest).
 * The first byte chooses whether the session is negotiated first, so the
 * commands are reached and not only the capabilities gate. The server
 * must answer or drop the client, never crash, hang or leak. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "stub_machine.h"
#include "tools/cowvisor/qmp.h"
#include "vmm/event_loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct machine_config config = {
    .cpus = 2, .memory = 64ull << 20, .ndisks = 1,
    .disks = { { .file = "/nonexistent/disk.qcow2", .format = "qcow2" } },
    .console = "stdio", .name = "fuzz",
};

static struct machine *machine;
static struct sockaddr_un addr;

/* quit stops the loop: it starts again for the next input. */
static void *loop_main(void *opaque)
{
    struct event_loop *l = machine_loop(machine);
    for (;;) {
        struct error err = { 0 };
        event_loop_run(l, &err);
        l->stop = false;
    }
    return NULL;
}

static int setup(void)
{
    static char dir[] = "/tmp/cowvisor-fuzz-qmp-XXXXXX";
    char spec[160];
    struct error err = { 0 };
    struct qmp_server *q;
    pthread_t t;
    if (!mkdtemp(dir)) {
        return -1;
    }
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/qmp.sock", dir);
    snprintf(spec, sizeof(spec), "unix:%s,server,nowait", addr.sun_path);
    machine = stub_machine_create(&config);
    if (qmp_server_start(&q, machine, spec, &err) < 0) {
        fprintf(stderr, "qmp_server_start: %s\n", err.msg);
        return -1;
    }
    return pthread_create(&t, NULL, loop_main, NULL) == 0 ? 0 : -1;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return;     /* the server dropped us: fine */
        }
        p += n;
        len -= (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (setup() < 0) {
            abort();
        }
        ready = true;
    }
    if (size == 0) {
        return 0;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        abort();    /* the server stopped listening: a bug */
    }
    if (data[0] & 1) {
        static const char caps[] = "{\"execute\":\"qmp_capabilities\"}\n";
        send_all(fd, caps, sizeof(caps) - 1);
    }
    send_all(fd, data + 1, size - 1);
    shutdown(fd, SHUT_WR);
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
    return 0;
}
