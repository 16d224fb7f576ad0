/* query-migrate's times, "ram", "disk" and blocktime members from a migration's statistics
 * (qmp_migration_info.c), apart from the commands so that a test can check
 * them against QEMU's without a machine. */
#ifndef COWVISOR_QMP_MIGRATION_INFO_H
#define COWVISOR_QMP_MIGRATION_INFO_H

#include <jansson.h>

#include "migration/migration.h"

void qmp_migration_put_stats(json_t *o, const struct migration_stats *st);
/* total-time, setup-time, and downtime or expected-downtime. */
void qmp_migration_put_times(json_t *o, const struct migration_stats *st);
/* A destination's postcopy-blocktime and postcopy-vcpu-blocktime, where
 * QEMU shows them (the caller checks the capability). */
void qmp_migration_put_blocktime(json_t *o, const struct migration_stats *st);

#endif
