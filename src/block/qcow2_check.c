/* Consistency check and repair (qemu-img check): the references of every
 * cluster are recomputed from the header, the active and snapshot L1/L2
 * tables, the snapshot table and the refcount structure, and compared with
 * the stored refcounts; COPIED flags of the active tables are checked
 * against them. Counts and messages follow QEMU's check so that both tools
 * agree on what is wrong with an image.
 *
 * Repair writes a complete new refcount structure (and copies of active L2
 * tables whose COPIED flags were wrong) in one metadata transaction, so a
 * repair interrupted at any point leaves the image as it was before. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/overlap_check.h"
#include "block/qcow2_int.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/warning.h"

/* References past the end of the file (a truncated image) stay unfixable
 * corruptions, as in QEMU, but a repair must not put new structures where
 * they point. Protected: the ones within this many clusters of the end (the
 * only ones a repair's few new clusters could reach), at most this many. */
#define PAST_EOF_WINDOW 16384
#define PAST_EOF_MAX    4096

struct past_eof_ref {
    uint64_t off, len;
};

struct check {
    struct qcow2 *s;
    struct blockdev_check_result *res;
    uint64_t *ref;          /* computed references per cluster */
    uint64_t *disk;         /* stored refcounts per cluster */
    uint64_t n;
    uint64_t file_len;
    uint64_t counted;           /* compared as QEMU does: clusters references were counted for */
    struct past_eof_ref *past_eof;
    size_t n_past_eof;
    bool rebuild;           /* the refcount structure itself is broken */
    int refcount_corruptions;   /* found before the COPIED flags were looked at */
    bool quiet;
    bool copied_quiet;      /* a repair follows: its COPIED messages come with it */
    bool fix_errors;        /* check -r all: what it will fix is reported as "Repairing" */
    const uint64_t *judge_rc;   /* COPIED flags judged by these refcounts (a repair's), or NULL */
    uint64_t judge_n;
    const char *copied_label;   /* "ERROR" or, for flags a repair fixes, "Repairing" */
    int entries_fixed;      /* L2 entries check -r all rewrote in place as it went */
    uint8_t *l2;
};

