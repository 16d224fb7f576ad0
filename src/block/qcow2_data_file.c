/* The qcow2 external data file (docs/interop/qcow2.txt: incompatible bit 2,
 * header extension 0x44415441 naming it, autoclear bit 1 "raw external
 * data"). The image file keeps the metadata; guest data lies in the data
 * file at its guest offset (QEMU allocates host offset = guest offset
 * there), and data clusters are not refcounted: the refcounts describe the
 * image file only. QEMU refuses what would need data clusters to be shared
 * or packed (internal snapshots, compression), and so do we. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"

int qcow2_data_file_parse_ext(struct qcow2 *s, const uint8_t *data, uint32_t len)
{
    free(s->image_data_file);
    s->image_data_file = strndup((const char *)data, len);
    return s->image_data_file ? 0 : -ENOMEM;
}

/* The data file's name: the data-file.filename option wins over the
 * header's record. A relative record is opened from the current directory,
 * as QEMU 7.2 opens it (not from the image's directory, unlike backing
 * files): the same name finds the same file with both. */
static const char *data_file_name(const struct qcow2 *s, const struct blockdev_open_opts *opts)
{
    return opts->data_file ? opts->data_file : s->image_data_file;
}

int qcow2_data_file_open(struct qcow2 *s, const struct blockdev_open_opts *opts,
                         struct error *err)
{
    if (!qcow2_has_data_file(s)) {
        if (opts->data_file) {
            return error_set(err, -EINVAL, "'data-file' can only be set for images with an "
                                           "external data file");
        }
        if (qcow2_data_file_is_raw(s)) {
            return error_set(err, -EINVAL, "data-file-raw requires a data file");
        }
        return 0;
    }
    const char *name = data_file_name(s, opts);
    if (!name) {
        return error_set(err, -EINVAL, "'data-file' is required for this image");
    }
    bool read_only = opts->flags & BDEV_READ_ONLY;
    struct hostfile *f;
    int ret = hostfile_open(&f, name, read_only, opts->flags & BDEV_NO_CACHE, err);
    if (ret < 0) {
        return ret;
    }
    ret = blockdev_lock_file(f, opts->flags, err);
    if (ret < 0) {
        hostfile_close(f);
        return ret;
    }
    f->no_flush = opts->flags & BDEV_NO_FLUSH;
    s->data_file = f;
    s->data_file_name = strdup(name);
    return 0;
}

void qcow2_data_file_close(struct qcow2 *s)
{
    if (s->data_file) {
        hostfile_close(s->data_file);
        s->data_file = NULL;
    }
    free(s->data_file_name);
    free(s->image_data_file);
    s->data_file_name = s->image_data_file = NULL;
}

int qcow2_data_overlap_check(struct qcow2 *s, uint64_t off, uint64_t len, struct error *err)
{
    return s->data_file ? 0 : qcow2_pre_write_overlap_check(s, 0, off, len, err);
}

bool qcow2_data_overlaps_metadata(struct qcow2 *s, uint64_t off, uint64_t len)
{
    return !s->data_file && qcow2_overlaps_metadata(s, off, len);
}

int qcow2_data_file_refuse(struct qcow2 *s, const char *what, struct error *err)
{
    if (!qcow2_has_data_file(s)) {
        return 0;
    }
    return error_set(err, -ENOTSUP, "%s", what ? what : strerror(ENOTSUP));
}

void qcow2_data_file_info_json(struct qcow2 *s, struct json_writer *w)
{
    /* As QEMU: the name when one is recorded, the raw flag whenever the
     * image has a data file (opened by option after the name was cleared). */
    if (qcow2_has_data_file(s) && s->image_data_file) {
        json_write_string(w, "data-file", s->image_data_file);
    }
    if (qcow2_has_data_file(s)) {
        json_write_bool(w, "data-file-raw", qcow2_data_file_is_raw(s));
    }
}

int qcow2_data_file_amend_check(struct qcow2 *s, const char *name, int raw, struct error *err)
{
    if (name && !qcow2_has_data_file(s)) {
        return error_set(err, -EINVAL, "data-file can only be set for images that use an "
                                       "external data file");
    }
    if (raw > 0 && !qcow2_data_file_is_raw(s)) {
        return error_set(err, -EINVAL, "data-file-raw cannot be set on existing images");
    }
    return 0;
}

int qcow2_data_file_amend(struct qcow2 *s, const char *name, int raw, struct error *err)
{
    int ret = qcow2_data_file_amend_check(s, name, raw, err);
    if (ret < 0) {
        return ret;
    }
    if (raw < 0) {
        s->autoclear_features &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    }
    if (name) {
        char *copy = *name ? strdup(name) : NULL;
        if (*name && !copy) {
            return error_set(err, -ENOMEM, "Out of memory");
        }
        free(s->image_data_file);
        s->image_data_file = copy;
    }
    return qcow2_header_write(s, err);
}

int qcow2_data_file_create(struct qcow2 *s, const char *name, bool raw, uint64_t size,
                           struct error *err)
{
    struct hostfile *f;
    int ret = hostfile_create(&f, name, err);
    if (ret < 0) {
        return ret;
    }
    ret = hostfile_truncate(f, size);
    hostfile_close(f);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not resize the data file '%s'", name);
    }
    s->incompatible_features |= QCOW2_INCOMPAT_DATA_FILE;
    if (raw) {
        s->autoclear_features |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    }
    s->image_data_file = strdup(name);
    return s->image_data_file ? 0 : error_set(err, -ENOMEM, "Out of memory");
}
