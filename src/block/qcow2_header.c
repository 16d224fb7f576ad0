/* The qcow2 header: parsing and validating it on open, rewriting it. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/warning.h"

/* Names we write into the feature name table, so that older tools can name
 * what they do not support. */
static const struct { uint8_t type, bit; const char *name; } known_features[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

void qcow2_geometry_init(struct qcow2 *s)
{
    s->cluster_size = 1u << s->cluster_bits;
    s->cluster_mask = s->cluster_size - 1;
    s->extended_l2 = s->incompatible_features & QCOW2_INCOMPAT_EXTL2;
    s->l2_entry_size = s->extended_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->extended_l2 ? 4 : 3);
    s->l2_size = 1u << s->l2_bits;
    s->subclusters = s->extended_l2 ? 32 : 1;
    s->subcluster_bits = s->cluster_bits - (s->extended_l2 ? 5 : 0);
    s->subcluster_size = 1u << s->subcluster_bits;
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ULL << s->refcount_bits) - 1;
    s->refblock_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refblock_size = 1u << s->refblock_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1u << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ULL << s->csize_shift) - 1;
}

/* Describes unknown incompatible bits as QEMU does: the names the image's
 * own feature table gives them, in table order, then the mask of the rest
 * ("Unknown incompatible feature: 8000000000000000"). */
static void describe_unknown_features(uint64_t unknown, const uint8_t *table, uint32_t table_len,
                                      char *out, size_t out_len)
{
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t i = 0; table && i < table_len && used < out_len; i += 48) {
        /* A short last entry counts, padded with zeros (as QEMU reads it). */
        uint8_t entry[48] = { 0 };
        memcpy(entry, table + i, table_len - i < 48 ? table_len - i : 48);
        uint64_t bit = entry[1] < 64 ? 1ULL << entry[1] : 0;
        if (entry[0] == 0 && (unknown & bit)) {
            used += (size_t)snprintf(out + used, out_len - used, "%s%.46s", used ? ", " : "",
                                     (const char *)entry + 2);
            unknown &= ~bit;
        }
    }
    if (unknown && used < out_len) {
        snprintf(out + used, out_len - used, "%sUnknown incompatible feature: %" PRIx64,
                 used ? ", " : "", unknown);
    }
}

static int parse_extensions(struct qcow2 *s, const uint8_t *buf, uint64_t end,
                            const uint8_t **feature_table, uint32_t *feature_len, struct error *err)
{
    uint64_t off = s->header_length;
    while (off < end) {
        if (end - off < 8) {
            return error_set(err, -EINVAL, "Header extension too large");
        }
        uint32_t type = ld_be32(buf + off);
        uint32_t len = ld_be32(buf + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END) {
            return 0;
        }
        if (len > end - off) {
            return error_set(err, -EINVAL, "Header extension too large");
        }
        const uint8_t *data = buf + off;
        switch (type) {
        case QCOW2_EXT_BACKING_FORMAT:
            free(s->bd.backing_format);
            s->bd.backing_format = strndup((const char *)data, len);
            break;
        case QCOW2_EXT_DATA_FILE:
            if (qcow2_data_file_parse_ext(s, data, len) < 0) {
                return error_set(err, -ENOMEM, "Out of memory");
            }
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            *feature_table = data;
            *feature_len = len;
            break;
        case QCOW2_EXT_BITMAPS: {
            int ret = qcow2_bitmaps_parse_ext(s, data, len, err);
            if (ret < 0) {
                return ret;
            }
            break;
        }
        default: {
            /* Unknown extensions survive header rewrites. */
            s->unknown_ext = realloc(s->unknown_ext, sizeof(*s->unknown_ext) * (s->n_unknown_ext + 1));
            struct qcow2_unknown_ext *e = &s->unknown_ext[s->n_unknown_ext++];
            e->type = type;
            e->len = len;
            e->data = malloc(len ? len : 1);
            memcpy(e->data, data, len);
            break;
        }
        }
        off += (len + 7) & ~7u;
    }
    return 0;
}

/* QEMU's wording ("Active L1 table offset invalid") for what QEMU checks;
 * more detail for what it does not. */