static void report(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(struct check *c, const char *fmt, ...)
{
    if (c->quiet) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *line;
    if (vasprintf(&line, fmt, ap) < 0) {
        line = NULL;
    }
    va_end(ap);
    warning_print("%s\n", line ? line : fmt);
    free(line);
}

static int grow(struct check *c, uint64_t need)
{
    if (need <= c->n) {
        return 0;
    }
    uint64_t *ref = realloc(c->ref, need * 8);
    if (!ref) {
        return -ENOMEM;
    }
    memset(ref + c->n, 0, (need - c->n) * 8);
    c->ref = ref;
    c->n = need;
    return 0;
}

/* One more reference to every cluster of [off, off+size). */
static void inc(struct check *c, uint64_t off, uint64_t size)
{
    struct qcow2 *s = c->s;
    if (size == 0) {
        return;
    }
    if (off > QCOW2_MAX_HOST_OFFSET || size > QCOW2_MAX_HOST_OFFSET ||
        (off + size > c->file_len && off + size - c->file_len >= s->cluster_size)) {
        report(c, "ERROR: counting reference for region exceeding the end of the file by one "
               "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64, off, size);
        c->res->corruptions++;
        if (off <= QCOW2_MAX_HOST_OFFSET && size <= QCOW2_MAX_HOST_OFFSET &&
            c->n_past_eof < PAST_EOF_MAX) {
            if (!c->past_eof) {
                c->past_eof = calloc(PAST_EOF_MAX, sizeof(*c->past_eof));
            }
            if (c->past_eof) {
                c->past_eof[c->n_past_eof++] = (struct past_eof_ref){ off, size };
            }
        }
        return;
    }
    uint64_t first = off >> s->cluster_bits, last = (off + size - 1) >> s->cluster_bits;
    if (grow(c, last + 1) < 0) {
        c->res->check_errors++;
        return;
    }
    for (uint64_t k = first; k <= last; k++) {
        if (c->ref[k] == s->refcount_max) {
            report(c, "ERROR: overflow cluster offset=0x%" PRIx64, k << s->cluster_bits);
            report(c, "Use qemu-img amend to increase the refcount entry width or qemu-img "
                   "convert to create a clean copy if the image cannot be opened for writing");
            c->res->corruptions++;
            continue;
        }
        c->ref[k]++;
    }
}

static void inc_ref(void *check, uint64_t off, uint64_t size) { inc(check, off, size); }

/* QEMU's cluster types, which decide what an entry references. */
static bool is_compressed(uint64_t e) { return e & QCOW2_OFLAG_COMPRESSED; }

/* Whether an allocated entry's cluster holds data (some subcluster, or
 * the cluster, is not a zero one). */
static bool holds_data(const struct qcow2 *s, uint64_t e, uint64_t bm)
{
    return s->extended_l2 ? (bm & 0xffffffffULL) != 0 : !(e & QCOW2_OFLAG_ZERO);
}

/* An entry with an unaligned host offset whose cluster holds no data: QEMU
 * names it, and check -r all makes it a zero entry in place (its
 * cluster is then leaked, and freed by the leak repair). Returns whether
 * the entry was fixed. */
static bool fix_unaligned_prealloc(struct check *c, uint64_t l2_off, uint32_t i, uint64_t host,
                                   uint64_t bm, bool active)
{
    struct qcow2 *s = c->s;
    report(c, "%s offset=%" PRIx64 ": Preallocated cluster is not properly aligned; L2 entry "
           "corrupted.", c->fix_errors ? "Repairing" : "ERROR", host);
    if (!c->fix_errors) {
        return false;
    }
    uint64_t entry_off = l2_off + (uint64_t)i * s->l2_entry_size;
    uint8_t *p = c->l2 + (size_t)i * s->l2_entry_size;
    st_be64(p, s->extended_l2 ? 0 : QCOW2_OFLAG_ZERO);
    if (s->extended_l2) {
        st_be64(p + 8, bm & ~0xffffffffULL);    /* no allocated subcluster: zero ones stay */
    }
    int ret = qcow2_pre_write_overlap_check(s, active ? BDEV_OL_ACTIVE_L2 : BDEV_OL_INACTIVE_L2,
                                            entry_off, s->l2_entry_size, NULL);
    if (ret < 0) {
        report(c, "ERROR: Overlap check failed");
    } else if ((ret = hostfile_pwrite(s->file, entry_off, p, s->l2_entry_size)) < 0 ||
               (ret = hostfile_flush(s->file)) < 0) {
        report(c, "ERROR: Failed to overwrite L2 table entry: %s", strerror(-ret));
    }
    if (ret < 0) {
        c->res->check_errors++;
        return false;
    }
    qcow2_cache_discard(&s->l2_cache, l2_off);      /* the cached copy is stale */
    c->entries_fixed++;
    return true;
}

static void check_l2(struct check *c, uint64_t l2_off, bool active)
{
    struct qcow2 *s = c->s;
    if (hostfile_pread(s->file, l2_off, c->l2, s->cluster_size) < 0) {
        report(c, "ERROR: I/O error in check_refcounts_l2");
        c->res->check_errors++;
        return;
    }
    uint64_t next_contiguous = 0;
    for (uint32_t i = 0; i < s->l2_size; i++) {
        uint64_t e, bm;
        qcow2_l2_read_entry(s, c->l2, i, &e, &bm);
        uint64_t host = e & QCOW2_L2E_OFFSET_MASK;
        if (!is_compressed(e) && (e & QCOW2_L2E_STD_RESERVED)) {
            report(c, "ERROR found l2 entry with reserved bits set: %" PRIx64, e);
            c->res->corruptions++;
        }
        if (is_compressed(e)) {
            if (e & QCOW2_OFLAG_COPIED) {
                report(c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                       "compressed clusters", e & s->coffset_mask);
                c->res->corruptions++;
                e &= ~QCOW2_OFLAG_COPIED;
            }
            if (bm) {
                report(c, "ERROR compressed cluster %u with non-zero subcluster allocation "
                       "bitmap, entry=0x%" PRIx64, i, e);
                c->res->corruptions++;
                continue;
            }
            uint64_t c_off;
            uint32_t c_len;
            qcow2_compressed_range(s, e, &c_off, &c_len);
            inc(c, c_off, c_len);
            if (active) {
                c->res->allocated_clusters++;
                c->res->compressed_clusters++;
                c->res->fragmented_clusters++;
            }
        } else if (qcow2_entry_has_host(s, e)) {
            if ((bm >> 32) & bm) {
                report(c, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
                       "subcluster allocation bitmap", host);
                c->res->corruptions++;
            }
            if (host & s->cluster_mask) {
                c->res->corruptions++;
                if (!holds_data(s, e, bm)) {
                    if (fix_unaligned_prealloc(c, l2_off, i, host, bm, active)) {
                        continue;   /* the cluster is referenced no more */
                    }
                } else {
                    report(c, "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; "
                           "L2 entry corrupted.", host);
                }
            }
            if (active) {
                c->res->allocated_clusters++;
                if (next_contiguous && host != next_contiguous) {
                    c->res->fragmented_clusters++;
                }
                next_contiguous = host + s->cluster_size;
            }
            if (!qcow2_has_data_file(s)) {      /* data file clusters are not refcounted */
                inc(c, host, s->cluster_size);
            }
        } else if (s->extended_l2 && (bm & 0xffffffffULL)) {
            report(c, "ERROR: Unallocated cluster has non-zero subcluster allocation map");
            c->res->corruptions++;
        }
    }
}

static void check_l1(struct check *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
    struct qcow2 *s = c->s;
    if (!l1_size) {
        return;
    }
    inc(c, l1_off, (uint64_t)l1_size * 8);
    uint64_t *l1;
    if (qcow2_read_l1(s, l1_off, l1_size, &l1, NULL) < 0) {
        report(c, "ERROR: I/O error in check_refcounts_l1");
        c->res->check_errors++;
        return;
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        if (!l1[i]) {
            continue;
        }
        if (l1[i] & QCOW2_L1E_RESERVED) {
            report(c, "ERROR found L1 entry with reserved bits set: %" PRIx64, l1[i]);
            c->res->corruptions++;
        }
        uint64_t l2_off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        inc(c, l2_off, s->cluster_size);
        if (l2_off & s->cluster_mask) {
            report(c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                   "corrupted", l2_off);
            c->res->corruptions++;
        }
        check_l2(c, l2_off, active);
    }
    free(l1);
}

static void check_refblocks(struct check *c)
{
    struct qcow2 *s = c->s;
    for (uint64_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t off = s->refcount_table[i] & QCOW2_REFT_OFFSET_MASK;
        uint64_t k = off >> s->cluster_bits;
        if (s->refcount_table[i] & ~QCOW2_REFT_OFFSET_MASK) {
            report(c, "ERROR refcount table entry %" PRIu64 " has reserved bits set", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off & s->cluster_mask) {
            report(c, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount table "
                   "entry corrupted", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off && k >= qcow2_size_to_clusters(s, c->file_len)) {
            report(c, "ERROR refcount block %" PRIu64 " is outside image", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (off) {
            inc(c, off, s->cluster_size);
            if (k < c->n && c->ref[k] != 1) {
                report(c, "ERROR refcount block %" PRIu64 " refcount=%" PRIu64, i, c->ref[k]);
                c->res->corruptions++;
                c->rebuild = true;
            }
        }
    }
}

/* Reads the stored refcounts of clusters [0, n); unreadable ones count as errors. */
static void read_disk_refcounts(struct check *c)
{
    struct qcow2 *s = c->s;
    c->disk = calloc(c->n ? c->n : 1, 8);
    uint8_t *block = malloc(s->cluster_size);
    for (uint64_t rt = 0; rt < s->refcount_table_size; rt++) {
        uint64_t base = rt << s->refblock_bits;
        if (base >= c->counted) {
            break;
        }
        uint64_t off = s->refcount_table[rt] & QCOW2_REFT_OFFSET_MASK;
        if (!off) {
            continue;
        }
        uint64_t count = c->counted - base < s->refblock_size ? c->counted - base
                                                               : s->refblock_size;
        if ((off & s->cluster_mask) || hostfile_pread(s->file, off, block, s->cluster_size) < 0) {
            report(c, "Can't get refcount for clusters %" PRIu64 "..%" PRIu64 ": refcount block "
                   "%" PRIu64 " is invalid", base, base + count - 1, rt);
            c->res->check_errors += (int)count;
            continue;
        }
        for (uint64_t i = 0; i < count; i++) {
            c->disk[base + i] = qcow2_refcount_entry_get(s, block, i);
        }
    }
    free(block);
}

static void compare_refcounts(struct check *c, uint64_t *highest)
{
    *highest = 0;
    for (uint64_t i = 0; i < c->counted; i++) {
        uint64_t stored = c->disk[i], refs = c->ref[i];
        if (stored || refs) {
            *highest = i;
        }
        if (stored == refs) {
            continue;
        }
        if (stored == 0) {
            c->rebuild = true;
        }
        report(c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
               stored < refs ? "ERROR" : "Leaked", i, stored, refs);
        if (stored < refs) {
            c->res->corruptions++;
        } else {
            c->res->leaks++;
        }
    }
}

/* Past the counted clusters from the refcount structure itself, as QEMU's
 * COPIED check reads it. */
static uint64_t stored_refcount(struct check *c, uint64_t off)
{
    uint64_t k = off >> c->s->cluster_bits, rc = 0;
    if (c->judge_rc) {
        return k < c->judge_n ? c->judge_rc[k] : 0;
    }
    if (k < c->counted) {
        return c->disk[k];
    }
    return qcow2_get_refcount(c->s, k, &rc, NULL) == 0 ? rc : 0;
}

/* Marks the clusters near EOF that references past it point to. */
static void protect_past_eof(struct check *c)
{
    uint64_t window_end = c->counted + PAST_EOF_WINDOW;
    for (size_t i = 0; i < c->n_past_eof; i++) {
        uint64_t first = c->past_eof[i].off >> c->s->cluster_bits;
        uint64_t last = (c->past_eof[i].off + c->past_eof[i].len - 1) >> c->s->cluster_bits;
        if (first < c->counted) {
            first = c->counted;
        }
        if (last >= window_end) {
            last = window_end - 1;
        }
        if (first > last || grow(c, last + 1) < 0) {
            continue;
        }
        for (uint64_t k = first; k <= last; k++) {
            c->ref[k] = 1;
        }
    }
}

/* A COPIED flag that disagrees with the refcount (QEMU's words). */
static void copied_mismatch(struct check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void copied_mismatch(struct check *c, const char *fmt, ...)
{
    c->res->corruptions++;
    if (c->quiet || c->copied_quiet) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *line;
    if (vasprintf(&line, fmt, ap) < 0) {
        line = NULL;
    }
    va_end(ap);
    warning_print("%s %s\n", c->copied_label ? c->copied_label : "ERROR", line ? line : fmt);
    free(line);
}

static void check_copied(struct check *c)
{
    struct qcow2 *s = c->s;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l1e = s->l1_table[i];
        uint64_t l2_off = l1e & QCOW2_L1E_OFFSET_MASK;
        if (!l2_off) {
            continue;
        }
        uint64_t rc = stored_refcount(c, l2_off);
        if ((rc == 1) != !!(l1e & QCOW2_OFLAG_COPIED)) {
            copied_mismatch(c, "OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%" PRIx64
                            " refcount=%" PRIu64, i, l1e, rc);
        }
        if (hostfile_pread(s->file, l2_off, c->l2, s->cluster_size) < 0) {
            report(c, "ERROR: Could not read L2 table");
            c->res->check_errors++;
            return;
        }
        for (uint32_t j = 0; j < s->l2_size; j++) {
            uint64_t e, bm;
            qcow2_l2_read_entry(s, c->l2, j, &e, &bm);
            uint64_t host = e & QCOW2_L2E_OFFSET_MASK;
            if (!qcow2_entry_has_host(s, e)) {
                continue;
            }
            rc = qcow2_has_data_file(s) ? 1 : stored_refcount(c, host);
            if ((rc == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
                copied_mismatch(c, "OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%"
                                PRIu64, e, rc);
            }
        }
    }
}

/* A table that could not be loaded, in QEMU's words: its place or count
 * (qcow2_validate_table's message), or its content. */
static void report_unreadable_table(struct qcow2 *s)
{
    const char *msg = s->snapshots_err.msg;
    if (s->snapshots_bad_location && !strncmp(msg, "Snapshot table", 14)) {
        warning_print("%s: ERROR snapshot table%s\n", program_invocation_short_name, msg + 14);
        if (s->nb_snapshots_header > QCOW2_MAX_SNAPSHOTS) {
            warning_print("You can force-remove all %u overhanging snapshots with %s check "
                          "-r all\n", s->nb_snapshots_header - QCOW2_MAX_SNAPSHOTS, qcow2_img_tool());
        }
        return;
    }
    warning_print("%s: ERROR failed to read the snapshot table: %s\n",
                  program_invocation_short_name, msg);
}

/* Fails the check (as QEMU's does) when the table cannot be read; check -r
 * all reads it as QEMU's repair does, dropping what is too much. */
static int check_snapshot_table(struct check *c)
{
    struct qcow2 *s = c->s;
    if (s->snapshots_unreadable && c->fix_errors) {
        int ret = qcow2_snapshots_load_repairing(s, &s->snapshots_err);
        if (ret == 0) {
            c->res->corruptions += (int)(s->snapshots_discarded + s->snapshots_extra_cut);
        }
    }
    if (s->snapshots_unreadable) {
        report_unreadable_table(s);
        c->res->check_errors++;
        return s->snapshots_err.code < 0 ? s->snapshots_err.code : -EINVAL;
    }
    for (uint32_t i = 0; s->version >= 3 && i < s->nb_snapshots; i++) {
        if (s->snapshots[i].extra_data_size < 16) {
            report(c, "%s snapshot table entry %u is incomplete",
                   c->fix_errors ? "Repairing" : "ERROR", i);
            c->res->corruptions++;
        }
    }
    return 0;
}

static void free_check(struct check *c)
{
    free(c->ref);
    free(c->disk);
    free(c->l2);
    free(c->past_eof);
}

/* The references of the active and the snapshots' L1 tables. */
static void check_l1_tables(struct check *c)
{
    struct qcow2 *s = c->s;
    check_l1(c, s->l1_table_offset, s->l1_size, true);
    if (qcow2_has_data_file(s) && s->nb_snapshots) {
        report(c, "ERROR %u snapshots in image with data file", s->nb_snapshots);
        c->res->corruptions++;
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->l1_table_offset & s->cluster_mask) {
            report(c, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not cluster "
                   "aligned; snapshot table entry corrupted", sn->id, sn->name, sn->l1_table_offset);
            c->res->corruptions++;
            continue;
        }
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
            report(c, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too large; "
                   "snapshot table entry corrupted", sn->id, sn->name, sn->l1_size);
            c->res->corruptions++;
            continue;
        }
        check_l1(c, sn->l1_table_offset, sn->l1_size, false);
    }
}

/* QEMU counts the references again once it has rebuilt the refcount
 * structure, and so says again what is wrong in the tables: the same
 * messages, from a scratch pass that changes nothing. */
static void report_tables_again(struct check *c)
{
    struct blockdev_check_result scratch_res = { 0 };
    struct check scratch = { .s = c->s, .res = &scratch_res, .file_len = c->file_len };
    scratch.l2 = malloc(c->s->cluster_size);
    if (scratch.l2) {
        check_l1_tables(&scratch);
    }
    free_check(&scratch);
}

/* One read-only pass over the whole image; fills c and c->res. */
/* fixing: a repair follows, which reports the COPIED flags as it judges
 * them (by the repaired refcounts), as QEMU's check does. */
static int run_check(struct qcow2 *s, struct check *c, struct blockdev_check_result *res,
                     bool quiet, unsigned fix)
{
    memset(c, 0, sizeof(*c));
    memset(res, 0, sizeof(*res));
    c->s = s;
    c->res = res;
    c->quiet = quiet;
    c->copied_quiet = fix != 0;
    c->fix_errors = fix & BDEV_FIX_ERRORS;
    int ret = qcow2_refcount_flush(s, NULL);
    int64_t file_len = hostfile_size(s->file);
    if (ret < 0 || file_len < 0) {
        res->check_errors++;
        return ret < 0 ? ret : (int)file_len;
    }
    c->file_len = (uint64_t)file_len;
    c->l2 = malloc(s->cluster_size);
    grow(c, qcow2_size_to_clusters(s, c->file_len));
    res->total_clusters = qcow2_size_to_clusters(s, s->bd.size);

    ret = check_snapshot_table(c);
    if (ret < 0) {
        return ret;
    }
    inc(c, 0, s->cluster_size);
    check_l1_tables(c);
    inc(c, s->snapshots_offset, s->snapshots_size);
    res->corruptions += qcow2_bitmaps_count_refs(s, inc_ref, c);
    inc(c, s->refcount_table_offset, (uint64_t)s->refcount_table_clusters << s->cluster_bits);
    check_refblocks(c);
    c->counted = c->n;
    protect_past_eof(c);

    read_disk_refcounts(c);
    uint64_t highest;
    compare_refcounts(c, &highest);
    c->refcount_corruptions = res->corruptions;
    check_copied(c);
    res->image_end_offset = (highest + 1) << s->cluster_bits;
    return 0;
}

/* The refcount mismatches a repair without rebuild fixes in place: QEMU's
 * second pass names each one it may fix "Repairing". */
static void report_fixable(struct check *c, unsigned fix)
{
    for (uint64_t i = 0; i < c->counted; i++) {
        uint64_t stored = c->disk[i], refs = c->ref[i];
        if (stored == refs) {
            continue;
        }
        bool fixed = (stored > refs && (fix & BDEV_FIX_LEAKS)) ||
                     (stored < refs && (fix & BDEV_FIX_ERRORS));
        report(c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
               fixed ? "Repairing" : stored < refs ? "ERROR" : "Leaked", i, stored, refs);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A rebuild replaces the refcount table and blocks; QEMU then finds the old
 * ones leaked and frees them, naming each cluster. */
static void report_old_refcount_structure(struct check *c)
{
    struct qcow2 *s = c->s;
    size_t n = 0, cap = s->refcount_table_clusters + s->refcount_table_size;
    uint64_t *k = calloc(cap ? cap : 1, sizeof(*k));
    for (uint32_t i = 0; i < s->refcount_table_clusters; i++) {
        k[n++] = (s->refcount_table_offset >> s->cluster_bits) + i;
    }
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t off = s->refcount_table[i] & QCOW2_REFT_OFFSET_MASK;
        if (off && !(off & s->cluster_mask)) {
            k[n++] = off >> s->cluster_bits;
        }
    }
    qsort(k, n, sizeof(*k), cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if ((i == 0 || k[i] != k[i - 1]) && k[i] < c->counted && c->ref[k[i]]) {
            report(c, "Repairing cluster %" PRIu64 " refcount=%" PRIu64 " reference=0", k[i],
                   c->ref[k[i]]);
        }
    }
    free(k);
}

/* What a staged repair (t) fixes, in the words and order of QEMU's check:
 * refcounts first, then the COPIED flags judged by the repaired refcounts. */
static void report_repair(struct check *c, unsigned fix, bool fix_copied,
                          const struct qcow2_txn *t)
{
    if (c->quiet) {
        return;
    }
    if (!c->rebuild) {
        report_fixable(c, fix);
    } else {
        report_tables_again(c);
        if (fix & BDEV_FIX_LEAKS) {
            report_old_refcount_structure(c);
        }
    }
    struct blockdev_check_result counts = *c->res;  /* messages only: the counts stay */
    struct blockdev_check_result *res = c->res;
    c->res = &counts;
    c->judge_rc = t->rc;
    c->judge_n = t->n;
    c->copied_label = fix_copied ? "Repairing" : "ERROR";
    c->copied_quiet = false;
    check_copied(c);
    c->res = res;
}

/* The refcounts repair writes: computed ones where fixing is allowed. */
static int stage_repair(struct qcow2 *s, struct check *c, unsigned fix, struct qcow2_txn *t,
                        int *copied_fixed, bool *changes, struct error *err)
{
    *copied_fixed = 0;
    *changes = false;
    qcow2_txn_init(s, t);
    t->n = c->n + 1;
    t->rc = calloc(t->n, 8);
    t->old_rc = calloc(t->n, 8);
    for (uint64_t i = 0; i < c->n; i++) {
        if (i >= c->counted) {
            /* Past EOF: kept as stored (QEMU repairs nothing there) and
             * never allocated while anything references it. */
            uint64_t stored = stored_refcount(c, i << s->cluster_bits);
            t->rc[i] = stored;
            t->old_rc[i] = stored > c->ref[i] ? stored : c->ref[i];
            continue;
        }
        uint64_t stored = c->disk[i], refs = c->ref[i];
        bool take = (refs < stored && (fix & BDEV_FIX_LEAKS)) ||
                    (refs > stored && (fix & BDEV_FIX_ERRORS));
        t->rc[i] = take ? refs : stored;
        *changes |= t->rc[i] != stored;
        /* Nothing in use by either view may be overwritten before the switch. */
        t->old_rc[i] = stored > refs ? stored : refs;
    }
    int ret = 0;
    if (fix & BDEV_FIX_ERRORS) {
        /* As QEMU's repair: entries cut short are written anew; dropped
         * entries only leave the header's count (txn_init took the new one)
         * and the table's tail to the leak repair. */
        bool incomplete = s->snapshots_extra_cut > 0;
        *changes |= s->snapshots_discarded > 0;
        for (uint32_t i = 0; s->version >= 3 && i < s->nb_snapshots; i++) {
            incomplete |= s->snapshots[i].extra_data_size < 16;
        }
        if (incomplete) {
            /* Rewritten with the full extra data (disk size = current size). */
            struct qcow2_snapshot *l = qcow2_snapshots_copy(s, 0);
            ret = qcow2_txn_set_snapshots(s, t, l, s->nb_snapshots, err);
            *changes = true;
        }
    }
    /* As QEMU: COPIED flags are errors, but with -r leaks they are fixed
     * too when the refcounts they are judged by are sound after the repair. */
    bool fix_copied = (fix & BDEV_FIX_ERRORS) ||
                      ((fix & BDEV_FIX_LEAKS) && !c->rebuild && !c->res->check_errors &&
                       c->refcount_corruptions == 0);
    if (ret == 0) {
        /* Before the COPIED fix moves any L2 table: judged as QEMU judges. */
        report_repair(c, fix, fix_copied, t);
    }
    if (ret == 0 && fix_copied) {
        int64_t changed = qcow2_txn_fix_copied(s, t, err);
        ret = changed < 0 ? (int)changed : 0;
        *copied_fixed = changed > 0 ? (int)changed : 0;
        *changes |= changed > 0;
    }
    return ret;
}

static int mark_clean_and_consistent(struct qcow2 *s, struct error *err)
{
    uint64_t bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
    s->corrupt = false;
    s->dirty_written = false;
    if (!(s->incompatible_features & bits)) {
        return 0;
    }
    s->incompatible_features &= ~bits;
    return qcow2_header_write_incompat(s, err);
}

static int check_locked(struct qcow2 *s, unsigned fix, bool quiet, struct blockdev_check_result *res,
                        struct error *err)
{
    struct check c;
    int ret = run_check(s, &c, res, quiet, s->bd.read_only ? 0 : fix);
    bool broken = res->leaks || res->corruptions;
    if (ret < 0 || !fix || !broken || s->bd.read_only) {
        free_check(&c);
        if (ret < 0) {
            return error_set(err, ret, "%s", strerror(-ret));   /* "Check failed: <why>" */
        }
        if (fix && broken) {
            return error_set(err, -EACCES, "The image is open read-only: it cannot be repaired");
        }
        if (fix && !res->check_errors && !res->corruptions) {
            return mark_clean_and_consistent(s, err);
        }
        return 0;
    }
    if (s->snapshots_unreadable) {
        /* Without the table its snapshots' clusters look leaked: freeing them loses data. */
        free_check(&c);
        return error_set(err, -EIO, "The snapshot table cannot be read; not repairing");
    }
    if (c.rebuild && !(fix & BDEV_FIX_ERRORS)) {
        if (!quiet) {
            warning_print("ERROR need to rebuild refcount structures\n");
        }
        res->check_errors++;
        free_check(&c);
        return error_set(err, -EIO, "The refcount structure is broken: repair needs -r all");
    }
    if (c.rebuild && !quiet) {
        warning_print("Rebuilding refcount structure\n");
    }
    struct blockdev_check_result before = *res;
    int before_refcounts = c.refcount_corruptions;
    struct qcow2_txn t;
    bool was_corrupt = s->corrupt;
    s->corrupt = false;     /* the repair itself must be able to write */
    int copied_fixed;
    bool changes;
    ret = stage_repair(s, &c, fix, &t, &copied_fixed, &changes, err);
    changes |= c.entries_fixed > 0;     /* recounted below, as what was fixed */
    free_check(&c);
    if (ret == 0 && !changes && !c.rebuild) {
        /* Nothing the repair may fix: leave the file as it is, as qemu-img does. */
        qcow2_txn_abort(&t);
        s->corrupt = was_corrupt;
        return 0;
    }
    ret = ret < 0 ? (qcow2_txn_abort(&t), ret) : qcow2_txn_commit(s, &t, err);
    if (ret < 0) {
        s->corrupt = was_corrupt;
        return ret;
    }
    s->snapshots_discarded = 0;     /* the table as read is the one on disk now */
    s->snapshots_extra_cut = 0;
    /* What is left is what the repair could not fix. */
    ret = run_check(s, &c, res, true, 0);
    free_check(&c);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not check the repaired image");
    }
    res->leaks_fixed = before.leaks > res->leaks ? before.leaks - res->leaks : 0;
    /* Counted as QEMU does: COPIED flags are judged by the repaired refcounts. */
    int refcounts_fixed = before_refcounts - c.refcount_corruptions;
    res->corruptions_fixed = (refcounts_fixed > 0 ? refcounts_fixed : 0) + copied_fixed;
    if (!res->check_errors && !res->corruptions) {
        return mark_clean_and_consistent(s, err);
    }
    s->corrupt = was_corrupt;
    return 0;
}

int qcow2_check(struct blockdev *bd, unsigned fix, struct blockdev_check_result *res,
                struct error *err)
{
    if (!blockdev_is_qcow2(bd)) {
        return error_set(err, -ENOTSUP, "'%s' is not a qcow2 image", bd->filename);
    }
    struct qcow2 *s = qcow2_of(bd);
    pthread_mutex_lock(&s->lock);
    int ret = check_locked(s, fix, false, res, err);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_repair_dirty(struct qcow2 *s, struct error *err)
{
    struct blockdev_check_result res;
    pthread_mutex_lock(&s->lock);
    /* Not quiet: like QEMU, the repair says what it found and fixed (the warning sink). */
    int ret = check_locked(s, BDEV_FIX_LEAKS | BDEV_FIX_ERRORS, false, &res, err);
    pthread_mutex_unlock(&s->lock);
    if (ret == 0 && (res.corruptions || res.check_errors)) {
        ret = error_set(err, -EIO, "The image (dirty after a crash with lazy refcounts) could not "
                        "be repaired: %d corruptions remain", res.corruptions);
    }
    return ret;
}
