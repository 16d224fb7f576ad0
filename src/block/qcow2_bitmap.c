/* Persistent dirty bitmaps in qcow2: the bitmaps header extension, the
 * bitmap directory, bitmap tables and data clusters (QEMU's
 * docs/interop/qcow2.txt, "Bitmaps"), with QEMU's limits and messages.
 *
 * As in QEMU, the bitmaps live in memory while the image is open (s->bd's
 * list, blockdev_bitmap.c) and are written on close. While an image is open
 * for writing, the directory flags every loaded bitmap in use, so a crash
 * leaves them marked inconsistent rather than silently stale. A store writes
 * new data, tables and directory to fresh clusters and switches the header
 * to them in one write; only then are the old clusters freed, so a kill at
 * any point leaves the old or the new bitmaps, at worst with leaks. */
#include <errno.h>  /* program_invocation_short_name */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/warning.h"

#define MAX_BITMAPS 65535
#define MAX_DIR_SIZE (1024ULL * MAX_BITMAPS)
#define MAX_TABLE_SIZE 0x8000000ULL
#define MAX_PHYS_SIZE 0x20000000ULL     /* bytes of bitmap data */
#define MIN_GRANULARITY_BITS 9
#define MAX_GRANULARITY_BITS 31
#define MAX_NAME_SIZE 1023
#define DIR_ENTRY_HEADER 24
#define TYPE_DIRTY_TRACKING 1
#define BME_KNOWN_FLAGS (QCOW2_BME_IN_USE | QCOW2_BME_AUTO)
#define TABLE_RESERVED 0xff000000000001feULL
#define TABLE_OFFSET_MASK 0x00fffffffffffe00ULL
#define TABLE_ALL_ONES 1ULL

static uint64_t dir_entry_size(uint64_t name_size, uint64_t extra_size)
{
    return (DIR_ENTRY_HEADER + name_size + extra_size + 7) & ~7ULL;
}

/* Serialized bitmap bytes for a disk: whole 64-bit words, as QEMU counts. */
static uint64_t serialized_bytes(uint64_t disk_size, uint32_t gran_bits)
{
    uint64_t bits = (disk_size >> gran_bits) + ((disk_size & ((1ULL << gran_bits) - 1)) != 0);
    return (bits + 63) / 64 * 8;
}

/* The header extension                                                   */