int qcow2_check_table_location(struct qcow2 *s, uint64_t offset, uint64_t bytes,
                               int64_t file_size, const char *what, struct error *err)
{
    if ((offset & s->cluster_mask) || offset > INT64_MAX - bytes) {
        return error_set(err, -EINVAL, "%s offset invalid", what);
    }
    if (bytes == 0) {
        return 0;       /* an empty table may have any aligned offset */
    }
    if (offset == 0) {
        return error_set(err, -EINVAL, "%s offset invalid: it overlaps the header", what);
    }
    if (offset > QCOW2_MAX_HOST_OFFSET || bytes > QCOW2_MAX_HOST_OFFSET - offset) {
        return error_set(err, -EINVAL, "%s offset invalid: 0x%" PRIx64 " is out of range", what,
                         offset);
    }
    if (offset >= (uint64_t)file_size) {
        return error_set(err, -EINVAL, "%s offset invalid: 0x%" PRIx64 " lies beyond the end of "
                         "the file (%" PRId64 " bytes)", what, offset, file_size);
    }
    return 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

static int parse_fixed_fields(struct qcow2 *s, const uint8_t *h, struct error *err)
{
    if (ld_be32(h) != QCOW2_MAGIC) {
        return error_set(err, -EINVAL, "Image is not in qcow2 format");
    }
    s->version = ld_be32(h + 4);
    if (s->version != 2 && s->version != 3) {
        return error_set(err, -ENOTSUP, "Unsupported qcow2 version %u", s->version);
    }
    s->cluster_bits = ld_be32(h + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        return error_set(err, -EINVAL, "Unsupported cluster size: 2^%u", s->cluster_bits);
    }
    s->bd.size = ld_be64(h + 24);
    s->crypt_method = ld_be32(h + 32);
    s->l1_size = ld_be32(h + 36);
    s->l1_table_offset = ld_be64(h + 40);
    s->refcount_table_offset = ld_be64(h + 48);
    s->refcount_table_clusters = ld_be32(h + 56);
    s->nb_snapshots = ld_be32(h + 60);
    s->snapshots_offset = ld_be64(h + 64);
    if (s->version == 2) {
        s->refcount_order = 4;
        s->header_length = QCOW2_V2_HEADER_LEN;
        return 0;
    }
    s->incompatible_features = ld_be64(h + 72);
    s->compatible_features = ld_be64(h + 80);
    s->autoclear_features = ld_be64(h + 88);
    s->refcount_order = ld_be32(h + 96);
    s->header_length = ld_be32(h + 100);
    if (s->refcount_order > 6) {
        return error_set(err, -EINVAL, "Reference count entry width too large; may not exceed 64 bits");
    }
    if (s->header_length > (1u << s->cluster_bits)) {
        return error_set(err, -EINVAL, "qcow2 header exceeds cluster size");
    }
    if (s->header_length < QCOW2_V3_HEADER_LEN) {
        return error_set(err, -EINVAL, "qcow2 header too short");
    }
    if (s->header_length % 8) {
        return error_set(err, -EINVAL, "Invalid qcow2 header length %u: not a multiple of 8",
                         s->header_length);
    }
    return 0;
}

static int check_features(struct qcow2 *s, const uint8_t *h, const uint8_t *feature_table,
                          uint32_t feature_len, struct error *err)
{
    uint64_t unknown = s->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        char names[512];
        describe_unknown_features(unknown, feature_table, feature_len, names, sizeof(names));
        return error_set(err, -ENOTSUP, "Unsupported qcow2 feature(s): %s", names);
    }
    if (s->crypt_method) {
        return error_set(err, -ENOTSUP, "Encrypted qcow2 images are not supported");
    }
    s->compression_type = 0;
    if (s->header_length > 104) {
        s->compression_type = h[104];
    }
    bool has_type_bit = s->incompatible_features & QCOW2_INCOMPAT_COMPRESSION;
    if (s->compression_type > BDEV_COMPRESSION_ZSTD) {
        return error_set(err, -ENOTSUP, "Unknown compression type %u", s->compression_type);
    }
    if (has_type_bit != (s->compression_type != 0)) {
        return error_set(err, -EINVAL, "Invalid qcow2 image: compression type %u does not match "
                         "the compression type feature bit", s->compression_type);
    }
    return 0;
}

