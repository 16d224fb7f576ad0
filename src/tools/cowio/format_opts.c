#include "tools/cowio/format_opts.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Options accepted with any value (booleans and enums qemu's qcow2 knows). */
static const char *const accepted[] = {
    "lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other",
    "discard-no-unref", "cache-clean-interval", "overlap-check", NULL,
};

static void mark_accepted(struct options *opts, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < opts->count; i++) {
        const char *key = opts->items[i].key;
        if (strncmp(key, prefix, n) != 0) {
            continue;
        }
        for (const char *const *a = accepted; *a; a++) {
            size_t m = strlen(*a);
            if (!strncmp(key + n, *a, m) && (key[n + m] == '\0' || key[n + m] == '.')) {
                opts->items[i].used = true;
            }
        }
    }
}

static int size_option(struct options *opts, const char *prefix, const char *name, bool *has,
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
    mark_accepted(opts, prefix);
    int ret;
    if ((ret = size_option(opts, prefix, "cache-size", &t->has_cache, &t->cache, err)) < 0 ||
        (ret = size_option(opts, prefix, "l2-cache-size", &t->has_l2, &t->l2, err)) < 0 ||
        (ret = size_option(opts, prefix, "refcount-cache-size", &t->has_refcount, &t->refcount,
                           err)) < 0 ||
        (ret = size_option(opts, prefix, "l2-cache-entry-size", &t->has_entry, &t->entry,
                           err)) < 0) {
        return ret;
    }
    if (t->has_cache && t->has_l2 && t->has_refcount) {
        return error_set(err, -EINVAL, "cache-size, l2-cache-size and refcount-cache-size "
                                       "may not be set at the same time");
    }
    if (t->has_cache && t->has_l2 && t->l2 > t->cache) {
        return error_set(err, -EINVAL, "l2-cache-size may not exceed cache-size");
    }
    if (t->has_cache && t->has_refcount && t->refcount > t->cache) {
        return error_set(err, -EINVAL, "refcount-cache-size may not exceed cache-size");
    }
    return 0;
}

int format_tuning_check(const struct format_tuning *t, const struct blockdev *bd,
                        struct error *err)
{
    if (!t->has_entry || !bd->cluster_size) {
        return 0;
    }
    if (t->entry < 512 || t->entry > bd->cluster_size || (t->entry & (t->entry - 1))) {
        return error_set(err, -EINVAL, "L2 cache entry size must be a power of two between 512 "
                                       "and the cluster size (%u)", bd->cluster_size);
    }
    return 0;
}
