/* QEMU's QOM path for a device_add'ed device (machine.h), one rule for the
 * machine and the monitor tests' stub machine. */
#include "machine/machine.h"

#include <stdio.h>

void machine_device_path(char *out, size_t size, const char *id, bool (*taken)(void *opaque, const char *path),
                         void *opaque)
{
    if (id) {
        snprintf(out, size, "/machine/peripheral/%s", id);
        return;
    }
    for (int n = 0;; n++) {
        snprintf(out, size, "/machine/peripheral-anon/device[%d]", n);
        if (!taken(opaque, out)) {
            return;
        }
    }
}
