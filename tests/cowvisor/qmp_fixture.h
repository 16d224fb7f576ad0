/* A QMP server on a stub machine with its main loop in a thread, for the
 * monitor's tests; a heartbeat pipe tells whether the loop is free. */
#ifndef TESTS_COWVISOR_QMP_FIXTURE_H
#define TESTS_COWVISOR_QMP_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>

#include "machine/machine.h"

struct qmp_server;

struct fixture {
    struct machine *m;
    struct qmp_server *qmp;
    pthread_t thread;
    char dir[64];
    char path[128];
    int beat_in[2], beat_out[2];
};

/* Two vCPUs, 64 MiB, one qcow2 disk, the console on stdio, named "vm1". */
extern const struct machine_config qmp_fixture_config;

/* spec_fmt: the --qmp argument with %s for a fresh socket path. */
struct fixture *start(const char *spec_fmt);
/* The same on another machine configuration (it must outlive the fixture). */
struct fixture *start_config(const struct machine_config *cfg, const char *spec_fmt);
/* Ends the loop with QMP's quit through a fresh client on addr (NULL: the
 * UNIX socket), then frees everything. */
void stop(struct fixture *f, const char *addr);
/* True when the loop answered a heartbeat within timeout_ms. */
bool loop_alive(struct fixture *f, int timeout_ms);

#endif
