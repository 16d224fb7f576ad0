/* The migration side of cowvisor's monitor and command line
 * (qmp_migration.c): --incoming, QMP's migration commands, and what the
 * rest of the monitor asks about it (the run state, whether cont may go). */
#ifndef COWVISOR_QMP_MIGRATION_H
#define COWVISOR_QMP_MIGRATION_H

#include <stdbool.h>
#include <stdio.h>

#include "machine/machine.h"
#include "util/error.h"

struct qmp_server;
struct qmp_reply;

/* --incoming tcp:HOST:PORT | unix:PATH | defer: the machine stays paused
 * until a migration stream arrived whole (or post-copy starts). */
int qmp_migration_incoming(struct machine *m, const char *uri, struct error *err);
/* The monitor that gets the MIGRATION events (NULL: none). */
void qmp_migration_attach_monitor(struct qmp_server *s);
/* After machine_run: <0 with the reason when an incoming migration failed. */
int qmp_migration_exit_status(struct error *err);
/* Stops and frees whatever migration there is (the main loop is over). */
void qmp_migration_end(void);

/* "inmigrate", "postmigrate" or NULL (the machine's own state applies). */
const char *qmp_migration_run_state(void);
/* HMP's "info migrate_parameters". */
void qmp_migration_hmp_parameters(FILE *f);
/* true (and r filled) when cont must be refused. */
bool qmp_migration_refuse_cont(struct qmp_reply *r);
#endif
