/* The overlay-only disk mode, the source's side: the overlays are copied
 * while the guest runs, as QEMU's block migration copies disks. Each disk
 * gets an unnamed dirty bitmap (blockdev_tracker) before anything is read,
 * so every write the guest completes from then on is seen. The first pass
 * sends every cluster the overlay defines; each later pass sends what the
 * guest wrote since the one before (mig_disk_tx_harvest); with the guest
 * stopped, the last pass sends what is left and the checksums close the
 * stream (the format: migration_disk.c). */
#include "migration/migration_int.h"

#include <errno.h>
#include <stdlib.h>

#include "block/blockdev.h"
#include "block/blockdev_top_ranges.h"
#include "util/bswap.h"
#include "util/dirty_bitmap.h"

struct disk_tx {
    struct blockdev *bd;
    struct blockdev_tracker *tracker;   /* what the guest writes */
    struct dirty_bitmap *todo;          /* what goes in the next pass */
    struct mig_disk_sum sum;
};

struct mig_disk_tx {
    int n;
    struct disk_tx disk[MACHINE_MAX_DISKS];
    uint8_t *buf;
    struct mig_disk_tx_stats st;
    mig_disk_progress_fn progress;
    void *opaque;
};

/* The clusters the overlay itself defines: the first pass's work. */
static int mark_overlay(struct disk_tx *d, struct error *err)
{
    struct blockdev_top_ranges it;
    uint64_t off, len;
    int ret;
    blockdev_top_ranges_init(&it, d->bd);
    while ((ret = blockdev_top_ranges_next(&it, &off, &len, err)) == 1) {
        dirty_bitmap_set(d->todo, off, len);
    }
    return ret;
}

static int disk_tx_init(struct disk_tx *d, struct blockdev *bd, struct error *err)
{
    uint32_t granularity = blockdev_cluster_size(bd);
    d->bd = bd;
    mig_disk_sum_init(&d->sum);
    int ret = blockdev_tracker_new(bd, granularity, &d->tracker, err);
    if (ret < 0) {
        return ret;
    }
    if (!(d->todo = dirty_bitmap_new(blockdev_size(bd), granularity))) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    /* Tracking began first: a cluster written while this walks is either
     * seen here or marked for the next pass. */
    return mark_overlay(d, err);
}

int mig_disk_tx_new(struct mig_disk_tx **out, struct machine *m, mig_disk_progress_fn progress, void *opaque,
                    struct error *err)
{
    struct mig_disk_tx *tx = calloc(1, sizeof(*tx));
    if (!tx || !(tx->buf = malloc(MIG_DISK_CHUNK_HEADER + MIG_DISK_CHUNK))) {
        free(tx);
        return error_set(err, -ENOMEM, "out of memory");
    }
    tx->progress = progress;
    tx->opaque = opaque;
    int ret = 0;
    for (int i = 0; i < mig_disk_count(m) && ret == 0; i++, tx->n++) {
        ret = disk_tx_init(&tx->disk[i], m->disks[i], err);
        tx->st.total += blockdev_size(m->disks[i]);
    }
    if (ret < 0) {
        mig_disk_tx_free(tx);
        return ret;
    }
    tx->st.remaining = mig_disk_tx_dirty(tx);
    *out = tx;
    return 0;
}

void mig_disk_tx_free(struct mig_disk_tx *tx)
{
    if (!tx) {
        return;
    }
    for (int i = 0; i < tx->n; i++) {
        blockdev_tracker_free(tx->disk[i].tracker);
        dirty_bitmap_free(tx->disk[i].todo);
    }
    free(tx->buf);
    free(tx);
}

uint64_t mig_disk_tx_dirty(const struct mig_disk_tx *tx)
{
    uint64_t n = 0;
    for (int i = 0; i < tx->n; i++) {
        n += dirty_bitmap_count(tx->disk[i].todo);
    }
    return n;
}

uint64_t mig_disk_tx_harvest(struct mig_disk_tx *tx)
{
    for (int i = 0; i < tx->n; i++) {
        blockdev_tracker_take(tx->disk[i].tracker, tx->disk[i].todo);
    }
    tx->st.remaining = mig_disk_tx_dirty(tx);
    return tx->st.remaining;
}