static int check_layout(struct qcow2 *s, int64_t file_size, struct error *err)
{
    if (s->bd.size > INT64_MAX) {
        return error_set(err, -EFBIG, "Image size %" PRIu64 " is too large", s->bd.size);
    }
    /* QEMU's checks, in its order and words (iotests 054, 080). */
    uint64_t l1_needed = qcow2_size_to_l1(s, s->bd.size);
    if (s->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        return error_set(err, -EFBIG, "Active L1 table too large");
    }
    if (l1_needed > INT_MAX) {
        return error_set(err, -EFBIG, "Image is too big");
    }
    if (s->l1_size < l1_needed) {
        return error_set(err, -EINVAL, "L1 table is too small");
    }
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    uint64_t rt_bytes = (uint64_t)s->refcount_table_clusters << s->cluster_bits;
    if (rt_bytes == 0) {
        return error_set(err, -EINVAL, "Invalid qcow2 image: the image has no refcount table");
    }
    if (rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
        return error_set(err, -EFBIG, "Reference count table too large");
    }
    int ret = qcow2_check_table_location(s, s->l1_table_offset, l1_bytes, file_size, "Active L1 table", err);
    if (ret == 0) {
        ret = qcow2_check_table_location(s, s->refcount_table_offset, rt_bytes, file_size, "Reference count table",
                          err);
    }
    if (ret < 0) {
        return ret;
    }
    if (ranges_overlap(s->l1_table_offset, l1_bytes, s->refcount_table_offset, rt_bytes)) {
        return error_set(err, -EINVAL, "Invalid qcow2 image: the L1 table overlaps the refcount table");
    }
    return 0;   /* the snapshot table's place is checked where it is loaded */
}

static int read_backing_name(struct qcow2 *s, const uint8_t *h, const uint8_t *buf,
                             struct error *err)
{
    uint64_t off = ld_be64(h + 8);
    uint32_t len = ld_be32(h + 16);
    if (off == 0) {
        return 0;
    }
    if (len > 1023 || len > s->cluster_size - off) {
        return error_set(err, -EINVAL, "Backing file name too long");
    }
    s->bd.backing_filename = strndup((const char *)buf + off, len);
    return 0;
}

int qcow2_header_parse(struct qcow2 *s, struct error *err)
{
    uint8_t h[QCOW2_HEADER_LEN_WITH_COMPRESSION];
    int64_t file_size = hostfile_size(s->file);
    if (file_size < 0) {
        return error_set_errno(err, (int)file_size, "Could not get the size of the image file");
    }
    if (file_size < QCOW2_V2_HEADER_LEN) {
        return error_set(err, -EINVAL, "Image is not in qcow2 format (file is only %" PRId64
                         " bytes)", file_size);
    }
    int ret = hostfile_pread(s->file, 0, h, sizeof(h));
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not read the qcow2 header");
    }
    ret = parse_fixed_fields(s, h, err);
    if (ret < 0) {
        return ret;
    }
    uint32_t cluster_size = 1u << s->cluster_bits;
    uint8_t *buf = malloc(cluster_size);
    ret = hostfile_pread(s->file, 0, buf, cluster_size);
    if (ret < 0) {
        free(buf);
        return error_set_errno(err, ret, "Could not read the qcow2 header");
    }
    const uint8_t *feature_table = NULL;
    uint32_t feature_len = 0;
    /* Extensions end where the backing file name starts. */
    uint64_t ext_end = ld_be64(buf + 8) ? ld_be64(buf + 8) : cluster_size;
    if (ext_end > cluster_size) {
        free(buf);
        return error_set(err, -EINVAL, "Invalid backing file offset");
    }
    ret = parse_extensions(s, buf, ext_end, &feature_table, &feature_len, err);
    if (ret == 0) {
        ret = check_features(s, buf, feature_table, feature_len, err);
    }
    if (ret == 0) {
        s->header_tail_len = 0;
        if (s->header_length > QCOW2_HEADER_LEN_WITH_COMPRESSION) {
            s->header_tail_len = s->header_length - QCOW2_HEADER_LEN_WITH_COMPRESSION;
            if (s->header_tail_len > sizeof(s->header_tail)) {
                s->header_tail_len = sizeof(s->header_tail);
            }
            memcpy(s->header_tail, buf + QCOW2_HEADER_LEN_WITH_COMPRESSION, s->header_tail_len);
        }
        qcow2_geometry_init(s);
        ret = check_layout(s, file_size, err);
    }
    if (ret == 0) {
        ret = read_backing_name(s, buf, buf, err);
    }
    free(buf);
    return ret;
}

