#include "block/overlap_check.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Option names and message names, by bit number. */
static const char *const option_names[BDEV_OL_COUNT] = {
    "main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
    "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory",
};
static const char *const message_names[BDEV_OL_COUNT] = {
    "qcow2_header", "active L1 table", "active L2 table", "refcount table", "refcount block",
    "snapshot table", "inactive L1 table", "inactive L2 table", "bitmap directory",
};

const char *blockdev_overlap_name(unsigned bit)
{
    for (int i = 0; i < BDEV_OL_COUNT; i++) {
        if (bit == 1u << i) {
            return message_names[i];
        }
    }
    return "metadata";
}

static const char *get(struct options *opts, const char *prefix, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    return options_get(opts, key);
}

static int template_of(const char *mode, unsigned *checks, struct error *err)
{
    static const struct { const char *name; unsigned checks; } modes[] = {
        { "none", 0 }, { "constant", BDEV_OL_CONSTANT }, { "cached", BDEV_OL_CACHED },
        { "all", BDEV_OL_ALL },
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (!strcmp(mode, modes[i].name)) {
            *checks = modes[i].checks;
            return 0;
        }
    }
    return error_set(err, -EINVAL, "Unsupported value '%s' for qcow2 option 'overlap-check'. "
                                   "Allowed are any of the following: none, constant, cached, all",
                     mode);
}

/* Each structure's flag overrides the template's choice for it. */
static int apply_flags(struct options *opts, const char *prefix, unsigned *checks,
                       struct error *err)
{
    for (int i = 0; i < BDEV_OL_COUNT; i++) {
        char key[128];
        snprintf(key, sizeof(key), "%soverlap-check.%s", prefix, option_names[i]);
        if (!options_get(opts, key)) {
            continue;
        }
        bool on = false;
        int ret = options_get_bool(opts, key, &on, err);
        if (ret < 0) {
            return ret;
        }
        *checks = on ? *checks | 1u << i : *checks & ~(1u << i);
    }
    return 0;
}

int blockdev_overlap_checks_parse(struct options *opts, const char *prefix, unsigned *checks,
                                  struct error *err)
{
    const char *mode = get(opts, prefix, "overlap-check");
    const char *template = get(opts, prefix, "overlap-check.template");
    *checks = BDEV_OL_CACHED;
    if (mode && template && strcmp(mode, template)) {
        return error_set(err, -EINVAL, "Conflicting values for qcow2 options 'overlap-check' "
                                       "('%s') and 'overlap-check.template' ('%s')",
                         mode, template);
    }
    int ret = template_of(mode ? mode : template ? template : "cached", checks, err);
    return ret < 0 ? ret : apply_flags(opts, prefix, checks, err);
}
