/* Internal snapshots: the snapshot table, and create / apply / delete /
 * rename.
 *
 * Create, delete and rename update the image in place in QEMU's order
 * (qcow2_snapshot_refs.c), so that clusters land where qemu-img puts them;
 * a kill leaves at worst leaked clusters. Apply is a metadata transaction
 * (qcow2_txn.c): every new table goes to clusters free before and after, and
 * one header write makes it all live, so a kill leaves the image as it was
 * before or after (the active L1 table is replaced as a whole). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/warning.h"

#define SNAPSHOT_HEADER_LEN 40

static void free_entry(struct qcow2_snapshot *sn)
{
    free(sn->id);
    free(sn->name);
    free(sn->unknown_extra);
}

static int no_memory(struct error *err)
{
    return error_set(err, -ENOMEM, "Could not allocate memory for the snapshot table");
}

void qcow2_snapshot_list_free_internal(struct qcow2_snapshot *list, uint32_t count)
{
    for (uint32_t i = 0; list && i < count; i++) {
        free_entry(&list[i]);
    }
    free(list);
}

void qcow2_snapshots_free(struct qcow2 *s)
{
    qcow2_snapshot_list_free_internal(s->snapshots, s->nb_snapshots);
    s->snapshots = NULL;
}

/* QEMU's check of a snapshot's L1 table (qcow2_validate_table), in its
 * words, made only when the snapshot is used, as QEMU does (iotest 080: a
 * bad entry does not keep the image from opening). A table past the end of
 * the file reads as zeros, as in QEMU; one over the header is refused too. */
int qcow2_snapshot_check_l1(struct qcow2 *s, const struct qcow2_snapshot *sn, struct error *err)
{
    if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        return error_set(err, -EFBIG, "Snapshot L1 table too large");
    }
    if ((sn->l1_table_offset & s->cluster_mask) ||
        INT64_MAX - (uint64_t)sn->l1_size * 8 < sn->l1_table_offset ||
        (sn->l1_size && sn->l1_table_offset == 0)) {
        return error_set(err, -EINVAL, "Snapshot L1 table offset invalid");
    }
    return 0;
}

int qcow2_snapshot_check_l1_reported(struct qcow2 *s, const struct qcow2_snapshot *sn,
                                     const char *failure, struct error *err)
{
    struct error local = { 0 };
    int ret = qcow2_snapshot_check_l1(s, sn, &local);
    if (ret < 0) {
        warning_print("%s: %s\n", program_invocation_short_name, local.msg);
        error_set_errno(err, ret, "%s", failure);
    }
    return ret;
}

const char *qcow2_img_tool(void)
{
    return strncmp(program_invocation_short_name, "qemu-", 5) == 0 ? "qemu-img" : "cowimg";
}

/* QEMU's words, with its hint on the next line (iotest 261). */
static int too_big(uint32_t nb, uint32_t index, struct error *err)
{
    return error_set(err, -EFBIG, "Snapshot table is too big\nYou can force-remove all %u "
                     "overhanging snapshots with %s check -r all", nb - index, qcow2_img_tool());
}

static int too_much_extra(uint32_t index, struct error *err)
{
    return error_set(err, -EFBIG, "Too much extra metadata in snapshot table entry %u\nYou can "
                     "force-remove this extra metadata with %s check -r all", index,
                     qcow2_img_tool());
}

/* The table as read so far: the file's bytes from the table on (at most
 * QEMU's 64 MiB), then zeros where the file ends, as QEMU reads it. */
struct table_buf {
    uint8_t *b;
    uint64_t len;
};

/* Makes the first need bytes of the table readable. */
static int table_reach(struct qcow2 *s, struct table_buf *t, uint64_t need, uint32_t index,
                       struct error *err)
{
    if (need <= t->len) {
        return 0;
    }
    if (need > QCOW2_MAX_SNAPSHOTS_BYTES) {
        return too_big(s->nb_snapshots, index, err);
    }
    /* Doubling: a table of many entries past the end grows one at a time. */
    uint64_t len = t->len * 2 > need ? t->len * 2 : need;
    len = len < QCOW2_MAX_SNAPSHOTS_BYTES ? len : QCOW2_MAX_SNAPSHOTS_BYTES;
    uint8_t *grown = realloc(t->b, len);
    if (!grown) {
        return error_set(err, -ENOMEM, "Could not allocate the snapshot table");
    }
    memset(grown + t->len, 0, len - t->len);
    t->b = grown;
    t->len = len;
    return 0;
}

/* The fixed 40 bytes of an entry. */
static void decode_header(const uint8_t *h, struct qcow2_snapshot *sn, uint32_t *id_len,
                          uint32_t *name_len)
{
    sn->l1_table_offset = ld_be64(h);
    sn->l1_size = ld_be32(h + 8);
    *id_len = ld_be16(h + 12);
    *name_len = ld_be16(h + 14);
    sn->date_sec = ld_be32(h + 16);
    sn->date_nsec = ld_be32(h + 20);
    sn->vm_clock_nsec = ld_be64(h + 24);
    sn->vm_state_size = ld_be32(h + 32);
    sn->extra_data_size = ld_be32(h + 36);
}

