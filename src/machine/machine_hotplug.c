/* PCI hotplug of virtio-blk-pci (QMP device_add/device_del) through ACPI,
 * as QEMU's pc machine: device_add puts the device in a free slot of bus 0
 * and raises the hotplug GPE; device_del asks the guest to eject it; the
 * guest's _EJ0 write (a vCPU thread) is served in the main loop, which
 * takes the device out and tells the monitor (DEVICE_DELETED). A device's
 * disk is a named block node (block_nodes.h), taken while it lives. */
#include "machine/machine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_pci.h"

#define HOTPLUG_DRIVER "virtio-blk-pci"

#define PERIPHERAL_ANON "/machine/peripheral-anon/device["

/* The device name designates: its id, or its QOM path (QEMU's device_del
 * takes either). */
static struct hotplugged *find_device(struct machine *m, const char *name)
{
    for (int i = 0; i < MACHINE_MAX_HOTPLUG; i++) {
        struct hotplugged *h = &m->hotplug[i];
        if (h->pci_slot > 0 && ((h->id[0] && !strcmp(h->id, name)) || !strcmp(h->path, name))) {
            return h;
        }
    }
    return NULL;
}

static int find_cold_disk(struct machine *m, const char *path);

/* The cold-plugged disks hold device[0] to device[ndisks-1] until ejected,
 * as query-block shows them. */
static bool path_taken(void *opaque, const char *path)
{
    struct machine *m = opaque;
    return find_cold_disk(m, path) >= 0 || find_device(m, path);
}

static void name_device(struct machine *m, struct hotplugged *h, const char *id)
{
    snprintf(h->id, sizeof(h->id), "%s", id ? id : "");
    machine_device_path(h->path, sizeof(h->path), id, path_taken, m);
}

static struct hotplugged *find_slot(struct machine *m, int pci_slot)
{
    for (int i = 0; i < MACHINE_MAX_HOTPLUG; i++) {
        if (m->hotplug[i].pci_slot == pci_slot) {
            return &m->hotplug[i];
        }
    }
    return NULL;
}

/* ---- a block job on the node: the device stops around its changes ---- */

static void node_drain_begin(void *opaque)
{
    struct hotplugged *h = opaque;
    struct virtio_blk *blk = (struct virtio_blk *)h->slot.dev;
    pthread_mutex_lock(&blk->dev.lock);
    virtio_blk_drain_locked(blk);
}

/* A job may have replaced the node's image: the device goes on with it. */
static void node_drain_end(void *opaque)
{
    struct hotplugged *h = opaque;
    struct virtio_blk *blk = (struct virtio_blk *)h->slot.dev;
    blk->bdev = h->node->node.bd;
    pthread_mutex_unlock(&blk->dev.lock);
}

/* ---- device_add ---- */

/* QEMU's words when another device has the node. */
static int node_in_use(struct block_node *n, const char *path, struct error *err)
{
    return error_set(err, -EBUSY,
                     "Permission conflict on node '%s': permissions 'write' are both required by block device "
                     "'%s/virtio-backend' (uses node '%s' as 'root' child) and unshared by "
                     "block device '%s/virtio-backend' (uses node '%s' as 'root' child).",
                     n->name, n->device, n->name, path, n->name);
}