struct mig_disk_tx_stats mig_disk_tx_stats(const struct mig_disk_tx *tx)
{
    return tx->st;
}

/* ---- sending ---- */

static int send_chunk(struct mig_disk_tx *tx, struct vmstate_writer *w, int disk, uint64_t off, uint32_t len,
                      bool zero, struct error *err)
{
    struct disk_tx *d = &tx->disk[disk];
    uint8_t *h = tx->buf, *data = tx->buf + MIG_DISK_CHUNK_HEADER;
    st_le32(h, (uint32_t)disk);
    st_le64(h + 4, off);
    st_le32(h + 12, len);
    h[16] = zero;
    int ret = zero ? 0 : blockdev_pread(d->bd, off, data, len, err);
    if (ret == 0) {
        mig_disk_sum_add(&d->sum, h, zero ? NULL : data, len);
        ret = vmstate_write_section(w, MIG_SECTION_DISK, 1, tx->buf, MIG_DISK_CHUNK_HEADER + (zero ? 0 : len), err);
    }
    if (ret == 0) {
        tx->st.transferred += len;
        tx->st.remaining -= tx->st.remaining < len ? tx->st.remaining : len;
        if (tx->progress) {
            tx->progress(tx->opaque, MIG_DISK_CHUNK_HEADER + (zero ? 0 : len));
        }
    }
    return ret;
}

/* One dirty run, as the guest sees it now: the overlay's data or zero
 * clusters. A range the overlay no longer defines (guest writes never do
 * that: a discard leaves zeros over a base) goes as the data read through
 * the chain, so that the destination reads the same. */
static int send_run(struct mig_disk_tx *tx, struct vmstate_writer *w, int disk, uint64_t off, uint64_t len,
                    struct error *err)
{
    struct disk_tx *d = &tx->disk[disk];
    for (uint64_t end = off + len; off < end;) {
        struct block_status st;
        uint64_t want = end - off < MIG_DISK_CHUNK ? end - off : MIG_DISK_CHUNK;
        int ret = blockdev_block_status(d->bd, off, want, &st, err);
        if (ret < 0) {
            return ret;
        }
        uint64_t n = st.len < want ? st.len : want;
        if ((ret = send_chunk(tx, w, disk, off, (uint32_t)n, (st.flags & BDEV_STATUS_ZERO) != 0, err)) < 0) {
            return ret;
        }
        off += n;
    }
    return 0;
}

int mig_disk_tx_pass(struct mig_disk_tx *tx, struct vmstate_writer *w, struct error *err)
{
    for (int i = 0; i < tx->n; i++) {
        struct disk_tx *d = &tx->disk[i];
        uint64_t size = dirty_bitmap_size(d->todo);
        for (int64_t off = dirty_bitmap_next_dirty(d->todo, 0); off >= 0 && (uint64_t)off < size;
             off = dirty_bitmap_next_dirty(d->todo, (uint64_t)off)) {
            bool dirty;
            uint64_t len = dirty_bitmap_run(d->todo, (uint64_t)off, size - (uint64_t)off, &dirty);
            /* Cleared first: a write meanwhile is in the tracker, not lost. */
            dirty_bitmap_reset(d->todo, (uint64_t)off, len);
            int ret = send_run(tx, w, i, (uint64_t)off, len, err);
            if (ret < 0) {
                return ret;
            }
            off += (int64_t)len;
        }
    }
    return 0;
}

int mig_disk_tx_finish(struct mig_disk_tx *tx, struct vmstate_writer *w, struct error *err)
{
    mig_disk_tx_harvest(tx);
    int ret = mig_disk_tx_pass(tx, w, err);
    if (ret < 0) {
        return ret;
    }
    uint8_t end[MACHINE_MAX_DISKS * 12];
    for (int i = 0; i < tx->n; i++) {
        st_le64(end + i * 12, tx->disk[i].sum.bytes);
        st_le32(end + i * 12 + 8, tx->disk[i].sum.crc);
    }
    return vmstate_write_section(w, MIG_SECTION_DISK_END, 1, end, (size_t)tx->n * 12, err);
}