/* The known fields among the first xs bytes of extra data at x. */
static void decode_known_extra(struct qcow2 *s, const uint8_t *x, uint32_t xs,
                               struct qcow2_snapshot *sn)
{
    if (xs >= 8) {
        sn->vm_state_size = ld_be64(x);
    }
    sn->disk_size = xs >= 16 ? ld_be64(x + 8) : s->bd.size;
    sn->icount = xs >= 24 ? (int64_t)ld_be64(x + 16) : -1;
}

/* Parses one entry at buf[*pos]; avail bytes of table were read (the file's
 * rest, at most the 64 MiB QEMU allows). */
static int parse_entry(struct qcow2 *s, struct table_buf *t, uint64_t *pos, uint32_t index,
                       struct qcow2_snapshot *sn, struct error *err)
{
    uint64_t p = *pos;
    int ret = table_reach(s, t, p + SNAPSHOT_HEADER_LEN, index, err);
    if (ret < 0) {
        return ret;
    }
    uint32_t id_len, name_len;
    decode_header(t->b + p, sn, &id_len, &name_len);
    if (sn->extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA) {
        return too_much_extra(index, err);
    }
    p += SNAPSHOT_HEADER_LEN;
    uint64_t need = (uint64_t)sn->extra_data_size + id_len + name_len;
    ret = table_reach(s, t, p + need, index, err);
    if (ret < 0) {
        return ret;
    }
    const uint8_t *buf = t->b, *x = buf + p;
    uint32_t xs = sn->extra_data_size;
    decode_known_extra(s, x, xs, sn);
    if (xs > QCOW2_SNAPSHOT_EXTRA_KNOWN) {
        sn->unknown_extra_len = xs - QCOW2_SNAPSHOT_EXTRA_KNOWN;
        sn->unknown_extra = malloc(sn->unknown_extra_len);
        if (!sn->unknown_extra) {
            return no_memory(err);
        }
        memcpy(sn->unknown_extra, x + QCOW2_SNAPSHOT_EXTRA_KNOWN, sn->unknown_extra_len);
    }
    p += xs;
    sn->id = strndup((const char *)buf + p, id_len);
    p += id_len;
    sn->name = strndup((const char *)buf + p, name_len);
    p += name_len;
    *pos = p;
    return sn->id && sn->name ? 0 : no_memory(err);
}

static int load_table(struct qcow2 *s, int64_t file_size, struct error *err)
{
    struct table_buf t = { 0 };
    uint64_t in_file = (uint64_t)file_size > s->snapshots_offset
                       ? (uint64_t)file_size - s->snapshots_offset : 0;
    int ret = table_reach(s, &t, in_file < QCOW2_MAX_SNAPSHOTS_BYTES ? in_file
                                                                     : QCOW2_MAX_SNAPSHOTS_BYTES,
                          0, err);
    if (ret == 0 && t.len) {
        ret = hostfile_pread(s->file, s->snapshots_offset, t.b, t.len);
        ret = ret < 0 ? error_set_errno(err, ret, "Could not read the snapshot table") : 0;
    }
    s->snapshots = ret < 0 ? NULL : calloc(s->nb_snapshots, sizeof(*s->snapshots));
    if (ret == 0 && !s->snapshots) {
        ret = error_set(err, -ENOMEM, "Could not allocate the snapshot list");
    }
    uint64_t pos = 0;
    for (uint32_t i = 0; i < s->nb_snapshots && ret == 0; i++) {
        pos = (pos + 7) & ~7ULL;
        ret = parse_entry(s, &t, &pos, i, &s->snapshots[i], err);
        if (ret == 0 && pos > QCOW2_MAX_SNAPSHOTS_BYTES) {
            ret = too_big(s->nb_snapshots, i, err);
        }
    }
    free(t.b);
    s->snapshots_size = pos;
    return ret;
}

/* QEMU's checks of the header's count and offset, in its words (iotest 080). */
static int check_location(struct qcow2 *s, uint32_t nb, struct error *err)
{
    if (nb > QCOW2_MAX_SNAPSHOTS) {
        return error_set(err, -EFBIG, "Snapshot table too large");
    }
    /* Past the end of the file is no error: QEMU reads zeros there. */
    return qcow2_check_table_location(s, s->snapshots_offset, (uint64_t)nb * SNAPSHOT_HEADER_LEN,
                                      INT64_MAX, "Snapshot table", err);
}

