/* qemu's block option strings (--image-opts, open -o, reopen -o, json:
 * names) reduced to what a blockdev open needs: the file, its format, the
 * backing file's format, and the settings that map to open flags. */
#ifndef TOOLS_COWIO_IMAGE_OPTS_H
#define TOOLS_COWIO_IMAGE_OPTS_H

#include <stdbool.h>

#include "tools/cowio/cowio.h"
#include "tools/cowio/format_opts.h"

enum { NODE_TOP, NODE_FILE, NODE_BACKING, NODE_LAYERS };

struct open_request {
    const char *filename;       /* name_copy, or the caller's file name */
    char *name_copy;
    char *format;               /* driver of the format layer; NULL: probe */
    char *protocol;             /* "file", "host_device", "host_cdrom" when named */
    char *backing_format;       /* backing.driver: overrides the image's record */
    bool no_backing;            /* backing= or backing=null */
    int read_only;              /* -1 unset, else the read-only option */
    bool cache_opts;            /* cache.direct or cache.no-flush given */
    char *node_name[NODE_LAYERS];
    struct format_tuning tuning;
    struct options opts;        /* kept: tuning points into it */
};

/* Parses text into req and the flags of o (read-only, force-share, cache.*,
 * compress filter). implied_key names a leading bare value ("file"). */
int open_request_parse(struct open_request *req, const char *text, const char *implied_key,
                       struct cowio_open *o, struct error *err);
void open_request_free(struct open_request *req);
/* qemu's file protocols check what the file is before the format opens it. */
int open_request_check_protocol(const struct open_request *req, bool read_only,
                                struct error *err);

#endif