static int create_device(struct machine *m, struct hotplugged *h, const struct machine_blk_options *o,
                         struct error *err)
{
    struct virtio_blk *b = calloc(1, sizeof(*b));
    struct virtio_pci *p = calloc(1, sizeof(*p));
    struct blockdev *bd = h->node->node.bd;
    if (!b || !p) {
        free(b);
        free(p);
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = virtio_blk_init(b, &m->vm.mem, bd, blockdev_is_read_only(bd), NULL,
                              virtio_blk_default_queues(m->cfg->cpus), err);
    if (ret == 0 && o->queue_threads) {
        ret = virtio_blk_serve_queues_in_threads(b, o->poll_max_ns, err);   /* before virtio-pci takes their eventfds */
    }
    if (ret < 0) {
        virtio_blk_destroy(b);
        free(b);
        free(p);
        return ret;
    }
    /* From here the slot owns both (release destroys them). */
    h->slot.dev = &b->dev;
    h->slot.pci = p;
    return virtio_pci_create(p, &b->dev, &m->vm, &m->loop, err);
}

/* Into the slot, unmapped (memory decode off) until the guest's driver
 * enables it, as a freshly powered slot; then the guest is told. */
static int plug(struct machine *m, struct hotplugged *h, struct error *err)
{
    struct pci_device *d = &h->slot.pci->pci;
    int ret = pci_host_add(&m->pci, d, err);
    if (ret < 0) {
        return ret;
    }
    pci_config_write(d, PCI_COMMAND, 2, 0);
    h->pci_slot = d->slot;
    virtio_device_set_location(h->slot.dev, "@pci:00:%02x.0", d->slot);
    ret = machine_add_device(m, "virtio-hotplug", d->slot, &machine_virtio_slot_ops, &h->slot, err);
    if (ret < 0) {
        pci_host_remove(&m->pci, d);
        h->pci_slot = 0;
        return ret;
    }
    acpi_pcihp_plug(&m->pcihp, d->slot);
    return 0;
}

static void release(struct hotplugged *h)
{
    if (h->slot.dev) {
        machine_virtio_slot_ops.destroy(&h->slot);
    }
    if (h->node) {
        block_node_detach(h->node);
    }
    memset(h, 0, sizeof(*h));
}

int machine_device_add_virtio_blk(struct machine *m, const char *id, const char *drive, struct error *err)
{
    return machine_device_add_virtio_blk_with(m, id, drive, &(struct machine_blk_options){ 0 }, err);
}

int machine_device_add_virtio_blk_with(struct machine *m, const char *id, const char *drive,
                                       const struct machine_blk_options *o, struct error *err)
{
    if (m->replay) {
        /* Its log has no such event, and replay has no virtio-pci. */
        return error_set(err, -ENOTSUP, "device_add is not supported in record/replay mode");
    }
    if (machine_migrating(m)) {
        return error_set(err, -EBUSY, "device_add not allowed while migrating");
    }
    if (id && strlen(id) >= sizeof(m->hotplug[0].id)) {
        /* Kept cut short, it would match no device_del and allow duplicates. */
        return error_set(err, -EINVAL, "Parameter 'id' is longer than %zu characters", sizeof(m->hotplug[0].id) - 1);
    }
    if (id && find_device(m, id)) {
        return error_set(err, -EEXIST, "Duplicate device ID '%s'", id);
    }
    struct block_node *n = machine_block_node_find(m, drive);
    if (!n) {
        return error_set(err, -ENOENT, "Property 'virtio-blk-device.drive' can't find value '%s'", drive);
    }
    struct hotplugged *h = find_slot(m, 0);
    if (!h || pci_host_free_slot(&m->pci) < 0) {
        return error_set(err, -ENOSPC, "PCI: no slot/function available for %s, all in use or reserved",
                         HOTPLUG_DRIVER);
    }
    name_device(m, h, id);
    if (n->device[0]) {
        int ret = node_in_use(n, h->path, err);
        memset(h, 0, sizeof(*h));
        return ret;
    }
    int ret = block_node_attach(machine_block_nodes(m), n, h->path, err);
    if (ret < 0) {
        memset(h, 0, sizeof(*h));
        return ret;
    }
    h->node = n;
    if ((ret = create_device(m, h, o, err)) < 0 || (ret = plug(m, h, err)) < 0) {
        release(h);
        return ret;
    }
    n->drain_begin = node_drain_begin;
    n->drain_end = node_drain_end;
    n->drain_opaque = h;
    return 0;
}

/* ---- cold-plugged disks: ejected as QEMU's pc ejects -drive if=virtio ---- */

struct virtio_slot *machine_disk_pci_slot(struct machine *m, int i)
{
    for (int k = 0; m->disks[i] && k < m->nvirtio; k++) {
        struct virtio_slot *s = &m->virtio[k];
        if (s->pci && s->dev->device_id == VIRTIO_ID_BLOCK && ((struct virtio_blk *)s->dev)->bdev == m->disks[i]) {
            return s;
        }
    }
    return NULL;
}

/* The cold-plugged disk path names (/machine/peripheral-anon/device[i]), or -1. */
static int find_cold_disk(struct machine *m, const char *path)
{
    for (int i = 0; i < m->cfg->ndisks; i++) {
        char name[MACHINE_QOM_PATH_MAX];
        snprintf(name, sizeof(name), PERIPHERAL_ANON "%d]", i);
        if (m->disk_unplug[i] != DISK_UNPLUGGED && !strcmp(name, path)) {
            return i;
        }
    }
    return -1;
}

static int cold_disk_del(struct machine *m, int i, const char *id, struct error *err)
{
    struct virtio_slot *s = machine_disk_pci_slot(m, i);
    if (!s) {
        return error_set(err, -ENOTSUP, "Bus 'virtio-mmio-bus' does not support hotplugging");
    }
    if (m->disk_unplug[i] == DISK_UNPLUG_REQUESTED) {
        return error_set(err, -EALREADY, "Device %s is already in the process of unplug", id);
    }
    m->disk_unplug[i] = DISK_UNPLUG_REQUESTED;
    acpi_pcihp_unplug_request(&m->pcihp, s->pci->pci.slot);
    return 0;
}

/* The guest ejected it: out of the bus and the registry, its image closed;
 * the disk's number stays taken (monitors skip it). A restore removes it
 * quietly (event false): that guest saw it go long ago. */
static void remove_cold_disk(struct machine *m, int i, struct virtio_slot *s, bool event)
{
    int slot = s->pci->pci.slot;
    char path[MACHINE_QOM_PATH_MAX];
    snprintf(path, sizeof(path), PERIPHERAL_ANON "%d]", i);
    virtio_device_quiesce(s->dev);
    pci_host_remove(&m->pci, &s->pci->pci);
    device_registry_remove(&m->devices, s);
    acpi_pcihp_removed(&m->pcihp, slot);
    machine_virtio_slot_ops.destroy(s);
    blockdev_close(m->disks[i]);
    m->disks[i] = NULL;
    m->disk_unplug[i] = DISK_UNPLUGGED;
    if (event && m->device_deleted_hook) {
        m->device_deleted_hook(m->device_deleted_opaque, NULL, path);
    }
}

int machine_cold_disk_eject_now(struct machine *m, int i, struct error *err)
{
    struct virtio_slot *s = machine_disk_pci_slot(m, i);
    if (!s) {
        return error_set(err, -ENODEV, "disk %d is not a virtio-blk-pci device that can be ejected", i);
    }
    remove_cold_disk(m, i, s, false);
    return 0;
}

static bool eject_cold_disk(struct machine *m, int slot)
{
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct virtio_slot *s = machine_disk_pci_slot(m, i);
        if (s && s->pci->pci.slot == slot) {
            remove_cold_disk(m, i, s, true);
            return true;
        }
    }
    return false;
}