/* The header cluster being assembled: every store is checked against the
 * cluster, because header_length, unknown extensions and the backing name
 * all come from the image and may leave no room for what we add. */
struct header_out {
    uint8_t *buf;
    uint32_t cap;
    uint32_t off;
    bool full;
};

static void put_bytes(struct header_out *h, const void *data, uint32_t len, uint32_t padded)
{
    if (h->full || padded > h->cap - h->off) {
        h->full = true;
        return;
    }
    memcpy(h->buf + h->off, data, len);
    h->off += padded;
}

static void put_extension(struct header_out *h, uint32_t type, const void *data, uint32_t len)
{
    uint8_t hdr[8];
    st_be32(hdr, type);
    st_be32(hdr + 4, len);
    put_bytes(h, hdr, 8, 8);
    put_bytes(h, data, len, (uint32_t)(((uint64_t)len + 7) & ~7ull));
}

static void put_fixed_fields(struct qcow2 *s, uint8_t *buf)
{
    st_be32(buf, QCOW2_MAGIC);
    st_be32(buf + 4, s->version);
    st_be32(buf + 20, s->cluster_bits);
    st_be64(buf + 24, s->bd.size);
    st_be32(buf + 32, s->crypt_method);
    st_be32(buf + 36, s->l1_size);
    st_be64(buf + 40, s->l1_table_offset);
    st_be64(buf + 48, s->refcount_table_offset);
    st_be32(buf + 56, s->refcount_table_clusters);
    st_be32(buf + 60, s->nb_snapshots);
    st_be64(buf + 64, s->snapshots_offset);
    if (s->version >= 3) {
        st_be64(buf + 72, s->incompatible_features);
        st_be64(buf + 80, s->compatible_features);
        st_be64(buf + 88, s->autoclear_features);
        st_be32(buf + 96, s->refcount_order);
        st_be32(buf + 100, s->header_length);
        if (s->header_length > 104) {
            buf[104] = s->compression_type;
        }
        if (s->header_tail_len) {
            memcpy(buf + QCOW2_HEADER_LEN_WITH_COMPRESSION, s->header_tail, s->header_tail_len);
        }
    }
}

static void put_feature_table(struct header_out *h)
{
    enum { N = sizeof(known_features) / sizeof(known_features[0]) };
    uint8_t table[N * 48] = { 0 };
    for (uint32_t i = 0; i < N; i++) {
        table[i * 48] = known_features[i].type;
        table[i * 48 + 1] = known_features[i].bit;
        memcpy(table + i * 48 + 2, known_features[i].name, strlen(known_features[i].name));
    }
    put_extension(h, QCOW2_EXT_FEATURE_TABLE, table, sizeof(table));
}

int qcow2_header_write(struct qcow2 *s, struct error *err)
{
    if (s->version >= 3 && s->header_length < QCOW2_HEADER_LEN_WITH_COMPRESSION) {
        /* QEMU writes the compression_type field (and its padding) always. */
        s->header_length = QCOW2_HEADER_LEN_WITH_COMPRESSION;
    }
    /* The parser keeps header_length within the cluster; the fixed fields
     * and the saved tail end there. */
    struct header_out h = { .buf = calloc(1, s->cluster_size), .cap = s->cluster_size,
                            .off = s->header_length };
    put_fixed_fields(s, h.buf);
    if (s->bd.backing_format) {
        put_extension(&h, QCOW2_EXT_BACKING_FORMAT, s->bd.backing_format,
                      (uint32_t)strlen(s->bd.backing_format));
    }
    if (qcow2_has_data_file(s) && s->image_data_file) {
        put_extension(&h, QCOW2_EXT_DATA_FILE, s->image_data_file,
                      (uint32_t)strlen(s->image_data_file));
    }
    if (s->version >= 3) {
        put_feature_table(&h);
    }
    if (s->nb_bitmaps) {
        uint8_t ext[24] = { 0 };
        st_be32(ext, s->nb_bitmaps);
        st_be64(ext + 8, s->bitmap_dir_size);
        st_be64(ext + 16, s->bitmap_dir_offset);
        put_extension(&h, QCOW2_EXT_BITMAPS, ext, sizeof(ext));
    }
    for (int i = 0; i < s->n_unknown_ext; i++) {
        put_extension(&h, s->unknown_ext[i].type, s->unknown_ext[i].data, s->unknown_ext[i].len);
    }
    static const uint8_t end_marker[8];
    put_bytes(&h, end_marker, 8, 8);
    if (s->bd.backing_filename) {
        uint32_t len = (uint32_t)strlen(s->bd.backing_filename);
        uint32_t name_off = h.off;
        put_bytes(&h, s->bd.backing_filename, len, len);
        h.full |= len > 1023;
        st_be64(h.buf + 8, name_off);
        st_be32(h.buf + 16, len);
    }
    if (h.full) {
        free(h.buf);
        return error_set(err, -ENOSPC, "Could not update qcow2 header: the header (%u bytes), its "
                         "extensions and the backing file name do not fit in one cluster (%u bytes)",
                         s->header_length, s->cluster_size);
    }
    /* Only the used prefix: a small write lands at once, never torn by a kill. */
    int ret = hostfile_pwrite(s->file, 0, h.buf, h.off);
    free(h.buf);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not write the qcow2 header");
    }
    return 0;
}

