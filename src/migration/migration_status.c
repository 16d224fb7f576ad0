/* Names and defaults as QEMU 7.2 has them (query-migrate's "status",
 * migrate-set-parameters' defaults). */
#include "migration/migration.h"

const char *migration_status_name(enum migration_status st)
{
    switch (st) {
    case MIGRATION_SETUP: return "setup";
    case MIGRATION_ACTIVE: return "active";
    case MIGRATION_POSTCOPY_ACTIVE: return "postcopy-active";
    case MIGRATION_POSTCOPY_PAUSED: return "postcopy-paused";
    case MIGRATION_COMPLETED: return "completed";
    case MIGRATION_FAILED: return "failed";
    case MIGRATION_CANCELLING: return "cancelling";
    case MIGRATION_CANCELLED: return "cancelled";
    default: return "none";
    }
}

void migration_params_default(struct migration_params *p)
{
    /* Every field not named is off or unlimited (0), new ones included. */
    *p = (struct migration_params){
        .converge = { .downtime_limit_ms = 300, .throttle_initial = 20, .throttle_increment = 10,
                      .throttle_max = 99, .trigger_threshold = 50 },
        .max_bandwidth = 128ull << 20,  /* QEMU's MAX_THROTTLE */
    };
}

int migration_params_check(const struct migration_params *p, struct error *err)
{
    return converge_params_check(&p->converge, err);
}
