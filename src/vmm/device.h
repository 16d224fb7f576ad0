/* What a machine asks of every device it owns, as one table of operations
 * the device defines beside itself (hw/, virtio/) and the machine's device
 * registry calls: reset, pause (quiesce/resume), state (save/load) and
 * teardown. Any operation may be NULL: the device has nothing to do then.
 * dev is the device's own struct, as it was registered.
 *
 * A device's state is its fields in a state_buf, with no framing of its
 * own: the VM-state stream names each device's section and carries its
 * version (one framing, whether the bytes go to a file, a qcow2 VM-state
 * area or a socket). */
#ifndef VMM_DEVICE_H
#define VMM_DEVICE_H

#include "state/state_buf.h"
#include "util/error.h"

struct device_ops {
    /* The layout of the state save writes (bumped when it changes): the
     * stream carries it with the device's name, and load gets the version
     * the state was saved with (never newer than this). */
    uint32_t version;
    /* Power-on state again (a guest or host reset). */
    int (*reset)(void *dev, struct error *err);
    /* Stop touching guest memory and finish work in flight (the vCPUs are
     * parked): a paused machine can be saved and sees no host input.
     * May come again while quiesced (before a save): finish what is new. */
    void (*quiesce)(void *dev);
    void (*resume)(void *dev);
    int (*save)(void *dev, struct state_buf *b, struct error *err);
    int (*load)(void *dev, struct state_buf *b, uint32_t version, struct error *err);
    /* Every device is loaded: look at work the guest posted before the save. */
    void (*post_load)(void *dev);
    void (*destroy)(void *dev);
};

#endif
