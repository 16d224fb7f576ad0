/* Creating qcow2 images: the header, a refcount table and block describing
 * the first clusters, then the L1 table and preallocation through the driver
 * itself, so that creation and growth share one code path. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"

int blockdev_qcow2_check_cluster_size(uint64_t cluster_size, bool extended_l2, struct error *err)
{
    uint64_t cs = cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        return error_set(err, -EINVAL, "Cluster size must be a power of two between 512 and 2048k");
    }
    if (extended_l2 && cs < 16384) {
        return error_set(err, -EINVAL, "Extended L2 entries are only supported with cluster sizes "
                         "of at least 16384 bytes");
    }
    return 0;
}

static int validate(const struct blockdev_create_opts *o, struct error *err)
{
    uint32_t cs = o->cluster_size;
    int ret = blockdev_qcow2_check_cluster_size(cs, false, err);
    if (ret < 0) {
        return ret;
    }
    int rb = o->refcount_bits;
    if (rb < 1 || rb > 64 || (rb & (rb - 1))) {
        return error_set(err, -EINVAL, "Refcount width must be a power of two and may not exceed "
                         "64 bits");
    }
    if (o->version != 2 && o->version != 3) {
        return error_set(err, -EINVAL, "Invalid compatibility level: '%d'", o->version);
    }
    if (o->version == 2) {
        if (o->compression != BDEV_COMPRESSION_ZLIB) {
            return error_set(err, -EINVAL, "Non-zlib compression type is only supported with "
                             "compatibility level 1.1 and above (use version=v3 or greater)");
        }
        if (rb != 16) {
            return error_set(err, -EINVAL, "Different refcount widths than 16 bits require "
                             "compatibility level 1.1 or above (use version=v3 or greater)");
        }
        if (o->lazy_refcounts) {
            return error_set(err, -EINVAL, "Lazy refcounts only supported with compatibility "
                             "level 1.1 and above (use version=v3 or greater)");
        }
        if (o->extended_l2) {
            return error_set(err, -EINVAL, "Extended L2 entries are only supported with "
                             "compatibility level 1.1 and above (use version=v3 or greater)");
        }
    }
    ret = blockdev_qcow2_check_cluster_size(cs, o->extended_l2, err);
    if (ret < 0) {
        return ret;
    }
    if (o->backing_format && !o->backing_file) {
        return error_set(err, -EINVAL, "Backing format cannot be used without backing file");
    }
    if (o->data_file_raw && !o->data_file) {
        return error_set(err, -EINVAL, "data-file-raw requires data-file");
    }
    if (o->data_file_raw && o->backing_file) {
        return error_set(err, -EINVAL, "Backing file and data-file-raw cannot be used at the "
                         "same time");
    }
    if (o->data_file && o->version < 3) {
        return error_set(err, -EINVAL, "External data files are only supported with "
                         "compatibility level 1.1 and above (use version=v3 or greater)");
    }
    if (o->backing_file && o->prealloc != PREALLOC_OFF && !o->extended_l2) {
        return error_set(err, -EINVAL, "Backing file and preallocation can only be used at the "
                         "same time if extended_l2 is on");
    }
    return 0;
}

/* The size of the backing file, when the new image takes it. */
static int backing_size(const char *filename, const struct blockdev_create_opts *o, uint64_t *size,
                        struct error *err)
{
    char *path = blockdev_backing_path(filename, o->backing_file);
    struct blockdev_open_opts opts = { .format = o->backing_format,
                                       .flags = BDEV_READ_ONLY | BDEV_FORCE_SHARE };
    struct blockdev *bd;
    int ret = blockdev_open(&bd, path, &opts, err);
    if (ret < 0) {
        error_prefix(err, "Could not open backing file");
    } else {
        *size = bd->size;
        blockdev_close(bd);
    }
    free(path);
    return ret;
}