int qcow2_bitmaps_parse_ext(struct qcow2 *s, const uint8_t *data, uint32_t len, struct error *err)
{
    if (len != 24) {
        return error_set(err, -EINVAL, "bitmaps_ext: Invalid extension length");
    }
    if (!(s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        /* Written by a program that did not keep them up to date. QEMU's
         * words, with its program name and without the final newline. */
        warning_print("%s: %s\nSome clusters may be leaked, run 'qemu-img check -r' on the "
                      "image file to fix.", program_invocation_short_name, s->version < 3
                      ? "warning: This qcow2 v2 image contains bitmaps, but they may have been modified "
                        "by a program without persistent bitmap support; so now they must all be "
                        "considered inconsistent"
                      : "warning: a program lacking bitmap support modified this file, so all bitmaps "
                        "are now considered inconsistent");
        s->bitmaps_stale = true;
        return 0;
    }
    uint32_t nb = ld_be32(data);
    uint64_t dir_size = ld_be64(data + 8), dir_offset = ld_be64(data + 16);
    if (ld_be32(data + 4)) {
        return error_set(err, -EINVAL, "bitmaps_ext: Reserved field is not zero");
    }
    if (nb > MAX_BITMAPS) {
        return error_set(err, -EINVAL, "bitmaps_ext: Image has %" PRIu32 " bitmaps, exceeding the "
                         "QEMU supported maximum of %d", nb, MAX_BITMAPS);
    }
    if (nb == 0) {
        return error_set(err, -EINVAL, "found bitmaps extension with zero bitmaps");
    }
    /* (the geometry is derived after the extensions are parsed) */
    if (dir_offset & ((1ULL << s->cluster_bits) - 1)) {
        return error_set(err, -EINVAL, "bitmaps_ext: invalid bitmap directory offset");
    }
    if (dir_size > MAX_DIR_SIZE) {
        return error_set(err, -EINVAL, "bitmaps_ext: bitmap directory size (%" PRIu64 ") exceeds "
                         "the maximum supported size (%llu)", dir_size, MAX_DIR_SIZE);
    }
    s->nb_bitmaps = nb;
    s->bitmap_dir_size = dir_size;
    s->bitmap_dir_offset = dir_offset;
    return 0;
}

/* The directory                                                          */

static void free_dir(struct qcow2_bitmap *dir, uint32_t n)
{
    for (uint32_t i = 0; dir && i < n; i++) {
        free(dir[i].name);
    }
    free(dir);
}

void qcow2_bitmaps_free(struct qcow2 *s)
{
    free_dir(s->bitmap_dir, s->nb_bitmaps);
    s->bitmap_dir = NULL;
}

/* QEMU's check_dir_entry: what a loaded or stored entry must satisfy. */
static bool entry_valid(const struct qcow2 *s, const struct qcow2_bitmap *e, uint8_t type,
                        uint32_t name_size)
{
    if (e->table_size == 0 || e->table_offset == 0 || (e->table_offset & s->cluster_mask) ||
        e->table_size > MAX_TABLE_SIZE || e->granularity_bits > MAX_GRANULARITY_BITS ||
        e->granularity_bits < MIN_GRANULARITY_BITS || (e->flags & ~BME_KNOWN_FLAGS) ||
        name_size == 0 || name_size > MAX_NAME_SIZE || type != TYPE_DIRTY_TRACKING) {
        return false;
    }
    uint64_t phys = (uint64_t)e->table_size * s->cluster_size;
    if (phys > MAX_PHYS_SIZE) {
        return false;
    }
    /* A bitmap in use may have missed a resize; a valid one must cover the disk. */
    return (e->flags & QCOW2_BME_IN_USE) || s->bd.size <= (phys * 8) << e->granularity_bits;
}

static bool name_taken(const struct qcow2_bitmap *dir, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(dir[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Parses one entry at buf (avail bytes left); returns its size or an error. */
static int64_t parse_entry(struct qcow2 *s, const uint8_t *buf, uint64_t avail,
                           struct qcow2_bitmap *e, struct error *err)
{
    if (avail < DIR_ENTRY_HEADER) {
        return error_set(err, -EINVAL, "Broken bitmap directory");
    }
    uint16_t name_size = ld_be16(buf + 18);
    uint32_t extra_size = ld_be32(buf + 20);
    uint64_t size = dir_entry_size(name_size, extra_size);
    if (size > avail) {
        return error_set(err, -EINVAL, "Broken bitmap directory");
    }
    if (extra_size) {
        return error_set(err, -EINVAL, "Bitmap extra data is not supported");
    }
    e->table_offset = ld_be64(buf);
    e->table_size = ld_be32(buf + 8);
    e->flags = ld_be32(buf + 12);
    e->granularity_bits = buf[17];
    if (!entry_valid(s, e, buf[16], name_size)) {
        return error_set(err, -EINVAL, "Bitmap '%.*s' doesn't satisfy the constraints",
                         (int)name_size, (const char *)buf + DIR_ENTRY_HEADER);
    }
    e->name = strndup((const char *)buf + DIR_ENTRY_HEADER, name_size);
    if (!e->name) {
        return error_set(err, -ENOMEM, "Could not allocate the bitmap directory");
    }
    return (int64_t)size;
}

static int parse_dir(struct qcow2 *s, const uint8_t *buf, struct qcow2_bitmap **out,
                     struct error *err)
{
    struct qcow2_bitmap *dir = calloc(s->nb_bitmaps, sizeof(*dir));
    uint32_t n = 0;
    uint64_t pos = 0;
    int ret = dir ? 0 : error_set(err, -ENOMEM, "Failed to allocate space for bitmap directory");
    while (ret == 0 && pos < s->bitmap_dir_size) {
        if (n == s->nb_bitmaps) {
            ret = error_set(err, -EINVAL, "More bitmaps found than specified in header extension");
            break;
        }
        int64_t size = parse_entry(s, buf + pos, s->bitmap_dir_size - pos, &dir[n], err);
        if (size < 0) {
            ret = (int)size;
        } else if (name_taken(dir, n, dir[n].name)) {
            ret = error_set(err, -EINVAL, "Bitmap already exists: %s", dir[n].name);
            free(dir[n].name);
        } else {
            pos += (uint64_t)size;
            n++;
        }
    }
    if (ret == 0 && n != s->nb_bitmaps) {
        ret = error_set(err, -EINVAL, "Less bitmaps found than specified in header extension");
    }
    if (ret < 0) {
        free_dir(dir, n);
        return ret;
    }
    *out = dir;
    return 0;
}

static int load_dir(struct qcow2 *s, struct qcow2_bitmap **out, struct error *err)
{
    if (s->bitmap_dir_size == 0) {
        return error_set(err, -EINVAL, "Requested bitmap directory size is zero");
    }
    uint8_t *buf = malloc(s->bitmap_dir_size);
    if (!buf) {
        return error_set(err, -ENOMEM, "Failed to allocate space for bitmap directory");
    }
    int ret = hostfile_pread(s->file, s->bitmap_dir_offset, buf, s->bitmap_dir_size);
    if (ret < 0) {
        error_set_errno(err, ret, "Failed to read bitmap directory");
    } else {
        ret = parse_dir(s, buf, out, err);
    }
    free(buf);
    return ret;
}

static uint8_t *serialize_dir(const struct qcow2_bitmap *dir, uint32_t n, uint64_t *size)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        total += dir_entry_size(strlen(dir[i].name), 0);
    }
    uint8_t *buf = calloc(1, total ? total : 1);
    uint64_t pos = 0;
    for (uint32_t i = 0; buf && i < n; i++) {
        size_t name_len = strlen(dir[i].name);
        st_be64(buf + pos, dir[i].table_offset);
        st_be32(buf + pos + 8, dir[i].table_size);
        st_be32(buf + pos + 12, dir[i].flags);
        buf[pos + 16] = TYPE_DIRTY_TRACKING;
        buf[pos + 17] = dir[i].granularity_bits;
        st_be16(buf + pos + 18, (uint16_t)name_len);
        memcpy(buf + pos + DIR_ENTRY_HEADER, dir[i].name, name_len);
        pos += dir_entry_size(name_len, 0);
    }
    *size = total;
    return buf;
}

/* Bitmap tables and data                                                 */

static bool table_entry_valid(const struct qcow2 *s, uint64_t entry)
{
    uint64_t off = entry & TABLE_OFFSET_MASK;
    return !(entry & TABLE_RESERVED) && (!off || (!(entry & TABLE_ALL_ONES) && !(off & s->cluster_mask)));
}

/* Reads a bitmap table (host order); -EINVAL when an entry is malformed. */
static int load_table(struct qcow2 *s, const struct qcow2_bitmap *e, uint64_t **out)
{
    uint64_t *t = malloc((size_t)e->table_size * 8);
    if (!t) {
        return -ENOMEM;
    }
    int ret = hostfile_pread(s->file, e->table_offset, t, (size_t)e->table_size * 8);
    for (uint32_t i = 0; ret == 0 && i < e->table_size; i++) {
        t[i] = be64_to_cpu(t[i]);
        if (!table_entry_valid(s, t[i])) {
            ret = -EINVAL;
        }
    }
    if (ret < 0) {
        free(t);
        return ret;
    }
    *out = t;
    return 0;
}

static int load_data(struct qcow2 *s, const struct qcow2_bitmap *e, const uint64_t *table,
                     struct dirty_bitmap *bits)
{
    uint64_t clusters = qcow2_size_to_clusters(s, dirty_bitmap_serialized_size(bits));
    if (clusters != e->table_size) {
        return -EINVAL;
    }
    uint8_t *buf = malloc(s->cluster_size);
    int ret = buf ? 0 : -ENOMEM;
    for (uint32_t i = 0; ret == 0 && i < e->table_size; i++) {
        uint64_t off = table[i] & TABLE_OFFSET_MASK;
        uint64_t byte_off = (uint64_t)i << s->cluster_bits;
        if (!off) {
            if (table[i] & TABLE_ALL_ONES) {
                dirty_bitmap_deserialize_ones(bits, byte_off, s->cluster_size);
            }
            continue;
        }
        ret = hostfile_pread(s->file, off, buf, s->cluster_size);
        if (ret == 0) {
            dirty_bitmap_deserialize(bits, byte_off, buf, s->cluster_size);
        }
    }
    free(buf);
    return ret;
}

static int load_bitmap(struct qcow2 *s, const struct qcow2_bitmap *e, struct dirty_bitmap **out,
                       struct error *err)
{
    struct dirty_bitmap *bits = dirty_bitmap_new(s->bd.size, 1u << e->granularity_bits);
    if (!bits) {
        return error_set(err, -ENOMEM, "Could not allocate bitmap '%s'", e->name);
    }
    if (!(e->flags & QCOW2_BME_IN_USE)) {
        /* Data of a bitmap in use is unusable: only its existence counts. */
        uint64_t *table = NULL;
        int ret = load_table(s, e, &table);
        if (ret < 0) {
            dirty_bitmap_free(bits);
            return error_set_errno(err, ret, "Could not read bitmap_table table from image for "
                                   "bitmap '%s'", e->name);
        }
        ret = load_data(s, e, table, bits);
        free(table);
        if (ret < 0) {
            dirty_bitmap_free(bits);
            return error_set_errno(err, ret, "Could not read bitmap '%s' from image", e->name);
        }
    }
    *out = bits;
    return 0;
}

static int sync(struct qcow2 *s, struct error *err)
{
    int ret = hostfile_flush(s->file);
    return ret < 0 ? error_set_errno(err, ret, "Could not flush '%s'", s->bd.filename) : 0;
}

/* Rewrites the directory where it is (only flags changed): with the
 * autoclear bit dropped meanwhile, a torn write reads as inconsistent
 * bitmaps, never as wrong ones. */
static int update_dir_in_place(struct qcow2 *s, struct error *err)
{
    uint64_t size;
    uint8_t *buf = serialize_dir(s->bitmap_dir, s->nb_bitmaps, &size);
    if (!buf || size != s->bitmap_dir_size) {
        free(buf);
        return error_set(err, -EINVAL, "Can't update bitmap directory: the directory changed size");
    }
    s->autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    int ret = qcow2_header_write(s, err);
    ret = ret < 0 ? ret : sync(s, err);
    if (ret == 0) {
        ret = hostfile_pwrite(s->file, s->bitmap_dir_offset, buf, size);
        ret = ret < 0 ? error_set_errno(err, ret, "Can't update bitmap directory") : sync(s, err);
    }
    if (ret == 0) {
        s->autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
        ret = qcow2_header_write(s, err);
        ret = ret < 0 ? ret : sync(s, err);
    }
    free(buf);
    return ret;
}

int qcow2_bitmaps_open(struct qcow2 *s, unsigned flags, struct error *err)
{
    if (!s->nb_bitmaps) {
        return 0;
    }
    int ret = load_dir(s, &s->bitmap_dir, err);
    if (flags & BDEV_CHECK) {
        /* check reports a broken directory; the bitmaps themselves are not needed. */
        error_clear(err);
        return 0;
    }
    if (ret < 0) {
        return ret;
    }
    bool writable = !(flags & BDEV_READ_ONLY), update = false;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *e = &s->bitmap_dir[i];
        struct dirty_bitmap *bits = NULL;
        ret = load_bitmap(s, e, &bits, err);
        if (ret == 0) {
            ret = blockdev_bitmap_attach(&s->bd, e->name, bits, e->flags & QCOW2_BME_AUTO,
                                         e->flags & QCOW2_BME_IN_USE, err);
        }
        if (ret < 0) {
            return ret;
        }
        if (writable && !(e->flags & QCOW2_BME_IN_USE)) {
            e->flags |= QCOW2_BME_IN_USE;
            update = true;
        }
    }
    return update ? update_dir_in_place(s, err) : 0;
}

/* Storing                                                                */

/* Frees the clusters of [off, off+len) that are in use. A table read from
 * the image may point past the file or at nothing allocated: freeing that
 * would mark the image corrupt for what is only a leak-free bad pointer. */
static void free_in_use(struct qcow2 *s, uint64_t off, uint64_t len)
{
    int64_t file_size = hostfile_size(s->file);
    for (uint64_t pos = qcow2_start_of_cluster(s, off); pos < off + len; pos += s->cluster_size) {
        uint64_t rc;
        if (file_size >= 0 && pos < (uint64_t)file_size &&
            qcow2_get_refcount(s, pos >> s->cluster_bits, &rc, NULL) == 0 && rc > 0) {
            qcow2_free_clusters(s, pos, s->cluster_size, NULL);
        }
    }
}

/* Frees a table's data clusters and the table (t in host order). */
static void free_table_clusters(struct qcow2 *s, const uint64_t *t, uint32_t n, uint64_t table_off)
{
    for (uint32_t i = 0; t && i < n; i++) {
        if (t[i] & TABLE_OFFSET_MASK) {
            free_in_use(s, t[i] & TABLE_OFFSET_MASK, s->cluster_size);
        }
    }
    if (table_off) {
        free_in_use(s, table_off, (uint64_t)n * 8);
    }
}

/* Frees everything an on-disk entry references (its table read back). */
static void free_entry_clusters(struct qcow2 *s, const struct qcow2_bitmap *e)
{
    uint64_t *t = NULL;
    if (load_table(s, e, &t) == 0) {
        free_table_clusters(s, t, e->table_size, e->table_offset);
        free(t);
    }
}

static int write_cluster(struct qcow2 *s, const void *buf, uint64_t len, int64_t *off,
                         const char *name, struct error *err)
{
    *off = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, len), err);
    if (*off < 0) {
        error_prefix(err, "Failed to allocate clusters for bitmap '%s'", name);
        return (int)*off;
    }
    int ret = hostfile_pwrite(s->file, (uint64_t)*off, buf, len);
    if (ret < 0) {
        return error_set_errno(err, ret, "Failed to write bitmap '%s' to file", name);
    }
    qcow2_order_note_target(s);
    return 0;
}

