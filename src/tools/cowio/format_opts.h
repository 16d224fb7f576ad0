/* qemu's qcow2 runtime options (cache sizes, lazy-refcounts, overlap
 * checks, discard passing). cowio checks them as qemu's driver does, so bad
 * values fail with qemu's words; lazy-refcounts and the overlap checks go
 * to the block layer, the others have no effect. */
#ifndef TOOLS_COWIO_FORMAT_OPTS_H
#define TOOLS_COWIO_FORMAT_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "util/options.h"

struct format_tuning {
    bool has_cache, has_l2, has_refcount, has_entry;
    uint64_t cache, l2, refcount, entry;
    bool lazy_refcounts_on;
    int lazy_refcounts;         /* blockdev_open_opts.lazy_refcounts: 0 unset, 1 on, -1 off */
    bool has_overlap;           /* parsed: blockdev_open_opts.overlap_checks ... */
    unsigned overlap_checks;
    int overlap_ret;            /* ... unless their options are bad: why (reported by */
    struct error overlap_err;   /* format_tuning_check, in qemu's order) */
    const char *clean_interval;
};

/* Takes (marks as used) the options named prefix + option and checks their
 * syntax; the values are checked against the image by format_tuning_check. */
int format_tuning_parse(struct options *opts, const char *prefix, struct format_tuning *t,
                        struct error *err);
/* qemu's checks, in qemu's order, for the opened image. */
int format_tuning_check(const struct format_tuning *t, struct blockdev *bd, struct error *err);

#endif