int qcow2_snapshots_load(struct qcow2 *s, struct error *err)
{
    s->snapshots = NULL;
    s->snapshots_size = 0;
    int64_t file_size = hostfile_size(s->file);
    if (file_size < 0) {
        return error_set_errno(err, (int)file_size, "Could not get the image file size");
    }
    struct error local = { 0 };
    int ret = check_location(s, s->nb_snapshots, &local);
    bool bad_location = ret < 0;
    if (ret == 0 && s->nb_snapshots) {
        ret = load_table(s, file_size, &local);
    }
    if (ret == 0) {
        return 0;
    }
    qcow2_snapshots_free(s);
    if (s->checking) {
        /* check reports it (and check -r all reads what it can); nothing
         * may use the table meanwhile */
        s->snapshots_unreadable = true;
        s->snapshots_bad_location = bad_location;
        s->snapshots_err = local;
        s->nb_snapshots_header = s->nb_snapshots;
        s->nb_snapshots = 0;
        s->snapshots_size = 0;
        return 0;
    }
    return error_set(err, ret, "%s", local.msg);
}

/* Reads len bytes of the table at *pos and moves past them. */
static int read_at(struct qcow2 *s, uint64_t *pos, void *buf, size_t len, struct error *err)
{
    int ret = len ? hostfile_pread(s->file, *pos, buf, len) : 0;
    if (ret < 0) {
        return error_set_errno(err, ret, "Failed to read snapshot table");
    }
    *pos += len;
    return 0;
}

/* One entry as QEMU's repair reads it: more than 1 KiB of extra data is cut
 * to 1 KiB (the entry still ends where it ended). */
/* *len: the entry's length as QEMU counts it against the 64 MiB limit (with
 * the extra data cut, the header's id and name lengths). */
static int read_entry_repairing(struct qcow2 *s, uint64_t *pos, uint32_t index,
                                struct qcow2_snapshot *sn, uint64_t *len, uint32_t *cut,
                                struct error *err)
{
    uint8_t h[SNAPSHOT_HEADER_LEN], x[QCOW2_SNAPSHOT_EXTRA_KNOWN] = { 0 };
    uint32_t id_len, name_len;
    int ret = read_at(s, pos, h, sizeof(h), err);
    if (ret < 0) {
        return ret;
    }
    decode_header(h, sn, &id_len, &name_len);
    uint32_t xs = sn->extra_data_size;
    *len = SNAPSHOT_HEADER_LEN + (uint64_t)id_len + name_len +
           (xs > QCOW2_MAX_SNAPSHOT_EXTRA ? QCOW2_MAX_SNAPSHOT_EXTRA : xs);
    if (xs > QCOW2_MAX_SNAPSHOT_EXTRA) {
        warning_print("Discarding too much extra metadata in snapshot table entry %u "
                      "(%u > %u)\n", index, xs, QCOW2_MAX_SNAPSHOT_EXTRA);
        (*cut)++;
        sn->extra_data_size = QCOW2_MAX_SNAPSHOT_EXTRA;
    }
    uint32_t known = xs < sizeof(x) ? xs : (uint32_t)sizeof(x);
    ret = read_at(s, pos, x, known, err);
    decode_known_extra(s, x, xs, sn);
    if (ret == 0 && xs > known) {
        uint64_t end = *pos + xs - known;
        sn->unknown_extra_len = sn->extra_data_size - known;
        sn->unknown_extra = malloc(sn->unknown_extra_len);
        ret = sn->unknown_extra ? read_at(s, pos, sn->unknown_extra, sn->unknown_extra_len, err)
                                : no_memory(err);
        *pos = end;
    }
    sn->id = calloc(1, id_len + 1);
    sn->name = calloc(1, name_len + 1);
    if (ret == 0 && (!sn->id || !sn->name)) {
        ret = no_memory(err);
    }
    if (ret == 0) {
        ret = read_at(s, pos, sn->id, id_len, err);
    }
    return ret == 0 ? read_at(s, pos, sn->name, name_len, err) : ret;
}

/* QEMU's repair reading (qcow2_check_read_snapshot_table): too many
 * entries, too much extra data and a table past 64 MiB are cut, saying so. */
