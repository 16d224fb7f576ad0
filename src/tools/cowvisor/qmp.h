/* The QMP monitor: QEMU's machine protocol on a UNIX socket, so existing
 * QMP clients can drive cowvisor (query-status, stop, cont, savevm through
 * human-monitor-command, snapshot jobs, events). */
#ifndef COWVISOR_QMP_H
#define COWVISOR_QMP_H

#include "machine/machine.h"
#include "util/error.h"

struct qmp_server;

/* spec is QEMU's -qmp argument: unix:PATH[,server[=on]][,nowait|,wait=off].
 * Without nowait the call waits for the first client, as QEMU does, and
 * until it negotiated capabilities (so it sees every event). A NULL spec
 * serves no socket: the monitor only behind the stdio console's Ctrl-A c. */
int qmp_server_start(struct qmp_server **out, struct machine *m, const char *spec, struct error *err);
/* Sends SHUTDOWN for how the VM ended (if not sent yet) and closes. */
void qmp_server_stop(struct qmp_server *s);

#endif
