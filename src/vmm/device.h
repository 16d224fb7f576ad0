/* What a machine asks of every device it owns, as one table of operations
 * the device defines beside itself (hw/, virtio/) and the machine's device
 * registry calls: reset, pause (quiesce/resume), state (save/load) and
 * teardown. Any operation may be NULL: the device has nothing to do then.
 * dev is the device's own struct, as it was registered. */
#ifndef VMM_DEVICE_H
#define VMM_DEVICE_H

#include "state/state_buf.h"
#include "util/error.h"

struct device_ops {
    /* Power-on state again (a guest or host reset). */
    int (*reset)(void *dev, struct error *err);
    /* Stop touching guest memory and finish work in flight (the vCPUs are
     * parked): a paused machine can be saved and sees no host input. */
    void (*quiesce)(void *dev);
    void (*resume)(void *dev);
    int (*save)(void *dev, struct state_buf *b, struct error *err);
    int (*load)(void *dev, struct state_buf *b, struct error *err);
    /* Every device is loaded: look at work the guest posted before the save. */
    void (*post_load)(void *dev);
    void (*destroy)(void *dev);
};

#endif
