#include "machine/device_registry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void device_registry_init(struct device_registry *r)
{
    r->count = 0;
}

int device_registry_add(struct device_registry *r, const char *type, int instance, const struct device_ops *ops,
                        void *dev, struct error *err)
{
    if (r->count == DEVICE_REGISTRY_MAX) {
        return error_set(err, -E2BIG, "too many devices (at most %d)", DEVICE_REGISTRY_MAX);
    }
    struct registered_device *d = &r->devices[r->count];
    int n = instance < 0 ? snprintf(d->name, sizeof(d->name), "%s", type)
                         : snprintf(d->name, sizeof(d->name), "%s.%d", type, instance);
    if (n < 0 || (size_t)n >= sizeof(d->name)) {
        return error_set(err, -ENAMETOOLONG, "device name '%s' is too long", type);
    }
    if (device_registry_find(r, d->name)) {
        return error_set(err, -EEXIST, "device '%s' is registered twice", d->name);
    }
    d->type = type;
    d->instance = instance;
    d->ops = ops;
    d->dev = dev;
    r->count++;
    return 0;
}

bool device_registry_remove(struct device_registry *r, void *dev)
{
    for (int i = 0; i < r->count; i++) {
        if (r->devices[i].dev == dev) {
            memmove(&r->devices[i], &r->devices[i + 1], sizeof(r->devices[0]) * (size_t)(r->count - i - 1));
            r->count--;
            return true;
        }
    }
    return false;
}

struct registered_device *device_registry_find(struct device_registry *r, const char *name)
{
    for (int i = 0; i < r->count; i++) {
        if (strcmp(r->devices[i].name, name) == 0) {
            return &r->devices[i];
        }
    }
    return NULL;
}

int device_registry_reset(struct device_registry *r, struct error *err)
{
    for (int i = 0; i < r->count; i++) {
        struct registered_device *d = &r->devices[i];
        int ret = d->ops->reset ? d->ops->reset(d->dev, err) : 0;
        if (ret < 0) {
            error_prefix(err, "resetting device '%s'", d->name);
            return ret;
        }
    }
    return 0;
}

void device_registry_quiesce(struct device_registry *r)
{
    for (int i = 0; i < r->count; i++) {
        if (r->devices[i].ops->quiesce) {
            r->devices[i].ops->quiesce(r->devices[i].dev);
        }
    }
}

void device_registry_resume(struct device_registry *r)
{
    for (int i = r->count - 1; i >= 0; i--) {
        if (r->devices[i].ops->resume) {
            r->devices[i].ops->resume(r->devices[i].dev);
        }
    }
}

void device_registry_post_load(struct device_registry *r)
{
    for (int i = 0; i < r->count; i++) {
        if (r->devices[i].ops->post_load) {
            r->devices[i].ops->post_load(r->devices[i].dev);
        }
    }
}

void device_registry_destroy(struct device_registry *r)
{
    for (int i = r->count - 1; i >= 0; i--) {
        if (r->devices[i].ops->destroy) {
            r->devices[i].ops->destroy(r->devices[i].dev);
        }
    }
    r->count = 0;
}

int registered_device_save(struct registered_device *d, struct state_buf *b, struct error *err)
{
    int ret = d->ops->save ? d->ops->save(d->dev, b, err) : 0;
    if (ret < 0) {
        error_prefix(err, "saving device '%s'", d->name);
    }
    return ret;
}

int registered_device_load(struct registered_device *d, struct state_buf *b, uint32_t version, struct error *err)
{
    int ret = 0;
    if (version > d->ops->version) {
        ret = error_set(err, -ENOTSUP, "its state has version %u; this cowvisor reads up to %u", version,
                        d->ops->version);
    } else if (d->ops->load) {
        ret = d->ops->load(d->dev, b, version, err);
    }
    if (ret < 0) {
        error_prefix(err, "loading device '%s'", d->name);
    }
    return ret;
}