int qcow2_snapshots_load_repairing(struct qcow2 *s, struct error *err)
{
    uint32_t n = s->nb_snapshots_header, discarded = 0, cut = 0;
    if (n > QCOW2_MAX_SNAPSHOTS) {
        warning_print("Discarding %u overhanging snapshots\n", n - QCOW2_MAX_SNAPSHOTS);
        discarded = n - QCOW2_MAX_SNAPSHOTS;
        n = QCOW2_MAX_SNAPSHOTS;
    }
    int ret = check_location(s, n, err);
    struct qcow2_snapshot *list = calloc(n ? n : 1, sizeof(*list));
    if (ret == 0 && !list) {
        ret = no_memory(err);
    }
    uint64_t start = s->snapshots_offset, pos = start, table_len = 0;
    uint32_t i = 0;
    while (i < n && ret == 0) {
        uint64_t pre = pos;
        pos = (pos + 7) & ~7ULL;
        table_len = (table_len + 7) & ~7ULL;
        uint64_t len = 0;
        ret = read_entry_repairing(s, &pos, i, &list[i], &len, &cut, err);
        table_len += len;
        if (ret == 0 && (table_len > QCOW2_MAX_SNAPSHOTS_BYTES || pos - start > INT32_MAX)) {
            warning_print("Discarding %u overhanging snapshots (snapshot table is too big)\n",
                          n - i);
            discarded += n - i;
            free_entry(&list[i]);
            memset(&list[i], 0, sizeof(list[i]));
            pos = pre;
            break;
        }
        i++;
    }
    if (ret < 0) {
        qcow2_snapshot_list_free_internal(list, i < n ? i + 1 : n);
        return ret;
    }
    s->snapshots = list;
    s->nb_snapshots = i;
    s->snapshots_size = pos - start;
    s->snapshots_unreadable = false;
    s->snapshots_discarded = discarded;
    s->snapshots_extra_cut = cut;
    return 0;
}

int qcow2_snapshots_serialize(struct qcow2_snapshot *list, uint32_t count, uint8_t **buf,
                              uint64_t *len, struct error *err)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        total = (total + 7) & ~7ULL;
        total += SNAPSHOT_HEADER_LEN + QCOW2_SNAPSHOT_EXTRA_KNOWN + list[i].unknown_extra_len +
                 strlen(list[i].id) + strlen(list[i].name);
        if (total > QCOW2_MAX_SNAPSHOTS_BYTES) {
            return error_set(err, -EFBIG, "The snapshot table would exceed 64 MiB");
        }
    }
    uint8_t *b = calloc(1, total ? total : 1);
    if (!b) {
        return no_memory(err);
    }
    uint64_t p = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct qcow2_snapshot *sn = &list[i];
        size_t id_len = strlen(sn->id), name_len = strlen(sn->name);
        sn->extra_data_size = QCOW2_SNAPSHOT_EXTRA_KNOWN + sn->unknown_extra_len;
        p = (p + 7) & ~7ULL;
        uint8_t *h = b + p;
        st_be64(h, sn->l1_table_offset);
        st_be32(h + 8, sn->l1_size);
        st_be16(h + 12, (uint16_t)id_len);
        st_be16(h + 14, (uint16_t)name_len);
        st_be32(h + 16, sn->date_sec);
        st_be32(h + 20, sn->date_nsec);
        st_be64(h + 24, sn->vm_clock_nsec);
        /* Too big for 32 bits: older readers see a disk-only snapshot, not a truncated one. */
        st_be32(h + 32, sn->vm_state_size <= UINT32_MAX ? (uint32_t)sn->vm_state_size : 0);
        st_be32(h + 36, sn->extra_data_size);
        p += SNAPSHOT_HEADER_LEN;
        st_be64(b + p, sn->vm_state_size);
        st_be64(b + p + 8, sn->disk_size);
        st_be64(b + p + 16, (uint64_t)sn->icount);
        p += QCOW2_SNAPSHOT_EXTRA_KNOWN;
        if (sn->unknown_extra_len) {
            memcpy(b + p, sn->unknown_extra, sn->unknown_extra_len);
            p += sn->unknown_extra_len;
        }
        memcpy(b + p, sn->id, id_len);
        p += id_len;
        memcpy(b + p, sn->name, name_len);
        p += name_len;
    }
    *buf = b;
    *len = total;
    return 0;
}

struct qcow2_snapshot *qcow2_snapshots_copy(const struct qcow2 *s, uint32_t spare)
{
    struct qcow2_snapshot *l = calloc(s->nb_snapshots + spare, sizeof(*l));
    for (uint32_t i = 0; l && i < s->nb_snapshots; i++) {
        l[i] = s->snapshots[i];
        l[i].id = strdup(s->snapshots[i].id);
        l[i].name = strdup(s->snapshots[i].name);
        l[i].unknown_extra = l[i].unknown_extra_len ? malloc(l[i].unknown_extra_len) : NULL;
        if (!l[i].id || !l[i].name || (l[i].unknown_extra_len && !l[i].unknown_extra)) {
            qcow2_snapshot_list_free_internal(l, i + 1);
            return NULL;
        }
        if (l[i].unknown_extra_len) {
            memcpy(l[i].unknown_extra, s->snapshots[i].unknown_extra, l[i].unknown_extra_len);
        }
    }
    return l;
}

/* A deep copy of the current list with room for one more entry. */
static struct qcow2_snapshot *copy_list(const struct qcow2 *s)
{
    return qcow2_snapshots_copy(s, 1);
}