/* ---- device_del and the guest's eject ---- */

int machine_device_del(struct machine *m, const char *id, struct error *err)
{
    struct hotplugged *h = find_device(m, id);
    int cold = h ? -1 : find_cold_disk(m, id);
    if (!h && cold < 0) {
        return error_set(err, -ENODEV, "Device '%s' not found", id);
    }
    if (machine_migrating(m)) {
        return error_set(err, -EBUSY, "device_del not allowed while migrating");
    }
    if (cold >= 0) {
        return cold_disk_del(m, cold, id, err);
    }
    if (h->unplug_requested) {
        return error_set(err, -EALREADY, "Device %s is already in the process of unplug", id);
    }
    h->unplug_requested = true;
    acpi_pcihp_unplug_request(&m->pcihp, h->pci_slot);
    return 0;
}

int machine_hotplugged_disks(struct machine *m, struct machine_hotplugged_disk *out, int max)
{
    int n = 0;
    for (int slot = 1; slot < PCI_MAX_SLOTS && n < max; slot++) {
        struct hotplugged *h = find_slot(m, slot);
        if (h) {
            out[n] = (struct machine_hotplugged_disk){ .id = h->id[0] ? h->id : NULL, .path = h->path,
                                                       .node = h->node->name };
            machine_blk_stats((struct virtio_blk *)h->slot.dev, &out[n].stats);
            n++;
        }
    }
    return n;
}

