/* A small blocking QMP client for the monitor's tests, with timeouts so a
 * monitor that stalls fails the test instead of hanging it. */
#ifndef TESTS_COWVISOR_QMP_CLIENT_H
#define TESTS_COWVISOR_QMP_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct qmp_client {
    int fd;
    char buf[1 << 16];
    size_t len;
};

/* addr: a UNIX socket path, or "tcp:HOST:PORT". -1 on failure. */
int qmp_client_connect(struct qmp_client *c, const char *addr);
void qmp_client_close(struct qmp_client *c);
/* The next JSON line (a reply, an event or the greeting) within timeout_ms;
 * NULL on timeout or end of stream. */
json_t *qmp_client_read(struct qmp_client *c, int timeout_ms);
/* Sends text (one command) within timeout_ms; false when it could not. */
bool qmp_client_write(struct qmp_client *c, const char *text, int timeout_ms);
/* Sends a command and returns its reply (events before it are skipped). */
json_t *qmp_client_cmd(struct qmp_client *c, const char *text);
/* Connects, reads the greeting, negotiates capabilities. */
int qmp_client_open(struct qmp_client *c, const char *addr);
/* True when the server closed the stream within timeout_ms (what it sent
 * before is read and dropped). */
bool qmp_client_closed(struct qmp_client *c, int timeout_ms);

#endif
