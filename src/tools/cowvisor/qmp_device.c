/* device_add and device_del for virtio-blk-pci, the PCI hotplug the
 * machine does through ACPI (machine.h), with QEMU 7.2's arguments,
 * errors and DEVICE_DELETED events. */
#include "qmp_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>

#include "machine/machine.h"
#include "virtio/virtio_blk.h"

#define HOTPLUG_DRIVER "virtio-blk-pci"

/* What QMP's schema declares (device_add takes any device property). */
const struct qmp_arg qmp_device_add_args[] = {
    { "driver", JSON_STRING, false }, { "id", JSON_STRING, true }, { "bus", JSON_STRING, true },
    { "drive", JSON_STRING, true },
    /* Ours, as --disk's: each queue served by a thread of its own, polling. */
    { "queue-threads", JSON_TRUE, true }, { "poll-max-ns", JSON_INTEGER, true }, { NULL, 0, false },
};
const struct qmp_arg qmp_device_del_args[] = { { "id", JSON_STRING, false }, { NULL, 0, false } };

/* The properties of ours we take (QEMU's words for others), then their
 * types as for any command. */
static bool check_properties(json_t *args, struct qmp_reply *r)
{
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        if (!qmp_arg_find(qmp_device_add_args, key)) {
            qmp_fail(r, QMP_GENERIC, "Property '%s.%s' not found", HOTPLUG_DRIVER, key);
            return false;
        }
    }
    if (!qmp_check_args(args, qmp_device_add_args, r)) {
        return false;
    }
    const char *bus = json_string_value(json_object_get(args, "bus"));
    if (bus && strcmp(bus, "pci.0") != 0) {
        qmp_fail(r, QMP_GENERIC, "Bus '%s' not found", bus);
        return false;
    }
    return true;
}

/* queue-threads and poll-max-ns (types checked already). */
static bool serving_options(json_t *args, struct machine_blk_options *o, struct qmp_reply *r)
{
    json_t *poll = json_object_get(args, "poll-max-ns");
    o->queue_threads = json_is_true(json_object_get(args, "queue-threads"));
    o->poll_max_ns = VIRTIO_BLK_POLL_MAX_NS_DEFAULT;
    if (poll && !o->queue_threads) {
        qmp_fail(r, QMP_GENERIC, "Property '%s.poll-max-ns' needs queue-threads=true (only queue "
                 "threads poll)", HOTPLUG_DRIVER);
        return false;
    }
    if (poll && (json_integer_value(poll) < 0 || json_integer_value(poll) > 1000000000)) {
        qmp_fail(r, QMP_GENERIC, "Property '%s.poll-max-ns' must be 0 to 1000000000 nanoseconds, "
                 "not %" JSON_INTEGER_FORMAT, HOTPLUG_DRIVER, json_integer_value(poll));
        return false;
    }
    if (poll) {
        o->poll_max_ns = (uint64_t)json_integer_value(poll);
    }
    return true;
}

/* QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
static bool id_wellformed(const char *id)
{
    if (!isalpha((unsigned char)id[0])) {
        return false;
    }
    for (const char *c = id + 1; *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr("-._", *c)) {
            return false;
        }
    }
    return true;
}

void qmp_device_add(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    const char *driver = json_string_value(json_object_get(args, "driver"));
    if (driver && strcmp(driver, HOTPLUG_DRIVER) != 0) {
        qmp_fail(r, QMP_GENERIC, "'%s' is not a valid device model name", driver);
        return;
    }
    struct machine_blk_options serving;
    if (!check_properties(args, r) || !serving_options(args, &serving, r)) {
        return;
    }
    const char *id = json_string_value(json_object_get(args, "id"));
    const char *drive = json_string_value(json_object_get(args, "drive"));
    if (!drive) {
        qmp_fail(r, QMP_GENERIC, "drive property not set");
        return;
    }
    if (id && !id_wellformed(id)) {
        qmp_fail(r, QMP_GENERIC, "Parameter 'id' expects an identifier");
        return;
    }
    /* Without an id it is /machine/peripheral-anon/device[N] (device_del
     * takes that path). */
    struct error err = { 0 };
    if (machine_device_add_virtio_blk_with(s->m, id, drive, &serving, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    }
}

/* QOM path is a device's virtio backend (".../virtio-backend"), which
 * sits on a virtio bus. */
static bool is_virtio_backend(struct qmp_server *s, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || strcmp(slash, "/virtio-backend") != 0) {
        return false;
    }
    struct machine_hotplugged_disk hot[QMP_MAX_HOTPLUGGED];
    int n = machine_hotplugged_disks(s->m, hot, QMP_MAX_HOTPLUGGED);
    for (int k = 0; k < n; k++) {
        if (strlen(hot[k].path) == (size_t)(slash - path) && !strncmp(hot[k].path, path, (size_t)(slash - path))) {
            return true;
        }
    }
    return false;
}

void qmp_device_del(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_device_del_args, r)) {
        return;
    }
    const char *id = json_string_value(json_object_get(args, "id"));
    if (is_virtio_backend(s, id)) {
        qmp_fail(r, QMP_GENERIC, "Bus 'virtio-bus' does not support hotplugging");
        return;
    }
    /* A cold-plugged disk's block job works on the image its eject closes. */
    int disk, used = 0;
    if (sscanf(id, "/machine/peripheral-anon/device[%d]%n", &disk, &used) == 1 && used == (int)strlen(id) &&
        disk < machine_disk_count(s->m) && qmp_disk_has_block_job(s, disk, r)) {
        return;
    }
    struct error err = { 0 };
    int ret = machine_device_del(s->m, id, &err);
    if (ret < 0) {
        qmp_fail(r, ret == -ENODEV ? QMP_DEVICE_NOT_FOUND : QMP_GENERIC, "%s", err.msg);
    }
}

/* As QEMU: the virtio backend inside the proxy goes first, then the
 * device the user added (named only when it has an id). */
void qmp_device_deleted(void *opaque, const char *id, const char *path)
{
    struct qmp_server *s = opaque;
    char backend[MACHINE_QOM_PATH_MAX + 32];
    snprintf(backend, sizeof(backend), "%s/virtio-backend", path);
    qmp_event(s, "DEVICE_DELETED", json_pack("{s:s}", "path", backend));
    qmp_event(s, "DEVICE_DELETED", id ? json_pack("{s:s,s:s}", "device", id, "path", path)
                                       : json_pack("{s:s}", "path", path));
}
