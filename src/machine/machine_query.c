/* What monitors read about a running machine besides its run state:
 * per-disk request counters and the PCI functions the guest sees. */
#include "machine/machine_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "virtio/virtio_blk.h"

static struct virtio_blk *disk_device(struct machine *m, int i)
{
    for (int k = 0; k < m->nvirtio; k++) {
        struct virtio_device *d = m->virtio[k].dev;
        if (d && d->device_id == VIRTIO_ID_BLOCK && ((struct virtio_blk *)d)->bdev == m->disks[i]) {
            return (struct virtio_blk *)d;
        }
    }
    return NULL;
}

int machine_disk_stats(struct machine *m, int i, struct machine_disk_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->idle_ns = -1;
    if (i < 0 || i >= m->cfg->ndisks) {
        return -ENOENT;
    }
    struct virtio_blk *b = disk_device(m, i);
    if (!b) {
        return 0;   /* not attached (yet): nothing was asked */
    }
    struct virtio_blk_stats st;
    virtio_blk_get_stats(b, &st);
    *out = (struct machine_disk_stats){
        st.rd_bytes, st.wr_bytes, st.rd_ops, st.wr_ops, st.flush_ops, st.unmap_ops,
        st.failed_rd_ops, st.failed_wr_ops, st.failed_flush_ops, st.failed_unmap_ops,
        st.rd_total_ns, st.wr_total_ns, st.flush_total_ns, st.unmap_total_ns, -1,
    };
    if (st.last_ns) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        out->idle_ns = (int64_t)((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec - st.last_ns);
    }
    return 0;
}

int machine_pci_list(struct machine *m, struct machine_pci_function *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&m->pci.lock);
    for (int slot = 0; slot < PCI_MAX_SLOTS && n < max; slot++) {
        const struct pci_device *d = m->pci.slots[slot];
        if (d) {
            out[n].slot = slot;
            memcpy(out[n].config, d->config, sizeof(out[n].config));
            memcpy(out[n].bar_size, d->bar_size, sizeof(out[n].bar_size));
            n++;
        }
    }
    pthread_mutex_unlock(&m->pci.lock);
    return n;
}
