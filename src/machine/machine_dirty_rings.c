/* The virtio rings the VMM writes, marked dirty for whoever tracks guest
 * memory (a migration, a diff snapshot). The VMM's writes to a used ring
 * (completions, the notification flags a polling queue thread sets and
 * clears) go around KVM's dirty log, and only buffers are marked as they
 * are filled (virtqueue.c). Once the devices are quiesced nothing writes a
 * ring, so marking them then puts their last content in the final pass: a
 * ring page sent earlier, say with VIRTQ_USED_F_NO_NOTIFY set, would leave
 * a destination's guest waiting on a device that never hears from it. */
#include "machine/machine_int.h"

#include "virtio/virtio_device.h"
#include "vmm/guest_memory.h"

void machine_mark_rings_dirty(struct machine *m)
{
    for (int i = 0; i < m->nvirtio; i++) {
        struct virtio_device *d = m->virtio[i].dev;    /* NULL: an ejected disk's */
        for (int q = 0; d && q < d->nqueues; q++) {
            if (d->vqs[q].ready) {
                guest_memory_mark_dirty(&m->vm.mem, d->vqs[q].used_addr, 6ull + 8ull * d->vqs[q].size);
            }
        }
    }
}
