/* The monitor's view of migration for the stub machine: no migration runs
 * (qmp_migration.c needs a real machine); only the parameters' commands
 * are here, with the real translation (qmp_migration_params.c), so that
 * QMP input reaches a uint64 member through the real server. */
#include <stddef.h>
#include <string.h>

#include "tools/cowvisor/qmp_int.h"
#include "tools/cowvisor/qmp_migration.h"
#include "tools/cowvisor/qmp_migration_params.h"

static struct migration_params *params(void)
{
    static struct migration_params p;
    static bool set;
    if (!set) {
        migration_params_default(&p);
        set = true;
    }
    return &p;
}

static void cmd_set_parameters(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    struct error err = { 0 };
    if (qmp_migration_params_set(args, params(), &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

static void cmd_query_parameters(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (qmp_check_args(args, qmp_no_args, r)) {
        r->ret = qmp_migration_params_query(params());
    }
}

qmp_handler qmp_migration_command(const char *name)
{
    return strcmp(name, "migrate-set-parameters") == 0 ? cmd_set_parameters
         : strcmp(name, "query-migrate-parameters") == 0 ? cmd_query_parameters : NULL;
}

/* Not listed: query-commands and the schema (qmp_schema.c) describe the
 * stub machine, which cannot migrate. */
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
    qmp_migration_params_hmp(params(), f);
}
