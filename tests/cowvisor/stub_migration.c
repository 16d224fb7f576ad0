/* The monitor's view of migration for the stub machine: no migration runs
 * and there are no migration commands (qmp_migration.c needs a real machine). */
#include <stddef.h>

#include "tools/cowvisor/qmp_int.h"
#include "tools/cowvisor/qmp_migration.h"

qmp_handler qmp_migration_command(const char *name)
{
    (void)name;
    return NULL;
}

void qmp_migration_list_commands(json_t *list)
{
    (void)list;
}

const char *qmp_migration_run_state(void)
{
    return NULL;
}

bool qmp_migration_refuse_cont(struct qmp_reply *r)
{
    (void)r;
    return false;
}

void qmp_migration_hmp_parameters(FILE *f)
{
    (void)f;
}
