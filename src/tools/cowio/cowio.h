/* cowio's own part of qemu-io's command language: opening and closing
 * images (open, close, reopen, quit), which QEMU's HMP qemu-io has not. */
#ifndef TOOLS_COWIO_COWIO_H
#define TOOLS_COWIO_COWIO_H

#include "qemu_io/qemu_io.h"

extern const struct cowio_cmd *const cowio_file_cmds[];

/* Opening and closing (cmd_open.c). Returns 0, or 1 after printing why not. */
int cowio_open_image(struct cowio *io, const char *filename, const struct cowio_open *o,
                     const char *image_opts);
void cowio_close_image(struct cowio *io);
/* Appends one -o string to the ones before (options merge like qemu's). */
void cowio_append_opts(char **all, const char *more);
extern const struct cowio_cmd cowio_reopen_cmd;
/* Parses a -t cache mode into o; -EINVAL for an unknown one. */
int cowio_parse_cache_mode(const char *mode, struct cowio_open *o);

#endif