/* The main loop's side of an eject: the device out of the bus, the
 * registry and the node, then the monitor is told. */
static void remove_device(struct machine *m, struct hotplugged *h)
{
    char id[sizeof(h->id)], path[sizeof(h->path)];
    snprintf(id, sizeof(id), "%s", h->id);
    snprintf(path, sizeof(path), "%s", h->path);
    virtio_device_quiesce(h->slot.dev);
    pci_host_remove(&m->pci, &h->slot.pci->pci);
    device_registry_remove(&m->devices, &h->slot);
    acpi_pcihp_removed(&m->pcihp, h->pci_slot);
    release(h);
    if (m->device_deleted_hook) {
        m->device_deleted_hook(m->device_deleted_opaque, id[0] ? id : NULL, path);
    }
}

/* The vCPUs park while devices leave: the bus hands a vCPU the range of a
 * BAR and calls its handler outside the bus lock, so a vCPU could still be
 * in the handlers of a device being freed (ejects are rare; a paused
 * machine's vCPUs are parked already). */
/* Slots whose removal must wait: every one while a migration sends the
 * devices and disks, and a cold disk's while a block job reads its image
 * (the image closes with the device; a hot-plugged device leaves its node
 * open). QEMU's jobs keep a reference on the node instead. */
static uint32_t ejects_to_defer(struct machine *m, uint32_t slots)
{
    if (machine_migrating(m)) {
        return slots;
    }
    uint32_t defer = 0;
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct virtio_slot *s = machine_disk_pci_slot(m, i);
        if (s && __atomic_load_n(&m->disk_jobs[i], __ATOMIC_SEQ_CST) > 0) {
            defer |= slots & (1u << s->pci->pci.slot);
        }
    }
    return defer;
}

void machine_ejects_resume(struct machine *m)
{
    uint32_t slots = __atomic_exchange_n(&m->deferred_ejects, 0, __ATOMIC_SEQ_CST);
    if (slots) {
        __atomic_fetch_or(&m->ejected_slots, slots, __ATOMIC_SEQ_CST);
        uint64_t one = 1;
        if (m->eject_fd >= 0 && write(m->eject_fd, &one, sizeof(one)) < 0) {
            /* The counter is full: a wake-up is pending anyway. */
        }
    }
}

void machine_pci_process_ejects(struct machine *m)
{
    uint32_t slots = __atomic_exchange_n(&m->ejected_slots, 0, __ATOMIC_SEQ_CST);
    uint32_t later = ejects_to_defer(m, slots);
    if (later) {
        __atomic_fetch_or(&m->deferred_ejects, later, __ATOMIC_SEQ_CST);
        slots &= ~later;
        /* A job or the migration may have ended meanwhile, its resume
         * finding nothing deferred yet: try again (what still waits is
         * deferred again). */
        if (ejects_to_defer(m, later) != later) {
            machine_ejects_resume(m);
        }
    }
    bool park = slots && m->run_state == MACHINE_RUNNING;
    if (park) {
        vm_pause(&m->vm);
    }
    for (int slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        struct hotplugged *h = (slots & (1u << slot)) ? find_slot(m, slot) : NULL;
        if (h) {
            remove_device(m, h);
        } else if (slots & (1u << slot)) {
            eject_cold_disk(m, slot);
        }
    }
    if (park) {
        vm_resume(&m->vm);
    }
}

