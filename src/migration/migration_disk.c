/* The overlay-only disk mode (QMP migrate "blk": true, "inc": true): each
 * disk is a qcow2 overlay on a base image both hosts already have, and the
 * destination has an empty overlay of its own on its copy of the base. At
 * switchover, with the guest stopped, the source sends the clusters its
 * overlay defines (data, or zero clusters), never the base's.
 *
 * Stream sections (after "mig-setup" and after the last RAM pass):
 *   "mig-disk-setup"  u32 disks; per disk u64 virtual size, u32 cluster
 *                     size, u64 base size, u32 crc32 of BASE_SAMPLES reads
 *                     of the base; the destination refuses a disk whose
 *                     base differs or whose overlay is not empty, before
 *                     the source stops
 *   "mig-disk"        u32 disk, u64 offset, u32 length, u8 zero, then the
 *                     data unless zero; a range may come again, newer
 *   "mig-disk-end"    per disk u64 bytes, u32 crc32 of every chunk's
 *                     header and data: the destination reads each chunk
 *                     back after writing it and compares its own sum. */
#include "migration/migration_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "block/blockdev.h"
#include "block/blockdev_top_ranges.h"
#include "util/bswap.h"
#include "util/zero.h"

#define CHUNK MIG_DISK_CHUNK
#define CHUNK_HEADER MIG_DISK_CHUNK_HEADER
#define BASE_SAMPLES 64
#define SAMPLE_LEN 4096u
#define DISK_INFO 24

/* ---- what both sides check ---- */

int mig_disk_count(const struct machine *m)
{
    int n = 0;
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        n += m->disks[i] != NULL;
    }
    return n;
}

static int check_overlay(struct machine *m, int i, struct error *err)
{
    struct blockdev *bd = m->disks[i];
    if (!bd || strcmp(blockdev_format(bd), "qcow2") != 0 || !blockdev_backing(bd)) {
        return error_set(err, -EINVAL, "disk%d%s%s is not a qcow2 overlay on a base image: the overlay-only "
                         "disk mode (migrate blk+inc) needs one on both hosts", i, bd ? " " : "",
                         bd ? blockdev_filename(bd) : "");
    }
    return 0;
}

int mig_disk_check(struct machine *m, struct error *err)
{
    for (int i = 0; i < mig_disk_count(m); i++) {
        int ret = check_overlay(m, i, err);
        if (ret < 0) {
            return ret;
        }
    }
    return mig_disk_count(m) ? 0 : error_set(err, -EINVAL, "migrate blk+inc: the machine has no disk");
}

/* Samples spread over the base: a base that differs between the hosts is
 * caught before anything stops (a sample, not a proof of equality). */
static int base_crc(struct blockdev *base, uint32_t *out, struct error *err)
{
    uint8_t buf[SAMPLE_LEN];
    uint64_t size = blockdev_size(base);
    uLong crc = crc32(0, NULL, 0);
    for (uint64_t k = 0; k < BASE_SAMPLES; k++) {
        uint64_t off = size / BASE_SAMPLES * k / SAMPLE_LEN * SAMPLE_LEN;
        size_t len = size - off < SAMPLE_LEN ? (size_t)(size - off) : SAMPLE_LEN;
        int ret = blockdev_pread(base, off, buf, len, err);
        if (ret < 0) {
            return ret;
        }
        crc = crc32(crc, buf, (uInt)len);
    }
    *out = (uint32_t)crc;
    return 0;
}

static int disk_info(struct machine *m, int i, uint8_t *p, struct error *err)
{
    struct blockdev *bd = m->disks[i], *base = blockdev_backing(bd);
    uint32_t crc = 0;
    int ret = base_crc(base, &crc, err);
    if (ret < 0) {
        return ret;
    }
    st_le64(p, blockdev_size(bd));
    st_le32(p + 8, blockdev_cluster_size(bd));
    st_le64(p + 12, blockdev_size(base));
    st_le32(p + 20, crc);
    return 0;
}

int mig_disk_setup_write(struct vmstate_writer *w, struct machine *m, struct error *err)
{
    int n = mig_disk_count(m), ret = 0;
    uint8_t buf[4 + MACHINE_MAX_DISKS * DISK_INFO];
    st_le32(buf, (uint32_t)n);
    for (int i = 0; i < n && ret == 0; i++) {
        ret = disk_info(m, i, buf + 4 + i * DISK_INFO, err);
    }
    return ret < 0 ? ret : vmstate_write_section(w, MIG_SECTION_DISK_SETUP, 1, buf, 4 + (size_t)n * DISK_INFO, err);
}