/* Writes a bitmap's data (clusters that have a set bit) and table. */
static int store_bitmap(struct qcow2 *s, const struct bdev_bitmap *bm, struct qcow2_bitmap *e,
                        struct error *err)
{
    uint64_t clusters = qcow2_size_to_clusters(s, dirty_bitmap_serialized_size(bm->bits));
    if (clusters > MAX_TABLE_SIZE || clusters * s->cluster_size > MAX_PHYS_SIZE) {
        return error_set(err, -EINVAL, "Bitmap '%s' is too big", bm->name);
    }
    uint64_t *t = calloc(clusters, 8);
    uint8_t *buf = malloc(s->cluster_size);
    int ret = t && buf ? 0 : error_set(err, -ENOMEM, "No memory");
    uint64_t coverage = ((uint64_t)s->cluster_size * 8) << e->granularity_bits;
    for (uint64_t i = 0; ret == 0 && i < clusters; i++) {
        int64_t next = dirty_bitmap_next_dirty(bm->bits, i * coverage);
        if (next < 0) {
            break;
        }
        i = (uint64_t)next / coverage;
        dirty_bitmap_serialize(bm->bits, i << s->cluster_bits, buf, s->cluster_size);
        int64_t off;
        ret = write_cluster(s, buf, s->cluster_size, &off, bm->name, err);
        t[i] = off > 0 ? (uint64_t)off : 0;
    }
    int64_t table_off = 0;
    if (ret == 0) {
        for (uint64_t i = 0; i < clusters; i++) {
            t[i] = cpu_to_be64(t[i]);
        }
        ret = write_cluster(s, t, clusters * 8, &table_off, bm->name, err);
        for (uint64_t i = 0; i < clusters; i++) {
            t[i] = be64_to_cpu(t[i]);
        }
    }
    if (ret < 0) {
        free_table_clusters(s, t, (uint32_t)clusters, table_off > 0 ? (uint64_t)table_off : 0);
    } else {
        e->table_offset = (uint64_t)table_off;
        e->table_size = (uint32_t)clusters;
    }
    free(t);
    free(buf);
    return ret;
}

