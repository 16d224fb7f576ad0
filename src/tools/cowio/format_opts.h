/* qemu's qcow2 runtime options (cache sizes, lazy-refcounts, overlap
 * checks, discard passing). The blockdev API has no knob for them: cowio
 * checks them as qemu's driver would, so bad values fail the same way, and
 * otherwise they have no effect. */
#ifndef TOOLS_COWIO_FORMAT_OPTS_H
#define TOOLS_COWIO_FORMAT_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "util/options.h"

struct format_tuning {
    bool has_cache, has_l2, has_refcount, has_entry;
    uint64_t cache, l2, refcount, entry;
};

/* Takes (marks as used) the options named prefix + option and checks the
 * ones that need no image. */
int format_tuning_parse(struct options *opts, const char *prefix, struct format_tuning *t,
                        struct error *err);
/* Checks what depends on the opened image (the L2 entry size). */
int format_tuning_check(const struct format_tuning *t, const struct blockdev *bd,
                        struct error *err);

#endif
