#include "tools/cowio/image_opts.h"

#include <string.h>

int open_request_parse(struct open_request *req, const char *text, const char *implied_key,
                       struct cowio_open *o, struct error *err)
{
    struct blockdev_spec *spec = &req->spec;
    char *keep = spec->filename;
    blockdev_spec_init(spec);
    spec->filename = keep;
    int ret = blockdev_spec_parse_options(spec, text, implied_key, err);
    if (ret < 0) {
        return ret;
    }
    unsigned flags = blockdev_spec_flags(spec, o->flags) & ~(BDEV_NO_FLUSH | BDEV_NO_BACKING);
    o->flags = flags;
    if (spec->no_flush >= 0) {
        o->no_flush = spec->no_flush;
    }
    o->compress |= spec->compress;
    req->cache_opts = spec->direct >= 0 || spec->no_flush >= 0;
    if (!spec->protocol_top) {
        ret = format_tuning_parse(&spec->opts, spec->format_prefix, &req->tuning, err);
        if (ret < 0) {
            return ret;
        }
    }
    return options_check_unused(&spec->opts, "Block options", err);
}

void open_request_free(struct open_request *req)
{
    blockdev_spec_free(&req->spec);
}