/* By id first, then by name, as QEMU does. */
static int find_snapshot(const struct qcow2 *s, const char *id_or_name)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (!strcmp(s->snapshots[i].id, id_or_name)) {
            return (int)i;
        }
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (!strcmp(s->snapshots[i].name, id_or_name)) {
            return (int)i;
        }
    }
    return -1;
}

static int not_found(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return error_set(err, -ENOENT, "Can't find the snapshot '%s' in '%s'", id_or_name,
                     bd->filename);
}

/* Common start of every snapshot operation: a qcow2 image open for writing. */
static int begin_op(struct blockdev *bd, bool write, struct error *err)
{
    if (!blockdev_is_qcow2(bd)) {
        return error_set(err, -ENOTSUP, "'%s' is not a qcow2 image: no internal snapshots",
                         bd->filename);
    }
    struct qcow2 *s = qcow2_of(bd);
    if (s->snapshots_unreadable) {
        return error_set(err, -EINVAL, "The snapshot table of '%s' is unreadable", bd->filename);
    }
    if (write && bd->read_only) {
        return error_set(err, -EACCES, "'%s' is open read-only", bd->filename);
    }
    return 0;
}

/* Internal snapshots would share data clusters, which a data file's
 * identity mapping cannot: QEMU refuses them all but the listing. */
static int begin_snapshot_op(struct blockdev *bd, bool write, struct error *err)
{
    int ret = begin_op(bd, write, err);
    return ret < 0 ? ret : qcow2_data_file_refuse(qcow2_of(bd), NULL, err);
}

int qcow2_snapshot_list(struct blockdev *bd, struct blockdev_snapshot_info **list, int *count,
                        struct error *err)
{
    int ret = begin_op(bd, false, err);
    if (ret < 0) {
        return ret;
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    struct blockdev_snapshot_info *l = calloc(s->nb_snapshots ? s->nb_snapshots : 1, sizeof(*l));
    for (uint32_t i = 0; l && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        snprintf(l[i].id, sizeof(l[i].id), "%s", sn->id);
        l[i].name = strdup(sn->name);
        if (!l[i].name) {
            blockdev_snapshot_list_free(l, (int)i);
            l = NULL;
            break;
        }
        l[i].vm_state_size = sn->vm_state_size;
        l[i].date_sec = sn->date_sec;
        l[i].date_nsec = sn->date_nsec;
        l[i].vm_clock_nsec = sn->vm_clock_nsec;
        l[i].disk_size = sn->disk_size;
        l[i].icount = sn->icount;
    }
    pthread_mutex_unlock(&s->lock);
    if (!l) {
        return no_memory(err);
    }
    *count = (int)s->nb_snapshots;
    *list = l;
    return 0;
}

/* id = the largest numeric id + 1, as QEMU assigns them. */
static void new_snapshot_id(const struct qcow2 *s, char *out, size_t len)
{
    unsigned long max = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long id = strtoul(s->snapshots[i].id, NULL, 10);
        if (id > max) {
            max = id;
        }
    }
    snprintf(out, len, "%lu", max + 1);
}

/* Starts a snapshot transaction on an image about to be written. */
static int begin_txn(struct qcow2 *s, struct qcow2_txn *t, struct error *err)
{
    int ret = qcow2_prepare_write(s, err);
    return ret < 0 ? ret : qcow2_txn_begin(s, t, err);
}

/* Ends a snapshot transaction: COPIED flags follow the new refcounts, then
 * one header write switches to the new metadata (or nothing changes). */
static int finish_txn(struct qcow2 *s, struct qcow2_txn *t, int ret, struct error *err)
{
    if (ret == 0) {
        int64_t changed = qcow2_txn_fix_copied(s, t, err);
        ret = changed < 0 ? (int)changed : 0;
    }
    if (ret < 0) {
        qcow2_txn_abort(t);
        return ret;
    }
    return qcow2_txn_commit(s, t, err);
}