/* The destination's overlay must define nothing yet: what it had would
 * show wherever the source's overlay defines nothing. */
static int check_empty(struct blockdev *bd, int i, struct error *err)
{
    struct blockdev_top_ranges it;
    uint64_t off, len;
    blockdev_top_ranges_init(&it, bd);
    int ret = blockdev_top_ranges_next(&it, &off, &len, err);
    if (ret == 1) {
        return error_set(err, -EEXIST, "disk%d: the destination's overlay %s is not empty (offset %llu): "
                         "create a new one on the base for an overlay-only migration", i,
                         blockdev_filename(bd), (unsigned long long)off);
    }
    return ret;
}

static int check_disk(struct machine *m, int i, const uint8_t *theirs, struct error *err)
{
    uint8_t ours[DISK_INFO] = { 0 };
    int ret = check_overlay(m, i, err);
    if (ret == 0) {
        ret = disk_info(m, i, ours, err);
    }
    if (ret < 0) {
        return ret;
    }
    if (ld_le64(theirs) != ld_le64(ours) || ld_le64(theirs + 12) != ld_le64(ours + 12)) {
        return error_set(err, -EINVAL, "disk%d: the source's overlay is %llu bytes on a base of %llu, here %llu on "
                         "%llu", i, (unsigned long long)ld_le64(theirs), (unsigned long long)ld_le64(theirs + 12),
                         (unsigned long long)ld_le64(ours), (unsigned long long)ld_le64(ours + 12));
    }
    if (ld_le32(theirs + 20) != ld_le32(ours + 20)) {
        return error_set(err, -EINVAL, "disk%d: the base image %s differs from the source's (sampled checksums "
                         "%08x here, %08x there)", i, blockdev_filename(blockdev_backing(m->disks[i])),
                         ld_le32(ours + 20), ld_le32(theirs + 20));
    }
    return check_empty(m->disks[i], i, err);
}

int mig_disk_setup_read(struct vmstate_reader *r, struct machine *m, struct error *err)
{
    uint8_t buf[4 + MACHINE_MAX_DISKS * DISK_INFO];
    size_t len = (size_t)r->section_left;
    int ret;
    if (strcmp(r->section, MIG_SECTION_DISK_SETUP) != 0 || len < 4 || len > sizeof(buf)) {
        return error_set(err, -EPROTO, "migration stream: expected '%s', got '%s'", MIG_SECTION_DISK_SETUP,
                         r->section);
    }
    if ((ret = vmstate_section_read(r, buf, len, err)) < 0 || (ret = vmstate_section_finish(r, err)) < 0) {
        return ret;
    }
    uint32_t n = ld_le32(buf);
    if (n != (uint32_t)mig_disk_count(m) || len != 4 + n * DISK_INFO) {
        return error_set(err, -EINVAL, "the source migrates %u disk(s) overlay-only, this machine has %d", n,
                         mig_disk_count(m));
    }
    for (uint32_t i = 0; i < n && ret == 0; i++) {
        ret = check_disk(m, (int)i, buf + 4 + i * DISK_INFO, err);
    }
    return ret;
}

/* ---- the chunks' checksum, on both sides ---- */

void mig_disk_sum_add(struct mig_disk_sum *s, const uint8_t *head, const uint8_t *data, uint32_t len)
{
    uLong crc = crc32(s->crc, head, MIG_DISK_CHUNK_HEADER);
    if (data) {
        crc = crc32(crc, data, len);
    }
    s->crc = (uint32_t)crc;
    s->bytes += len;
}

void mig_disk_sum_init(struct mig_disk_sum *s)
{
    s->bytes = 0;
    s->crc = (uint32_t)crc32(0, NULL, 0);
}

/* ---- the destination ---- */

struct mig_disk_rx {
    struct mig_disk_sum sum[MACHINE_MAX_DISKS];
    uint8_t *buf;
    bool ended;                 /* the sums came and matched */
};

