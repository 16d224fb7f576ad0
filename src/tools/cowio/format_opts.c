#include "tools/cowio/format_opts.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/overlap_check.h"
#include "util/json.h"

static const char *const bool_opts[] = {
    "lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other",
    "discard-no-unref", "overlap-check.main-header", "overlap-check.active-l1",
    "overlap-check.active-l2", "overlap-check.refcount-table", "overlap-check.refcount-block",
    "overlap-check.snapshot-table", "overlap-check.inactive-l1", "overlap-check.inactive-l2",
    "overlap-check.bitmap-directory", NULL,
};

static const char *get(struct options *opts, const char *prefix, const char *name)
{
    char key[256];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    return options_get(opts, key);
}

static int get_bool(struct options *opts, const char *prefix, const char *name, bool *out,
                    struct error *err)
{
    char key[256];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    return options_get(opts, key) ? options_get_bool(opts, key, out, err) : 0;
}

static int get_size(struct options *opts, const char *prefix, const char *name, bool *has,
                    uint64_t *out, struct error *err)
{
    char key[256];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    *has = options_get(opts, key) != NULL;
    return *has ? options_get_size(opts, key, out, err) : 0;
}

int format_tuning_parse(struct options *opts, const char *prefix, struct format_tuning *t,
                        struct error *err)
{
    int ret = 0;
    for (const char *const *b = bool_opts; *b && ret == 0; b++) {
        bool v = false;
        ret = get_bool(opts, prefix, *b, &v, err);
        if (ret == 0 && !strcmp(*b, "lazy-refcounts")) {
            t->lazy_refcounts_on = v;
            t->lazy_refcounts = get(opts, prefix, *b) ? (v ? 1 : -1) : 0;
        }
    }
    if (ret == 0) {
        ret = get_size(opts, prefix, "cache-size", &t->has_cache, &t->cache, err);
    }
    if (ret == 0) {
        ret = get_size(opts, prefix, "l2-cache-size", &t->has_l2, &t->l2, err);
    }
    if (ret == 0) {
        ret = get_size(opts, prefix, "refcount-cache-size", &t->has_refcount, &t->refcount, err);
    }
    if (ret == 0) {
        ret = get_size(opts, prefix, "l2-cache-entry-size", &t->has_entry, &t->entry, err);
    }
    if (ret == 0) {
        /* The flags' syntax is checked above; a bad mode is reported
         * after the cache sizes (qemu's order). */
        t->overlap_ret = blockdev_overlap_checks_parse(opts, prefix, &t->overlap_checks,
                                                       &t->overlap_err);
        t->has_overlap = t->overlap_ret == 0;
    }
    t->clean_interval = get(opts, prefix, "cache-clean-interval");
    return ret;
}

/* What the format's JSON description says about key ("compat", ...). */
static bool info_says(struct blockdev *bd, const char *member)
{
    char *json = blockdev_format_specific_json(bd);
    bool found = json && strstr(json, member) != NULL;
    free(json);
    return found;
}

#define MIN_L2_CACHE_TABLES 2
#define MIN_REFCOUNT_CACHE_TABLES 4
#define DEFAULT_L2_CACHE_MAX (32ULL << 20)

/* qemu's cache sizing: the explicit sizes, their combinations, and the
 * resulting table counts, which must fit an int. */
static int check_cache_sizes(const struct format_tuning *t, struct blockdev *bd, bool extended,
                             struct error *err)
{
    uint64_t cluster = blockdev_cluster_size(bd);
    uint64_t entry_bytes = extended ? 16 : 8;
    uint64_t max_l2 = (blockdev_size(bd) + cluster - 1) / cluster * entry_bytes;
    max_l2 = (max_l2 + cluster - 1) / cluster * cluster;
    uint64_t min_refcount = MIN_REFCOUNT_CACHE_TABLES * cluster;
    uint64_t l2_setting = t->has_l2 ? t->l2 : DEFAULT_L2_CACHE_MAX;
    uint64_t refcount = t->has_refcount ? t->refcount : 0;
    uint64_t entry = t->has_entry ? t->entry : cluster;
    uint64_t l2 = max_l2 < l2_setting ? max_l2 : l2_setting;

    if (t->has_cache) {
        if (t->has_l2 && t->has_refcount) {
            return error_set(err, -EINVAL, "cache-size, l2-cache-size and refcount-cache-size "
                                           "may not be set at the same time");
        }
        if (t->has_l2 && l2_setting > t->cache) {
            return error_set(err, -EINVAL, "l2-cache-size may not exceed cache-size");
        }
        if (refcount > t->cache) {
            return error_set(err, -EINVAL, "refcount-cache-size may not exceed cache-size");
        }
        if (t->has_l2) {
            refcount = t->cache - l2;
        } else if (t->has_refcount) {
            l2 = t->cache - refcount;
        } else if (t->cache >= max_l2 + min_refcount) {
            l2 = max_l2;
            refcount = t->cache - l2;
        } else {
            refcount = t->cache < min_refcount ? t->cache : min_refcount;
            l2 = t->cache - refcount;
        }
    }
    if (l2 < max_l2 && !t->has_entry) {
        entry = cluster < 4096 ? cluster : 4096;
    }
    if (entry < 512 || entry > cluster || (entry & (entry - 1))) {
        return error_set(err, -EINVAL, "L2 cache entry size must be a power of two between 512 "
                                       "and the cluster size (%u)", blockdev_cluster_size(bd));
    }
    if (l2 / entry > INT_MAX) {
        return error_set(err, -EINVAL, "L2 cache size too big");
    }
    if (refcount / cluster > INT_MAX) {
        return error_set(err, -EINVAL, "Refcount cache size too big");
    }
    return 0;
}

int format_tuning_check(const struct format_tuning *t, struct blockdev *bd, struct error *err)
{
    if (!blockdev_cluster_size(bd)) {
        return 0;
    }
    int ret = check_cache_sizes(t, bd, info_says(bd, "\"extended-l2\": true"), err);
    if (ret < 0) {
        return ret;
    }
    if (t->clean_interval) {
        /* qemu reads it as an unsigned 64-bit number: "-1" wraps around */
        char *end;
        unsigned long long v = strtoull(t->clean_interval, &end, 0);
        if (*end || end == t->clean_interval) {
            return error_set(err, -EINVAL, "Parameter 'cache-clean-interval' expects a number");
        }
        if (v > UINT_MAX) {
            return error_set(err, -EINVAL, "Cache clean interval too big");
        }
    }
    if (t->lazy_refcounts_on && info_says(bd, "\"compat\": \"0.10\"")) {
        return error_set(err, -EINVAL, "Lazy refcounts require a qcow2 image with at least "
                                       "qemu 1.1 compatibility level");
    }
    if (t->overlap_ret < 0 && err) {
        *err = t->overlap_err;
    }
    return t->overlap_ret;
}