/* Runs op on the snapshot named id_or_name with the image locked. */
static int on_snapshot(struct blockdev *bd, const char *id_or_name, const char *what,
                       int (*op)(struct qcow2 *s, uint32_t index, struct error *err),
                       struct error *err)
{
    int ret = begin_snapshot_op(bd, true, err);
    if (ret < 0) {
        return ret;
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int i = find_snapshot(s, id_or_name);
    ret = i < 0 ? not_found(bd, id_or_name, err) : op(s, (uint32_t)i, err);
    pthread_mutex_unlock(&s->lock);
    (void)what;     /* callers say what failed, as qemu-img does ("Could not delete snapshot") */
    return ret;
}

/* The new entry for the current state, its L1 copy at l1_offset. */
static void fill_entry(struct qcow2 *s, struct qcow2_snapshot *sn, const char *name,
                       const struct blockdev_snapshot_vm *vm, uint64_t l1_offset)
{
    char id[32];
    new_snapshot_id(s, id, sizeof(id));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    *sn = (struct qcow2_snapshot){
        .l1_table_offset = l1_offset,
        .l1_size = s->l1_size,
        .id = strdup(id),
        .name = strdup(name),
        .date_sec = (uint32_t)now.tv_sec,
        .date_nsec = (uint32_t)now.tv_nsec,
        .vm_clock_nsec = vm ? vm->vm_clock_nsec : 0,
        .vm_state_size = vm ? vm->vm_state_size : 0,
        .disk_size = s->bd.size,
        .icount = vm ? vm->icount : 0,     /* what qemu-img snapshot -c records */
        .extra_data_size = QCOW2_SNAPSHOT_EXTRA_KNOWN,
    };
}

/* A copy of the active L1 table for the snapshot, in new clusters. */
static int64_t copy_active_l1(struct qcow2 *s, struct error *err)
{
    if (s->l1_size == 0) {
        return 0;
    }
    int64_t off = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, (uint64_t)s->l1_size * 8),
                                       err);
    if (off < 0) {
        return off;
    }
    uint64_t *disk = malloc((size_t)s->l1_size * 8);
    if (!disk) {
        return error_set(err, -ENOMEM, "Could not allocate the snapshot's L1 table");
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        disk[i] = cpu_to_be64(s->l1_table[i]);
    }
    int ret = hostfile_pwrite(s->file, (uint64_t)off, disk, (size_t)s->l1_size * 8);
    free(disk);
    return ret < 0 ? error_set_errno(err, ret, "Could not write the snapshot's L1 table") : off;
}

/* QEMU's order: the L1 copy, the refcounts it adds, then the table naming it.
 * The VM state (past the disk) goes to the snapshot alone: the active L1
 * drops it before the table is written, which leaks it at worst. */
static int create_inplace(struct qcow2 *s, const char *name, const struct blockdev_snapshot_vm *vm,
                          struct error *err)
{
    uint64_t vm_l1 = qcow2_size_to_l1(s, s->bd.size);
    uint32_t shared = vm && vm_l1 < s->l1_size ? (uint32_t)vm_l1 : s->l1_size;
    uint32_t n = s->nb_snapshots;
    /* Memory first: nothing may fail for want of it once refcounts rise. */
    struct qcow2_snapshot *list = copy_list(s);
    if (list) {
        fill_entry(s, &list[n], name, vm, 0);
    }
    int ret = list && list[n].id && list[n].name ? 0 : no_memory(err);
    /* The copy before the room check, as QEMU: a refcount that cannot take
     * one more reference leaves the copy leaked, which qemu-img check then
     * reports (iotest 112); no refcount has risen yet. */
    int64_t l1_off = ret < 0 ? ret : copy_active_l1(s, err);
    ret = l1_off < 0 ? (int)l1_off : qcow2_inplace_check_room(s, shared, err);
    if (ret == 0) {
        ret = qcow2_inplace_share_active(s, shared, err);
    }
    if (ret == 0 && shared < s->l1_size) {
        memset(&s->l1_table[shared], 0, (size_t)(s->l1_size - shared) * 8);
        ret = qcow2_inplace_write_l1(s, err);
    }
    if (ret < 0) {
        qcow2_snapshot_list_free_internal(list, n + 1);
        return ret;
    }
    list[n].l1_table_offset = (uint64_t)l1_off;
    return qcow2_inplace_write_snapshots(s, list, n + 1, err);
}

static int create_locked(struct qcow2 *s, const char *name, const struct blockdev_snapshot_vm *vm,
                         struct error *err)
{
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        return error_set(err, -EFBIG, "Too many snapshots (at most %d)", QCOW2_MAX_SNAPSHOTS);
    }
    if (strlen(name) > UINT16_MAX) {
        return error_set(err, -EINVAL, "Snapshot name too long");
    }
    bool batch;
    int ret = qcow2_inplace_begin(s, &batch, err);
    if (ret == 0) {
        ret = create_inplace(s, name, vm, err);
    }
    qcow2_inplace_end(s, batch);
    return ret;
}

int qcow2_snapshot_create(struct blockdev *bd, const char *name, const struct blockdev_snapshot_vm *vm,
                          struct error *err)
{
    int ret = begin_snapshot_op(bd, true, err);
    if (ret < 0) {
        return ret;
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    ret = create_locked(s, name, vm, err);
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        error_prefix(err, "Could not create snapshot '%s'", name);
    }
    return ret;
}

