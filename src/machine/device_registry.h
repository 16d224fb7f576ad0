/* The machine's device registry: every part of the VM that has state or
 * must be reset or paused registers here once, when it is created, with a
 * name, an instance number and its operations (vmm/device.h). Reset,
 * pause, resume, save, load and teardown walk the registry instead of
 * knowing the devices: adding a device is its file plus one registration.
 *
 * Registration order is the order of the walk (save, load, reset) and,
 * reversed, of resume and teardown: register what others depend on first
 * (the KVM VM before its vCPUs, the PCI host before the devices behind it). */
#ifndef MACHINE_DEVICE_REGISTRY_H
#define MACHINE_DEVICE_REGISTRY_H

#include <stdbool.h>

#include "state/vmstate_stream.h"
#include "vmm/device.h"

#define DEVICE_REGISTRY_MAX 128

struct registered_device {
    char name[VMSTATE_NAME_LEN + 1];    /* "uart", "vcpu.0": its state section's name */
    const char *type;                   /* "uart", "vcpu" */
    int instance;                       /* -1: the only one of its type */
    const struct device_ops *ops;
    void *dev;
};

struct device_registry {
    int count;
    struct registered_device devices[DEVICE_REGISTRY_MAX];
};

void device_registry_init(struct device_registry *r);
/* instance < 0: the name is type itself, else "type.instance". */
int device_registry_add(struct device_registry *r, const char *type, int instance, const struct device_ops *ops,
                        void *dev, struct error *err);
/* Unregisters dev (a hot-unplugged device) without destroying it; the
 * others keep their order. False when dev is not registered. */
bool device_registry_remove(struct device_registry *r, void *dev);
/* The device registered under name, or NULL. */
struct registered_device *device_registry_find(struct device_registry *r, const char *name);

/* Stops at the first device that fails, naming it. */
int device_registry_reset(struct device_registry *r, struct error *err);
void device_registry_quiesce(struct device_registry *r);
void device_registry_resume(struct device_registry *r);
void device_registry_post_load(struct device_registry *r);
/* Destroys every device (newest first) and empties the registry. */
void device_registry_destroy(struct device_registry *r);

/* One device's state into b / from b (saved as version); errors name
 * the device. */
int registered_device_save(struct registered_device *d, struct state_buf *b, struct error *err);
int registered_device_load(struct registered_device *d, struct state_buf *b, uint32_t version, struct error *err);

#endif