/* Makes dir (n entries) the image's directory: written to fresh clusters,
 * then one header write; the old directory's clusters are freed after. */
static int switch_dir(struct qcow2 *s, struct qcow2_bitmap *dir, uint32_t n, struct error *err)
{
    uint64_t size = 0;
    int64_t off = 0;
    int ret = 0;
    if (n) {
        uint8_t *buf = serialize_dir(dir, n, &size);
        ret = buf ? write_cluster(s, buf, size, &off, dir[0].name, err)
                  : error_set(err, -ENOMEM, "No memory");
        free(buf);
    }
    ret = ret < 0 ? ret : qcow2_order_before_mapping(s, err);
    uint64_t old_off = s->bitmap_dir_offset, old_size = s->bitmap_dir_size;
    uint32_t old_n = s->nb_bitmaps;
    uint64_t old_autoclear = s->autoclear_features;
    if (ret == 0) {
        s->nb_bitmaps = n;
        s->bitmap_dir_offset = n ? (uint64_t)off : 0;
        s->bitmap_dir_size = size;
        s->autoclear_features = n ? s->autoclear_features | QCOW2_AUTOCLEAR_BITMAPS
                                  : s->autoclear_features & ~QCOW2_AUTOCLEAR_BITMAPS;
        ret = qcow2_header_write(s, err);
    }
    if (ret < 0) {
        s->nb_bitmaps = old_n;
        s->bitmap_dir_offset = old_off;
        s->bitmap_dir_size = old_size;
        s->autoclear_features = old_autoclear;
        if (off > 0) {
            qcow2_free_clusters(s, (uint64_t)off, size, NULL);
        }
        error_prefix(err, "Failed to update bitmap extension");
        return ret;
    }
    if (old_size) {
        qcow2_free_clusters(s, old_off, old_size, NULL);
    }
    free_dir(s->bitmap_dir, old_n);
    s->bitmap_dir = dir;
    return 0;
}

