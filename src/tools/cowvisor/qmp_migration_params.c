/* QMP's migration parameters (see qmp_migration_params.h). QEMU reads
 * each member with its QAPI type first (integers as uint64, so -1 becomes
 * 2^64-1; uint8 members refused above 255), in its schema's order, then
 * checks the ranges of the whole set (migrate_params_check, in the
 * migration library). */
#include "qmp_migration_params.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "qmp_json_u64.h"

enum param_type { PARAM_U8, PARAM_U64, PARAM_BOOL };

struct param {
    const char *name;
    enum param_type type;
    size_t offset;          /* in struct migration_params */
};

#define CONV(field) offsetof(struct migration_params, converge) + offsetof(struct converge_params, field)

/* QEMU's schema order, so that the same member is named first. */
static const struct param params[] = {
    { "throttle-trigger-threshold", PARAM_U8, CONV(trigger_threshold) },
    { "cpu-throttle-initial", PARAM_U8, CONV(throttle_initial) },
    { "cpu-throttle-increment", PARAM_U8, CONV(throttle_increment) },
    { "cpu-throttle-tailslow", PARAM_BOOL, CONV(tailslow) },
    { "max-bandwidth", PARAM_U64, offsetof(struct migration_params, max_bandwidth) },
    { "downtime-limit", PARAM_U64, CONV(downtime_limit_ms) },
    { "max-postcopy-bandwidth", PARAM_U64, offsetof(struct migration_params, max_postcopy_bandwidth) },
    { "max-cpu-throttle", PARAM_U8, CONV(throttle_max) },
};
#define NPARAMS (sizeof(params) / sizeof(params[0]))

static int read_param(const struct param *pa, json_t *v, struct migration_params *p, struct error *err)
{
    char *field = (char *)p + pa->offset;
    if (pa->type == PARAM_BOOL) {
        if (!json_is_boolean(v)) {
            return error_set(err, -EINVAL, "Invalid parameter type for '%s', expected: boolean", pa->name);
        }
        *(bool *)field = json_is_true(v);
        return 0;
    }
    uint64_t n;
    if (!qmp_json_get_u64(v, &n)) {
        return error_set(err, -EINVAL, "Parameter '%s' expects uint64", pa->name);
    }
    if (pa->type == PARAM_U64) {
        *(uint64_t *)field = n;
    } else if (n > 255) {
        return error_set(err, -EINVAL, "Parameter '%s' expects uint8_t", pa->name);
    } else {
        *(int *)field = (int)n;
    }
    return 0;
}

int qmp_migration_params_set(json_t *args, struct migration_params *p, struct error *err)
{
    struct migration_params next = *p;
    for (size_t i = 0; i < NPARAMS; i++) {
        json_t *v = json_object_get(args, params[i].name);
        int ret = v ? read_param(&params[i], v, &next, err) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        size_t i = 0;
        while (i < NPARAMS && strcmp(params[i].name, key) != 0) {
            i++;
        }
        if (i == NPARAMS) {
            return error_set(err, -EINVAL, "Parameter '%s' is unexpected", key);
        }
    }
    int ret = migration_params_check(&next, err);
    if (ret == 0) {
        *p = next;
    }
    return ret;
}

json_t *qmp_migration_params_query(const struct migration_params *p)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NPARAMS; i++) {
        const char *field = (const char *)p + params[i].offset;
        json_object_set_new(o, params[i].name,
                            params[i].type == PARAM_BOOL ? json_boolean(*(const bool *)field)
                            : params[i].type == PARAM_U8 ? json_integer(*(const int *)field)
                                                         : qmp_json_u64(*(const uint64_t *)field));
    }
    return o;
}

void qmp_migration_params_hmp(const struct migration_params *p, FILE *f)
{
    const struct converge_params *c = &p->converge;
    fprintf(f, "throttle-trigger-threshold: %d\ncpu-throttle-initial: %d\ncpu-throttle-increment: %d\n"
               "cpu-throttle-tailslow: %s\nmax-cpu-throttle: %d\n", c->trigger_threshold, c->throttle_initial,
            c->throttle_increment, c->tailslow ? "on" : "off", c->throttle_max);
    fprintf(f, "max-bandwidth: %" PRIu64 " bytes/second\ndowntime-limit: %" PRIu64 " ms\n", p->max_bandwidth,
            (uint64_t)c->downtime_limit_ms);
    fprintf(f, "max-postcopy-bandwidth: %" PRIu64 "\n", p->max_postcopy_bandwidth);
}