static int apply_locked(struct qcow2 *s, uint32_t index, struct error *err)
{
    const struct qcow2_snapshot *sn = &s->snapshots[index];
    int ret = qcow2_snapshot_check_l1_reported(s, sn, "Failed to load snapshot", err);
    if (ret < 0) {
        return ret;
    }
    uint64_t needed = qcow2_size_to_l1(s, sn->disk_size);
    if (needed > QCOW2_MAX_L1_BYTES / 8 || sn->disk_size > INT64_MAX) {
        return error_set(err, -EFBIG, "The snapshot's disk size %" PRIu64 " is too large",
                         sn->disk_size);
    }
    if (sn->disk_size != s->bd.size && s->version < 3) {
        return error_set(err, -ENOTSUP, "Can't resize a v2 image which has snapshots");
    }
    struct qcow2_txn t;
    ret = begin_txn(s, &t, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t *sn_l1 = NULL;
    ret = qcow2_read_l1(s, sn->l1_table_offset, sn->l1_size, &sn_l1, err);
    if (ret == 0) {
        /* The snapshot's whole L1, VM state included, padded to the disk size. */
        t.l1_size = (uint32_t)(sn->l1_size > needed ? sn->l1_size : needed);
        t.l1 = calloc(t.l1_size ? t.l1_size : 1, 8);
        if (!t.l1) {
            ret = error_set(err, -ENOMEM, "No memory for an L1 table of %" PRIu32 " entries",
                            t.l1_size);
        }
    }
    if (ret == 0) {
        memcpy(t.l1, sn_l1, (size_t)sn->l1_size * 8);
        t.size = sn->disk_size;
        ret = qcow2_txn_ref_l1_tree(s, &t, t.l1, t.l1_size, 1, err);
    }
    free(sn_l1);
    if (ret == 0) {
        ret = qcow2_txn_ref_l1_tree(s, &t, s->l1_table, s->l1_size, -1, err);
    }
    if (ret == 0) {
        ret = qcow2_txn_ref(s, &t, s->l1_table_offset, (uint64_t)s->l1_size * 8, -1, err);
    }
    return finish_txn(s, &t, ret, err);
}

int qcow2_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return on_snapshot(bd, id_or_name, "apply", apply_locked, err);
}

/* QEMU's order: the table without the entry first, then the snapshot's
 * clusters are released (a failure there leaks them), then the active
 * tables get COPIED back where they are no longer shared. */
static int delete_inplace(struct qcow2 *s, uint32_t index, const uint64_t *sn_l1,
                          struct error *err)
{
    const struct qcow2_snapshot *sn = &s->snapshots[index];
    uint64_t l1_offset = sn->l1_table_offset;
    uint32_t l1_size = sn->l1_size;
    struct qcow2_snapshot *list = copy_list(s);
    if (!list) {
        return no_memory(err);
    }
    uint32_t n = s->nb_snapshots;
    free_entry(&list[index]);
    memmove(&list[index], &list[index + 1], (n - index - 1) * sizeof(*list));
    int ret = qcow2_inplace_write_snapshots(s, list, n - 1, err);
    if (ret < 0) {
        return ret;
    }
    struct error local = { 0 };
    ret = qcow2_inplace_release(s, sn_l1, l1_size, l1_offset, &local);
    if (ret < 0) {
        return error_set_errno(err, ret, "Failed to free the cluster and L1 table");
    }
    ret = qcow2_inplace_fix_copied(s, &local);
    if (ret < 0) {
        return error_set_errno(err, ret, "Failed to update snapshot status in disk");
    }
    return 0;
}

static int delete_locked(struct qcow2 *s, uint32_t index, struct error *err)
{
    const struct qcow2_snapshot *sn = &s->snapshots[index];
    uint64_t *sn_l1 = NULL;
    int ret = qcow2_snapshot_check_l1(s, sn, err);
    if (ret == 0) {
        ret = qcow2_read_l1(s, sn->l1_table_offset, sn->l1_size, &sn_l1, err);
    }
    if (ret < 0) {
        return ret;
    }
    bool batch;
    ret = qcow2_inplace_begin(s, &batch, err);
    if (ret == 0) {
        ret = delete_inplace(s, index, sn_l1, err);
    }
    qcow2_inplace_end(s, batch);
    free(sn_l1);
    return ret;
}

int qcow2_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    return on_snapshot(bd, id_or_name, "delete", delete_locked, err);
}

