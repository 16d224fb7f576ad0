/* migrate-set-parameters and query-migrate-parameters: QEMU 7.2's member
 * names and JSON types, translated to and from struct migration_params
 * (qmp_migration_params.c). Apart from the commands so that a test checks
 * them against qemu-system-x86_64 without a machine. */
#ifndef COWVISOR_QMP_MIGRATION_PARAMS_H
#define COWVISOR_QMP_MIGRATION_PARAMS_H

#include <jansson.h>
#include <stdio.h>

#include "migration/migration.h"

/* Sets the members of args in *p, all or none: 0, or -EINVAL with QEMU's
 * message (a wrong type or name, then a value out of range). */
int qmp_migration_params_set(json_t *args, struct migration_params *p, struct error *err);
/* query-migrate-parameters' reply. */
json_t *qmp_migration_params_query(const struct migration_params *p);
/* HMP's "info migrate_parameters" lines for these members, in QEMU's
 * order and words. */
void qmp_migration_params_hmp(const struct migration_params *p, FILE *f);

#endif