int mig_disk_rx_new(struct mig_disk_rx **out, struct error *err)
{
    struct mig_disk_rx *rx = calloc(1, sizeof(*rx));
    if (!rx || !(rx->buf = malloc(CHUNK_HEADER + CHUNK))) {
        free(rx);
        return error_set(err, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        mig_disk_sum_init(&rx->sum[i]);
    }
    *out = rx;
    return 0;
}

void mig_disk_rx_free(struct mig_disk_rx *rx)
{
    if (rx) {
        free(rx->buf);
        free(rx);
    }
}

/* Writes the chunk, then sums what the overlay now reads back there. */
static int place_chunk(struct blockdev *bd, const uint8_t *h, uint8_t *data, struct mig_disk_sum *sum,
                       struct error *err)
{
    uint64_t off = ld_le64(h + 4);
    uint32_t len = ld_le32(h + 12);
    bool zero = h[16];
    int ret = zero ? blockdev_pwrite_zeroes(bd, off, len, 0, err) : blockdev_pwrite(bd, off, data, len, err);
    if (ret == 0) {
        ret = blockdev_pread(bd, off, data, len, err);
    }
    if (ret < 0) {
        return ret;
    }
    if (zero && !mem_is_zero(data, len)) {
        return error_set(err, -EIO, "disk: zeros written at %llu do not read back as zeros",
                         (unsigned long long)off);
    }
    mig_disk_sum_add(sum, h, zero ? NULL : data, len);
    return 0;
}

int mig_disk_receive(struct vmstate_reader *r, struct machine *m, struct mig_disk_rx *rx, struct error *err)
{
    uint8_t *h = rx->buf;
    uint64_t left = r->section_left;
    int ret = left >= CHUNK_HEADER ? vmstate_section_read(r, h, CHUNK_HEADER, err)
                                   : error_set(err, -EPROTO, "migration stream: '%s' too short", MIG_SECTION_DISK);
    if (ret < 0) {
        return ret;
    }
    uint32_t disk = ld_le32(h), len = ld_le32(h + 12);
    uint64_t off = ld_le64(h + 4);
    struct blockdev *bd = disk < MACHINE_MAX_DISKS ? m->disks[disk] : NULL;
    if (rx->ended) {
        return error_set(err, -EPROTO, "migration stream: '%s' after '%s'", MIG_SECTION_DISK, MIG_SECTION_DISK_END);
    }
    if (!bd || len == 0 || len > CHUNK || off > blockdev_size(bd) || len > blockdev_size(bd) - off ||
        h[16] > 1 || left - CHUNK_HEADER != (h[16] ? 0 : len)) {
        return error_set(err, -EPROTO, "migration stream: malformed '%s' (disk %u, %u bytes at %llu)",
                         MIG_SECTION_DISK, disk, len, (unsigned long long)off);
    }
    if ((!h[16] && (ret = vmstate_section_read(r, h + CHUNK_HEADER, len, err)) < 0) ||
        (ret = vmstate_section_finish(r, err)) < 0) {
        return ret;
    }
    ret = place_chunk(bd, h, h + CHUNK_HEADER, &rx->sum[disk], err);
    if (ret < 0) {
        error_prefix(err, "disk%u", disk);
    }
    return ret;
}

int mig_disk_end_read(struct vmstate_reader *r, struct machine *m, struct mig_disk_rx *rx, struct error *err)
{
    uint8_t end[MACHINE_MAX_DISKS * 12];
    int n = mig_disk_count(m), ret;
    if (r->section_left != (uint64_t)n * 12) {
        return error_set(err, -EPROTO, "migration stream: malformed '%s'", MIG_SECTION_DISK_END);
    }
    if ((ret = vmstate_section_read(r, end, (size_t)n * 12, err)) < 0 || (ret = vmstate_section_finish(r, err)) < 0) {
        return ret;
    }
    for (int i = 0; i < n; i++) {
        if (ld_le64(end + i * 12) != rx->sum[i].bytes || ld_le32(end + i * 12 + 8) != rx->sum[i].crc) {
            return error_set(err, -EIO, "disk%d: the overlay's clusters do not match the source's (%llu bytes, "
                             "checksum %08x here; %llu, %08x there)", i, (unsigned long long)rx->sum[i].bytes,
                             rx->sum[i].crc, (unsigned long long)ld_le64(end + i * 12),
                             ld_le32(end + i * 12 + 8));
        }
    }
    rx->ended = true;
    return 0;
}

bool mig_disk_rx_complete(const struct mig_disk_rx *rx)
{
    return rx->ended;
}