static void ejects_pending(void *opaque, int fd, uint32_t events)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) == sizeof(v)) {
        machine_pci_process_ejects(opaque);
    }
}

/* On the vCPU thread that wrote the eject register. */
static void guest_ejected(void *opaque, int slot)
{
    struct machine *m = opaque;
    uint64_t one = 1;
    __atomic_fetch_or(&m->ejected_slots, 1u << slot, __ATOMIC_SEQ_CST);
    if (write(m->eject_fd, &one, sizeof(one)) < 0) {
        /* The counter is full: a wake-up is pending anyway. */
    }
}

void machine_set_device_deleted_hook(struct machine *m, machine_device_deleted_fn fn, void *opaque)
{
    m->device_deleted_hook = fn;
    m->device_deleted_opaque = opaque;
}

/* ---- the hotplug registers as a registered device ---- */

static void pcihp_destroy(void *dev)
{
    struct machine *m = (struct machine *)((char *)dev - offsetof(struct machine, pcihp));
    if (m->eject_fd >= 0) {
        event_loop_remove(&m->loop, m->eject_fd);
        close(m->eject_fd);
        m->eject_fd = -1;
    }
    acpi_pcihp_device_ops.destroy(dev);
}

/* A reset drops the pending unplug requests with the registers' down
 * bits: device_del may be sent again (it was refused as "already in the
 * process of unplug" for ever, the guest never told). */
static int pcihp_reset(void *dev, struct error *err)
{
    struct machine *m = (struct machine *)((char *)dev - offsetof(struct machine, pcihp));
    for (int i = 0; i < MACHINE_MAX_HOTPLUG; i++) {
        m->hotplug[i].unplug_requested = false;
    }
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (m->disk_unplug[i] == DISK_UNPLUG_REQUESTED) {
            m->disk_unplug[i] = DISK_PLUGGED;
        }
    }
    return acpi_pcihp_device_ops.reset(dev, err);
}

/* The loaded state's ejects are the ones to carry out (the registers'
 * post_load raises them again): those this machine's guest asked for
 * before are forgotten with the rest of its state. */
static int pcihp_load(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    struct machine *m = (struct machine *)((char *)dev - offsetof(struct machine, pcihp));
    __atomic_store_n(&m->deferred_ejects, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&m->ejected_slots, 0, __ATOMIC_SEQ_CST);
    return acpi_pcihp_device_ops.load(dev, b, version, err);
}

static struct device_ops pcihp_ops;

int machine_add_pci_hotplug(struct machine *m, struct error *err)
{
    pcihp_ops = acpi_pcihp_device_ops;
    pcihp_ops.destroy = pcihp_destroy;
    pcihp_ops.reset = pcihp_reset;
    pcihp_ops.load = pcihp_load;
    acpi_pcihp_init(&m->pcihp, &m->acpi_pm, guest_ejected, m);
    m->eject_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->eject_fd < 0) {
        acpi_pcihp_destroy(&m->pcihp);
        return error_set_errno(err, -errno, "eventfd");
    }
    int ret = machine_add_device(m, "acpi-pcihp", -1, &pcihp_ops, &m->pcihp, err);
    if (ret < 0) {
        close(m->eject_fd);
        acpi_pcihp_destroy(&m->pcihp);
        return ret;
    }
    if ((ret = event_loop_add(&m->loop, m->eject_fd, EPOLLIN, ejects_pending, m, err)) < 0) {
        return ret;
    }
    return bus_register(&m->vm.pio, ACPI_PCIHP_PORT, ACPI_PCIHP_LEN, acpi_pcihp_read, acpi_pcihp_write, &m->pcihp,
                        "acpi-pcihp", err);
}