int qcow2_snapshot_rename(struct blockdev *bd, const char *id_or_name, const char *new_name,
                          struct error *err)
{
    int ret = begin_op(bd, true, err);
    if (ret < 0) {
        return ret;
    }
    if (strlen(new_name) > UINT16_MAX) {
        return error_set(err, -EINVAL, "Snapshot name too long");
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int i = find_snapshot(s, id_or_name);
    if (i < 0) {
        ret = not_found(bd, id_or_name, err);
    } else {
        bool batch;
        ret = qcow2_inplace_begin(s, &batch, err);
        if (ret == 0) {
            struct qcow2_snapshot *list = copy_list(s);
            char *renamed = strdup(new_name);
            if (!list || !renamed) {
                qcow2_snapshot_list_free_internal(list, list ? s->nb_snapshots : 0);
                free(renamed);
                ret = no_memory(err);
            } else {
                free(list[i].name);
                list[i].name = renamed;
                ret = qcow2_inplace_write_snapshots(s, list, s->nb_snapshots, err);
            }
        }
        qcow2_inplace_end(s, batch);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Reads [off, off+len) of one cluster mapped by a snapshot's L1 table. */
static int read_snapshot_cluster(struct qcow2 *s, const uint64_t *l1, uint32_t l1_size,
                                 uint64_t off, uint8_t *buf, size_t len, struct error *err)
{
    uint64_t l1_index = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_off = l1_index < l1_size ? l1[l1_index] & QCOW2_L1E_OFFSET_MASK : 0;
    memset(buf, 0, len);
    if (!l2_off) {
        return 0;
    }
    if (l2_off & s->cluster_mask) {
        return error_set(err, -EIO, "Snapshot L2 table offset 0x%" PRIx64 " is unaligned", l2_off);
    }
    uint32_t index = (uint32_t)((off >> s->cluster_bits) & (s->l2_size - 1));
    uint8_t e[16] = { 0 };
    int ret = hostfile_pread(s->file, l2_off + (uint64_t)index * s->l2_entry_size, e,
                             s->l2_entry_size);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not read a snapshot L2 table");
    }
    uint64_t entry, bitmap;
    qcow2_l2_read_entry(s, e, 0, &entry, &bitmap);
    uint32_t in_cluster = (uint32_t)qcow2_offset_in_cluster(s, off);
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        return qcow2_read_compressed(s, entry, qcow2_zcache_generation(s), in_cluster, buf, len,
                                     err);
    }
    uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
    for (size_t done = 0; done < len;) {
        uint32_t pos = in_cluster + (uint32_t)done;
        uint32_t sc = pos >> s->subcluster_bits;
        size_t n = ((uint64_t)(sc + 1) << s->subcluster_bits) - pos;
        n = n < len - done ? n : len - done;
        enum qcow2_sc_type type = qcow2_sc_type(s, entry, bitmap, sc);
        if (type == QCOW2_SC_INVALID || (type == QCOW2_SC_NORMAL && (host & s->cluster_mask))) {
            return error_set(err, -EIO, "Invalid snapshot L2 entry 0x%" PRIx64, entry);
        }
        if (type == QCOW2_SC_NORMAL) {
            ret = hostfile_pread(s->file, host + pos, buf + done, n);
            if (ret < 0) {
                return error_set_errno(err, ret, "Could not read snapshot data");
            }
        }
        done += n;
    }
    return 0;
}

int qcow2_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                void *buf, size_t len, struct error *err)
{
    int ret = begin_op(bd, false, err);
    if (ret < 0) {
        return ret;
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int i = find_snapshot(s, id_or_name);
    uint64_t *l1 = NULL;
    uint32_t l1_size = 0;
    uint64_t base = 0;
    if (i < 0) {
        ret = not_found(bd, id_or_name, err);
    } else {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        l1_size = sn->l1_size;
        base = qcow2_size_to_l1(s, sn->disk_size) << (s->cluster_bits + s->l2_bits);
        uint64_t limit = (uint64_t)(QCOW2_MAX_L1_BYTES / 8) << (s->cluster_bits + s->l2_bits);
        if (pos > limit || len > limit - pos || base > limit - pos - len) {
            ret = error_set(err, -EINVAL, "VM state offset %" PRIu64 " is out of range", pos);
        } else if ((ret = qcow2_snapshot_check_l1(s, sn, err)) == 0) {
            ret = qcow2_read_l1(s, sn->l1_table_offset, sn->l1_size, &l1, err);
        }
    }
    uint8_t *p = buf;
    uint64_t off = base + pos;
    while (ret == 0 && len > 0) {
        size_t n = s->cluster_size - qcow2_offset_in_cluster(s, off);
        n = n < len ? n : len;
        ret = read_snapshot_cluster(s, l1, l1_size, off, p, n, err);
        p += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    free(l1);
    return ret;
}

int qcow2_snapshot_load_tmp(struct blockdev *bd, const char *id_or_name, struct error *err)
{
    if (!bd->read_only) {
        return error_set(err, -EINVAL, "Loading a snapshot temporarily needs a read-only image");
    }
    int ret = begin_snapshot_op(bd, false, err);
    if (ret < 0) {
        return ret;
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int i = find_snapshot(s, id_or_name);
    uint64_t *l1 = NULL;
    if (i < 0) {
        ret = not_found(bd, id_or_name, err);
    } else if ((ret = qcow2_snapshot_check_l1(s, &s->snapshots[i], err)) == 0) {
        ret = qcow2_read_l1(s, s->snapshots[i].l1_table_offset, s->snapshots[i].l1_size, &l1, err);
    }
    if (ret == 0) {
        free(s->l1_table);
        s->l1_table = l1;
        s->l1_size = s->snapshots[i].l1_size;
        bd->size = s->snapshots[i].disk_size;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}
