/* qemu-io's view of the block layer's option strings (--image-opts, open -o,
 * reopen -o, json: names): the shared blockdev_spec plus the qcow2 tuning
 * options qemu-io checks and the open settings they change. */
#ifndef TOOLS_COWIO_IMAGE_OPTS_H
#define TOOLS_COWIO_IMAGE_OPTS_H

#include <stdbool.h>

#include "tools/cowio/cowio.h"
#include "tools/cowio/format_opts.h"

struct open_request {
    struct blockdev_spec spec;
    bool cache_opts;            /* cache.direct or cache.no-flush given */
    struct format_tuning tuning;
};

/* Parses text into req and the flags of o (read-only, force-share, cache.*,
 * compress filter). implied_key names a leading bare value ("file"). */
int open_request_parse(struct open_request *req, const char *text, const char *implied_key,
                       struct cowio_open *o, struct error *err);
void open_request_free(struct open_request *req);

#endif
