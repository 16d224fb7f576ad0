/* The top layer's own ranges, from blockdev_block_status: runs the top
 * defines that follow each other (data, zero and compressed clusters
 * alike) come back as one range. */
#include "block/blockdev_top_ranges.h"

#include <errno.h>

#include "block/blockdev.h"

void blockdev_top_ranges_init(struct blockdev_top_ranges *it, struct blockdev *bd)
{
    *it = (struct blockdev_top_ranges){ .bd = bd, .off = 0, .size = blockdev_size(bd) };
}

/* The status of the run at it->off: 1 when the top defines it. */
static int top_run(struct blockdev_top_ranges *it, uint64_t *len, struct error *err)
{
    struct block_status st;
    int ret = blockdev_block_status(it->bd, it->off, it->size - it->off, &st, err);
    if (ret < 0) {
        return ret;
    }
    if (st.len == 0) {
        /* A status that does not advance would loop forever. */
        return error_set(err, -EIO, "%s: no block status at offset %llu", blockdev_filename(it->bd),
                         (unsigned long long)it->off);
    }
    *len = st.len < it->size - it->off ? st.len : it->size - it->off;
    return st.depth == 0 && (st.flags & BDEV_STATUS_ALLOCATED) ? 1 : 0;
}

int blockdev_top_ranges_next(struct blockdev_top_ranges *it, uint64_t *off, uint64_t *len, struct error *err)
{
    uint64_t run = 0;
    int top = 0;
    while (it->off < it->size && (top = top_run(it, &run, err)) == 0) {     /* what the top leaves */
        it->off += run;
    }
    if (top <= 0) {
        return top;
    }
    *off = it->off;
    while (top == 1) {
        it->off += run;
        top = it->off < it->size ? top_run(it, &run, err) : 0;
    }
    if (top < 0) {
        return top;
    }
    *len = it->off - *off;
    if (it->off < it->size) {
        it->off += run;     /* the run just seen is not the top's */
    }
    return 1;
}