/* *created: the file was made (or truncated): ours to delete on failure. */
static int write_initial_metadata(const char *filename, const struct blockdev_create_opts *o,
                                  uint64_t size, bool *created, struct error *err)
{
    struct qcow2 s = { 0 };
    int ret = hostfile_create(&s.file, filename, err);
    if (ret < 0) {
        return ret;
    }
    *created = true;
    if (o->data_file) {
        /* Made first, as QEMU makes it, of the disk's size. */
        ret = qcow2_data_file_create(&s, o->data_file, o->data_file_raw, size, err);
        if (ret < 0) {
            hostfile_close(s.file);
            return ret;
        }
    }
    s.version = (uint32_t)o->version;
    s.cluster_bits = (uint32_t)__builtin_ctz(o->cluster_size);
    s.refcount_order = (uint32_t)__builtin_ctz((unsigned)o->refcount_bits);
    s.header_length = o->version == 2 ? QCOW2_V2_HEADER_LEN : QCOW2_HEADER_LEN_WITH_COMPRESSION;
    s.compression_type = (uint8_t)o->compression;
    if (o->compression != BDEV_COMPRESSION_ZLIB) {
        s.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
    }
    if (o->extended_l2) {
        s.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
    }
    if (o->lazy_refcounts) {
        s.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    qcow2_geometry_init(&s);
    s.refcount_table_offset = s.cluster_size;
    s.refcount_table_clusters = 1;
    s.bd.backing_filename = (char *)o->backing_file;
    s.bd.backing_format = (char *)o->backing_format;

    /* The header goes last: a process killed before it leaves a file that
     * is no qcow2 image at all, never one whose header names a refcount
     * structure that is not there. */
    uint8_t *buf = calloc(1, s.cluster_size);
    st_be64(buf, 2ULL * s.cluster_size);  /* refcount table -> block in cluster 2 */
    ret = hostfile_pwrite(s.file, s.cluster_size, buf, s.cluster_size);
    if (ret == 0) {
        memset(buf, 0, s.cluster_size);
        for (int i = 0; i < 3; i++) {  /* header, refcount table, refcount block */
            qcow2_refcount_entry_set(&s, buf, (uint64_t)i, 1);
        }
        ret = hostfile_pwrite(s.file, 2ULL * s.cluster_size, buf, s.cluster_size);
    }
    if (ret < 0) {
        error_set_errno(err, ret, "Could not write '%s'", filename);
    } else {
        ret = qcow2_header_write(&s, err);
    }
    free(buf);
    free(s.image_data_file);
    hostfile_close(s.file);
    return ret;
}

/* Records QEMU's legacy AES method in a finished image. It comes last because
 * our driver opens no encrypted image, and the creation above opens it. */
static int mark_aes_encrypted(const char *filename, struct error *err)
{
    struct hostfile *f;
    int ret = hostfile_open(&f, filename, false, false, err);
    if (ret < 0) {
        return ret;
    }
    uint8_t method[4];
    st_be32(method, QCOW2_CRYPT_AES);
    ret = hostfile_pwrite(f, 32, method, sizeof(method));
    if (ret == 0) {
        ret = hostfile_flush(f);
    }
    hostfile_close(f);
    return ret < 0 ? error_set_errno(err, ret, "Could not write encryption header") : 0;
}

/* The image made so far, once a step after the file's creation failed (an
 * I/O error, a full disk): QEMU's qcow2 driver deletes it then, a regular
 * file only (bdrv_co_delete_file), and so do we. The caller learns of the
 * failure from err; a file that cannot be deleted stays. */
static int delete_failed_image(const char *filename, int ret)
{
    struct stat st;
    if (stat(filename, &st) == 0 && S_ISREG(st.st_mode)) {
        unlink(filename);
    }
    return ret;
}

/* Writes the metadata into the created file, then grows the image to its
 * size with its preallocation. */
static int format_image(const char *filename, const struct blockdev_create_opts *o, uint64_t size,
                        bool *created, struct error *err)
{
    int ret = write_initial_metadata(filename, o, size, created, err);
    if (ret < 0) {
        return ret;
    }
    struct blockdev *bd;
    struct blockdev_open_opts opts = { .format = "qcow2", .flags = BDEV_NO_BACKING,
                                       .data_file = o->data_file };
    ret = blockdev_open(&bd, filename, &opts, err);
    if (ret < 0) {
        return ret;
    }
    /* With a raw data file, the L2 tables map all of it (QEMU's reason:
     * the data file and the image must read the same). */
    enum blockdev_prealloc prealloc = o->data_file_raw && o->prealloc == PREALLOC_OFF
                                      ? PREALLOC_METADATA : o->prealloc;
    ret = blockdev_truncate(bd, size, false, prealloc, err);
    if (ret == 0) {
        ret = blockdev_flush(bd, err);
    }
    blockdev_close(bd);
    if (ret == 0 && o->encrypt_aes) {
        ret = mark_aes_encrypted(filename, err);
    }
    return ret;
}

int qcow2_create(const char *filename, const struct blockdev_create_opts *o, struct error *err)
{
    int ret = validate(o, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t size = o->size;
    if (size == 0 && o->backing_file) {
        ret = backing_size(filename, o, &size, err);
        if (ret < 0) {
            return ret;
        }
    }
    size = (size + QCOW2_SECTOR - 1) & ~(uint64_t)(QCOW2_SECTOR - 1);
    bool created = false;
    ret = format_image(filename, o, size, &created, err);
    return ret < 0 && created ? delete_failed_image(filename, ret) : ret;
}