static int find_entry(const struct qcow2_bitmap *dir, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(dir[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static struct qcow2_bitmap *copy_dir(const struct qcow2_bitmap *dir, uint32_t n, uint32_t room)
{
    struct qcow2_bitmap *c = calloc((size_t)n + room + 1, sizeof(*c));
    for (uint32_t i = 0; c && i < n; i++) {
        c[i] = dir[i];
        c[i].name = strdup(dir[i].name);
    }
    return c;
}

/* The entries the memory bitmaps become (stored data comes later). */
static int plan_store(struct qcow2 *s, struct qcow2_bitmap *dir, uint32_t *n, bool *old,
                      struct error *err)
{
    for (struct bdev_bitmap *bm = s->bd.bitmaps->head; bm; bm = bm->next) {
        if (!bm->persistent || bm->readonly || bm->inconsistent) {
            continue;       /* an inconsistent one keeps its entry as it is */
        }
        int i = find_entry(dir, *n, bm->name);
        if (i < 0) {
            if (*n == MAX_BITMAPS) {
                return error_set(err, -EINVAL, "Too many persistent bitmaps");
            }
            i = (int)(*n)++;
            dir[i].name = strdup(bm->name);
        } else if (!(dir[i].flags & QCOW2_BME_IN_USE)) {
            return error_set(err, -EEXIST, "Bitmap '%s' already exists in the image", bm->name);
        } else {
            old[i] = true;      /* its previous table is freed once the new one is live */
        }
        dir[i].flags = bm->recording ? QCOW2_BME_AUTO : 0;
        dir[i].granularity_bits = (uint8_t)__builtin_ctz(dirty_bitmap_granularity(bm->bits));
        dir[i].table_offset = 0;
        dir[i].table_size = 0;
    }
    uint64_t size;
    free(serialize_dir(dir, *n, &size));
    if (size > MAX_DIR_SIZE) {
        return error_set(err, -EINVAL, "Bitmap directory is too large");
    }
    return 0;
}

static int store_locked(struct qcow2 *s, struct error *err)
{
    uint32_t room = 0, n = s->nb_bitmaps;
    for (struct bdev_bitmap *bm = s->bd.bitmaps->head; bm; bm = bm->next) {
        room++;
    }
    struct qcow2_bitmap *dir = copy_dir(s->bitmap_dir, n, room);
    bool *old = calloc((size_t)n + 1, sizeof(*old));
    int ret = dir && old ? qcow2_prepare_write(s, err) : error_set(err, -ENOMEM, "No memory");
    ret = ret < 0 ? ret : plan_store(s, dir, &n, old, err);
    for (struct bdev_bitmap *bm = s->bd.bitmaps->head; ret == 0 && bm; bm = bm->next) {
        int i = bm->persistent && !bm->readonly && !bm->inconsistent ? find_entry(dir, n, bm->name) : -1;
        if (i >= 0) {
            ret = store_bitmap(s, bm, &dir[i], err);
        }
    }
    if (ret == 0) {
        uint32_t old_n = s->nb_bitmaps;
        struct qcow2_bitmap *old_dir = copy_dir(s->bitmap_dir, old_n, 0);
        ret = switch_dir(s, dir, n, err);
        for (uint32_t i = 0; ret == 0 && old_dir && i < old_n; i++) {
            if (old[i]) {
                free_entry_clusters(s, &old_dir[i]);
            }
        }
        free_dir(old_dir, old_n);
        if (ret == 0) {
            dir = NULL;
        }
    }
    if (ret < 0 && dir) {
        /* Tables written for this store go; the old ones stay referenced. */
        for (uint32_t i = 0; i < n; i++) {
            bool fresh = dir[i].table_offset && (i >= s->nb_bitmaps || old[i]);
            if (fresh) {
                free_entry_clusters(s, &dir[i]);
            }
        }
    }
    free_dir(dir, n);
    free(old);
    return ret;
}

int qcow2_bitmaps_store(struct blockdev *bd, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int ret = store_locked(s, err);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_bitmap_remove(struct blockdev *bd, const char *name, struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int i = s->bitmap_dir ? find_entry(s->bitmap_dir, s->nb_bitmaps, name) : -1;
    int ret = 0;
    if (i >= 0) {
        /* Not in the image yet (added since open) needs nothing on disk. */
        struct qcow2_bitmap gone = s->bitmap_dir[i];
        gone.name = NULL;
        struct qcow2_bitmap *dir = copy_dir(s->bitmap_dir, s->nb_bitmaps, 0);
        free(dir[i].name);
        memmove(&dir[i], &dir[i + 1], (s->nb_bitmaps - (uint32_t)i - 1) * sizeof(*dir));
        ret = qcow2_prepare_write(s, err);
        ret = ret < 0 ? ret : switch_dir(s, dir, s->nb_bitmaps - 1, err);
        if (ret < 0) {
            free_dir(dir, s->nb_bitmaps - 1);
        } else {
            free_entry_clusters(s, &gone);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Checks before a new persistent bitmap (QEMU's can_store_new_dirty_bitmap) */

static int check_constraints(struct qcow2 *s, const char *name, uint32_t granularity,
                             struct error *err)
{
    uint32_t bits = (uint32_t)__builtin_ctz(granularity);
    if (bits > MAX_GRANULARITY_BITS) {
        return error_set(err, -EINVAL, "Granularity exceeds maximum (%llu bytes)",
                         1ULL << MAX_GRANULARITY_BITS);
    }
    if (bits < MIN_GRANULARITY_BITS) {
        return error_set(err, -EINVAL, "Granularity is under minimum (%llu bytes)",
                         1ULL << MIN_GRANULARITY_BITS);
    }
    uint64_t bytes = serialized_bytes(s->bd.size, bits);
    if (bytes > MAX_PHYS_SIZE || bytes > MAX_TABLE_SIZE * s->cluster_size) {
        return error_set(err, -EINVAL, "Too much space will be occupied by the bitmap. Use larger "
                         "granularity");
    }
    if (strlen(name) > MAX_NAME_SIZE) {
        return error_set(err, -EINVAL, "Name length exceeds maximum (%u characters)", MAX_NAME_SIZE);
    }
    return 0;
}

int qcow2_bitmap_can_store(struct blockdev *bd, const char *name, uint32_t granularity,
                           struct error *err)
{
    struct qcow2 *s = qcow2_of(bd);
    int ret = 0;
    if (s->version < 3) {
        ret = error_set(err, -ENOTSUP, "Cannot store dirty bitmaps in qcow2 v2 files");
    }
    if (!name) {
        return ret;     /* only whether the image can hold bitmaps at all */
    }
    ret = ret < 0 ? ret : check_constraints(s, name, granularity, err);
    uint64_t nb = 1, dir_size = dir_entry_size(strlen(name), 0);
    for (struct bdev_bitmap *bm = bd->bitmaps ? bd->bitmaps->head : NULL; bm; bm = bm->next) {
        if (bm->persistent) {
            nb++;
            dir_size += dir_entry_size(strlen(bm->name), 0);
        }
    }
    if (ret == 0 && nb > MAX_BITMAPS) {
        ret = error_set(err, -EINVAL, "Maximum number of persistent bitmaps is already reached");
    }
    if (ret == 0 && dir_size > MAX_DIR_SIZE) {
        ret = error_set(err, -EINVAL, "Not enough space in the bitmap directory");
    }
    if (ret < 0) {
        error_prefix(err, "Can't make bitmap '%s' persistent in '%s'", name, bd->filename);
    }
    return ret;
}

/* check and info                                                         */

int qcow2_bitmaps_count_refs(struct qcow2 *s, void (*ref)(void *opaque, uint64_t off, uint64_t len),
                             void *opaque)
{
    if (!s->nb_bitmaps) {
        return 0;
    }
    ref(opaque, s->bitmap_dir_offset, s->bitmap_dir_size);
    struct qcow2_bitmap *dir;
    if (load_dir(s, &dir, NULL) < 0) {
        warning_print("ERROR the bitmap directory is broken\n");
        return 1;
    }
    int corruptions = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        ref(opaque, dir[i].table_offset, (uint64_t)dir[i].table_size * 8);
        uint64_t *t = malloc((size_t)dir[i].table_size * 8);
        if (!t || hostfile_pread(s->file, dir[i].table_offset, t, (size_t)dir[i].table_size * 8) < 0) {
            warning_print("ERROR bitmap '%s': its table cannot be read\n", dir[i].name);
            corruptions++;
            free(t);
            continue;
        }
        for (uint32_t k = 0; k < dir[i].table_size; k++) {
            uint64_t entry = be64_to_cpu(t[k]);
            if (!table_entry_valid(s, entry)) {
                warning_print("ERROR bitmap '%s': invalid bitmap table entry %u: 0x%" PRIx64 "\n",
                              dir[i].name, k, entry);
                corruptions++;
            } else if (entry & TABLE_OFFSET_MASK) {
                ref(opaque, entry & TABLE_OFFSET_MASK, s->cluster_size);
            }
        }
        free(t);
    }
    free_dir(dir, s->nb_bitmaps);
    return corruptions;
}

void qcow2_bitmaps_info_json(struct qcow2 *s, struct json_writer *w)
{
    if (!s->bitmap_dir || !s->nb_bitmaps) {
        return;
    }
    json_array_begin(w, "bitmaps");
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *e = &s->bitmap_dir[i];
        json_object_begin(w, NULL);
        json_array_begin(w, "flags");
        if (e->flags & QCOW2_BME_IN_USE) {
            json_write_string(w, NULL, "in-use");
        }
        if (e->flags & QCOW2_BME_AUTO) {
            json_write_string(w, NULL, "auto");
        }
        json_array_end(w);
        json_write_string(w, "name", e->name);
        json_write_uint(w, "granularity", 1ULL << e->granularity_bits);
        json_object_end(w);
    }
    json_array_end(w);
}

/* measure                                                                */

uint64_t blockdev_bitmaps_measure(struct blockdev *src, uint32_t cluster_size)
{
    struct blockdev_bitmap_info *list;
    int n;
    if (blockdev_bitmap_list(src, &list, &n, NULL) < 0) {
        return 0;
    }
    uint64_t total = 0, dir = 0;
    for (int i = 0; i < n; i++) {
        if (!list[i].persistent) {
            continue;
        }
        uint32_t gran_bits = (uint32_t)__builtin_ctz(list[i].granularity);
        uint64_t bits = (blockdev_size(src) + list[i].granularity - 1) >> gran_bits;
        uint64_t clusters = ((bits + 7) / 8 + cluster_size - 1) / cluster_size;
        /* QEMU assumes every data cluster allocated, plus the table. */
        total += clusters * cluster_size;
        total += (clusters * 8 + cluster_size - 1) / cluster_size * cluster_size;
        dir += dir_entry_size(strlen(list[i].name), 0);
    }
    blockdev_bitmap_list_free(list, n);
    return total + (dir + cluster_size - 1) / cluster_size * cluster_size;
}