int qcow2_header_write_incompat(struct qcow2 *s, struct error *err)
{
    if (s->version < 3) {
        return 0;
    }
    uint8_t b[8];
    st_be64(b, s->incompatible_features);
    int ret = hostfile_pwrite(s->file, 72, b, 8);
    if (ret == 0) {
        ret = hostfile_flush(s->file);
    }
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the qcow2 header");
    }
    return 0;
}

int qcow2_header_write_l1(struct qcow2 *s, struct error *err)
{
    uint8_t b[12];
    st_be32(b, s->l1_size);
    st_be64(b + 4, s->l1_table_offset);
    /* A mapping: the old table may be freed only once this is on the disk. */
    int ret = qcow2_order_before_mapping(s, err);
    if (ret < 0) {
        return ret;
    }
    ret = hostfile_pwrite(s->file, 36, b, sizeof(b));
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the L1 table location in the header");
    }
    return 0;
}

int qcow2_header_write_refcount_table(struct qcow2 *s, struct error *err)
{
    uint8_t b[12];
    st_be64(b, s->refcount_table_offset);
    st_be32(b + 8, s->refcount_table_clusters);
    int ret = qcow2_order_before_mapping(s, err);
    if (ret < 0) {
        return ret;
    }
    ret = hostfile_pwrite(s->file, 48, b, sizeof(b));
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not update the refcount table location in the header");
    }
    return 0;
}

int qcow2_signal_corruption(struct qcow2 *s, struct error *err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (!s->corrupt && !s->bd.read_only && s->version >= 3) {
        /* QEMU's wording, which scripts and iotests look for. */
        warning_print("qcow2: Marking image as corrupt: %s; further corruption events will be "
                      "suppressed\n", what);
        s->incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
        qcow2_header_write_incompat(s, NULL);
    }
    s->corrupt = true;
    return error_set(err, -EIO, "qcow2 image is corrupt: %s", what);
}

int qcow2_prepare_write(struct qcow2 *s, struct error *err)
{
    if (s->corrupt) {
        return error_set(err, -EACCES, "qcow2 image is marked corrupt and can only be repaired "
                         "(cowimg check -r all)");
    }
    if (s->broken) {
        return error_set(err, -EIO, "qcow2 image was left inconsistent by a failed emptying "
                         "and must be reopened (the open repairs it)");
    }
    if (!s->autoclear_cleared) {
        s->autoclear_cleared = true;
        /* Bitmaps are kept up to date (qcow2_bitmap.c), and so is a raw
         * data file (data goes there at its guest offset); the other bits
         * promise what we do not maintain. A stale bitmaps extension goes. */
        uint64_t keep = s->nb_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0;
        keep |= qcow2_has_data_file(s) ? QCOW2_AUTOCLEAR_DATA_FILE_RAW : 0;
        if ((s->autoclear_features & ~keep) || s->bitmaps_stale) {
            s->autoclear_features &= keep;
            s->bitmaps_stale = false;
            int ret = qcow2_header_write(s, err);
            if (ret < 0) {
                return ret;
            }
        }
    }
    if (s->lazy_refcounts && !s->dirty_written) {
        s->incompatible_features |= QCOW2_INCOMPAT_DIRTY;
        int ret = qcow2_header_write_incompat(s, err);
        if (ret < 0) {
            return ret;
        }
        s->dirty_written = true;
    }
    return 0;
}
