/* The machine's configuration and its registered devices as stream
 * sections. */
#include "machine/machine_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "util/size.h"

/* 2: which cold-plugged disks the guest ejected (1 had none ejected). */
#define CONFIG_VERSION 2
#define MAX_SMALL_SECTION (64u << 20)

/* ---- configuration ---- */

/* What must be the same on restore: what the guest saw of the machine. */
struct config_image {
    uint32_t cpus;
    uint64_t memory;
    uint32_t ndisks;
    struct { uint8_t transport, read_only, ejected; uint64_t size; } disks[MACHINE_MAX_DISKS];
    uint32_t nrng, nvconsole;
    uint8_t rng[4], vconsole[4];
    uint8_t net;
};

static void config_of(struct machine *m, struct config_image *c)
{
    const struct machine_config *cfg = m->cfg;
    memset(c, 0, sizeof(*c));
    c->cpus = (uint32_t)cfg->cpus;
    c->memory = cfg->memory;
    c->ndisks = (uint32_t)cfg->ndisks;
    for (int i = 0; i < cfg->ndisks; i++) {
        c->disks[i].transport = (uint8_t)cfg->disks[i].transport;
        c->disks[i].read_only = cfg->disks[i].read_only;
        c->disks[i].size = m->disks[i] ? blockdev_size(m->disks[i]) : 0;
        c->disks[i].ejected = m->disk_unplug[i] == DISK_UNPLUGGED;
    }
    c->nrng = (uint32_t)cfg->nrng;
    c->nvconsole = (uint32_t)cfg->nvconsole;
    for (int i = 0; i < cfg->nrng && i < 4; i++) {
        c->rng[i] = (uint8_t)cfg->rng[i];
    }
    for (int i = 0; i < cfg->nvconsole && i < 4; i++) {
        c->vconsole[i] = (uint8_t)cfg->vconsole[i];
    }
    c->net = cfg->net_tap != NULL;
}

static void config_put(struct state_buf *b, const struct config_image *c)
{
    state_put_u32(b, c->cpus);
    state_put_u64(b, c->memory);
    state_put_u32(b, c->ndisks);
    for (uint32_t i = 0; i < c->ndisks; i++) {
        state_put_u8(b, c->disks[i].transport);
        state_put_u8(b, c->disks[i].read_only);
        state_put_u64(b, c->disks[i].size);
    }
    state_put_u32(b, c->nrng);
    state_put_bytes(b, c->rng, c->nrng);
    state_put_u32(b, c->nvconsole);
    state_put_bytes(b, c->vconsole, c->nvconsole);
    state_put_u8(b, c->net);
    for (uint32_t i = 0; i < c->ndisks; i++) {
        state_put_u8(b, c->disks[i].ejected);
    }
}

static int config_get(struct state_buf *b, uint32_t version, struct config_image *c, struct error *err)
{
    memset(c, 0, sizeof(*c));
    c->cpus = state_get_u32(b);
    c->memory = state_get_u64(b);
    c->ndisks = state_get_u32(b);
    if (c->ndisks > MACHINE_MAX_DISKS) {
        return error_set(err, -EINVAL, "VM state configuration has %u disks", c->ndisks);
    }
    for (uint32_t i = 0; i < c->ndisks; i++) {
        c->disks[i].transport = state_get_u8(b);
        c->disks[i].read_only = state_get_u8(b);
        c->disks[i].size = state_get_u64(b);
    }
    c->nrng = state_get_u32(b);
    if (c->nrng > 4) {
        return error_set(err, -EINVAL, "VM state configuration has %u rng devices", c->nrng);
    }
    state_get_bytes(b, c->rng, c->nrng);
    c->nvconsole = state_get_u32(b);
    if (c->nvconsole > 4) {
        return error_set(err, -EINVAL, "VM state configuration has %u console devices", c->nvconsole);
    }
    state_get_bytes(b, c->vconsole, c->nvconsole);
    c->net = state_get_u8(b);
    for (uint32_t i = 0; version >= 2 && i < c->ndisks; i++) {
        c->disks[i].ejected = state_get_u8(b) != 0;
    }
    return state_buf_error(b, err);
}

static const char *transport_name(uint8_t t)
{
    return t == TRANSPORT_MMIO ? "mmio" : "pci";
}

#define MISMATCH(...) error_set(err, -EINVAL, "configuration mismatch: " __VA_ARGS__)

static int config_compare(const struct config_image *snap, const struct config_image *now, struct error *err)
{
    char a[32], b[32];
    if (snap->cpus != now->cpus) {
        return MISMATCH("the snapshot was taken with --cpus %u, this VM has --cpus %u", snap->cpus, now->cpus);
    }
    if (snap->memory != now->memory) {
        size_format(snap->memory, a, sizeof(a));
        size_format(now->memory, b, sizeof(b));
        return MISMATCH("the snapshot was taken with --memory %s, this VM has --memory %s", a, b);
    }
    if (snap->ndisks != now->ndisks) {
        return MISMATCH("the snapshot has %u disk(s), this VM has %u", snap->ndisks, now->ndisks);
    }
    for (uint32_t i = 0; i < snap->ndisks; i++) {
        if (snap->disks[i].transport != now->disks[i].transport) {
            return MISMATCH("disk %u was on transport %s, here it is on %s", i,
                            transport_name(snap->disks[i].transport), transport_name(now->disks[i].transport));
        }
        if (snap->disks[i].read_only != now->disks[i].read_only) {
            return MISMATCH("disk %u was %s, here it is %s", i, snap->disks[i].read_only ? "read-only" : "writable",
                            now->disks[i].read_only ? "read-only" : "writable");
        }
        /* A disk the snapshot's guest ejected goes here too (eject_as_saved);
         * one ejected here cannot come back. */
        if (!snap->disks[i].ejected && now->disks[i].ejected) {
            return MISMATCH("disk %u was there, here it is ejected", i);
        }
        if (snap->disks[i].ejected && now->disks[i].transport != TRANSPORT_PCI) {
            return MISMATCH("disk %u was ejected, here it is on mmio and cannot be", i);
        }
        if (!snap->disks[i].ejected && snap->disks[i].size != now->disks[i].size) {
            return MISMATCH("disk %u had %llu bytes, here it has %llu", i,
                            (unsigned long long)snap->disks[i].size, (unsigned long long)now->disks[i].size);
        }
    }
    if (snap->nrng != now->nrng || memcmp(snap->rng, now->rng, snap->nrng) != 0) {
        return MISMATCH("the snapshot has %u virtio-rng device(s), this VM has %u (or on other transports)",
                        snap->nrng, now->nrng);
    }
    if (snap->nvconsole != now->nvconsole || memcmp(snap->vconsole, now->vconsole, snap->nvconsole) != 0) {
        return MISMATCH("the snapshot has %u virtio-console device(s), this VM has %u (or on other transports)",
                        snap->nvconsole, now->nvconsole);
    }
    if (snap->net != now->net) {
        return MISMATCH("the snapshot %s a network device, this VM %s", snap->net ? "has" : "has no",
                        now->net ? "has one" : "has none");
    }
    return 0;
}

/* ---- the device sections ---- */

/* Devices that began to save themselves after snapshots were first
 * written: such a snapshot has no section for them and they keep their
 * power-on state (fw-cfg: the firmware is done with it by then; the ACPI
 * devices: nothing pending, as before they existed). */
static bool added_later(const struct registered_device *d)
{
    return strcmp(d->name, "fw-cfg") == 0 || strcmp(d->name, "acpi-pm") == 0 || strcmp(d->name, "acpi-pcihp") == 0;
}

static int write_config(struct machine *m, struct vmstate_writer *w, struct error *err)
{
    struct config_image c;
    struct state_buf b;
    config_of(m, &c);
    state_buf_init(&b);
    config_put(&b, &c);
    int ret = state_buf_error(&b, err);
    if (ret == 0) {
        ret = vmstate_write_section(w, "config", CONFIG_VERSION, b.data, b.len, err);
    }
    state_buf_free(&b);
    return ret;
}

static int write_device(struct registered_device *d, struct vmstate_writer *w, struct error *err)
{
    struct state_buf b;
    state_buf_init(&b);
    int ret = registered_device_save(d, &b, err);
    if (ret == 0) {
        ret = vmstate_write_section(w, d->name, d->ops->version, b.data, b.len, err);
    }
    state_buf_free(&b);
    return ret;
}

int machine_state_save(struct machine *m, struct vmstate_writer *w, struct error *err)
{
    /* Requests in flight complete now, before any queue index is saved
     * (a paused machine is quiesced already). */
    bool was_quiesced = m->quiesced;
    machine_quiesce(m);
    int ret = write_config(m, w, err);
    for (int i = 0; ret == 0 && i < m->devices.count; i++) {
        ret = write_device(&m->devices.devices[i], w, err);
    }
    if (!was_quiesced) {
        machine_unquiesce(m);
    }
    return ret;
}

/* ---- load ---- */

void machine_state_image_free(struct machine_state_image *img)
{
    for (int i = 0; i < img->count; i++) {
        free(img->data[i]);
        img->data[i] = NULL;
    }
    img->count = 0;
}

/* A machine made from the same command line still has the cold-plugged
 * disks the snapshot's guest had ejected: once the configurations agree
 * they are marked in eject, and go before the devices load, so the device
 * set is the snapshot's (its state has no section for them). */
static void mark_ejects(const struct config_image *snap, const struct config_image *now, bool *eject)
{
    for (uint32_t i = 0; i < snap->ndisks; i++) {
        eject[i] = snap->disks[i].ejected && !now->disks[i].ejected;
    }
}

/* Checks the "config" section against this machine; eject (NULL: not
 * wanted) gets the disks to drop. */
static int read_config(struct machine *m, struct vmstate_reader *r, bool *eject, struct error *err)
{
    uint8_t *data;
    size_t len;
    uint32_t version;
    int ret = vmstate_read_section(r, "config", CONFIG_VERSION, MAX_SMALL_SECTION, &data, &len, &version, err);
    if (ret < 0) {
        return ret;
    }
    struct config_image snap, now;
    struct state_buf b;
    state_buf_init_reader(&b, data, len);
    ret = config_get(&b, version, &snap, err);
    free(data);
    if (ret < 0) {
        return ret;
    }
    config_of(m, &now);
    if ((ret = config_compare(&snap, &now, err)) < 0) {
        return ret;
    }
    if (eject) {
        mark_ejects(&snap, &now, eject);
    }
    return 0;
}

/* The device of a disk machine_state_eject_saved will drop. */
static bool to_eject(struct machine *m, const struct machine_state_image *img, const struct registered_device *d)
{
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        struct virtio_slot *s = img->eject[i] ? machine_disk_pci_slot(m, i) : NULL;
        if (s && d->dev == (void *)s) {
            return true;
        }
    }
    return false;
}

static bool in_image(const struct machine_state_image *img, const struct registered_device *d)
{
    for (int i = 0; i < img->count; i++) {
        if (img->device[i] == d) {
            return true;
        }
    }
    return false;
}

/* The section whose header r just read, for device d. */
static int read_device(struct vmstate_reader *r, struct registered_device *d, struct machine_state_image *img,
                       struct error *err)
{
    if (in_image(img, d)) {
        return error_set(err, -EINVAL, "VM state has two sections for device '%s'", d->name);
    }
    if (r->section_version > d->ops->version) {
        return error_set(err, -ENOTSUP, "VM state of device '%s' has version %u; this cowvisor reads up to %u",
                         d->name, r->section_version, d->ops->version);
    }
    if (r->section_left > MAX_SMALL_SECTION) {
        return error_set(err, -EINVAL, "VM state section '%s' is too large (%llu bytes)", d->name,
                         (unsigned long long)r->section_left);
    }
    size_t n = (size_t)r->section_left;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret;
    if ((ret = vmstate_section_read(r, buf, n, err)) < 0 || (ret = vmstate_section_finish(r, err)) < 0) {
        free(buf);
        return ret;
    }
    img->device[img->count] = d;
    img->version[img->count] = r->section_version;
    img->data[img->count] = buf;
    img->len[img->count++] = n;
    return 0;
}

/* Every device of this machine must have had its state saved. */
static int check_complete(struct machine *m, const struct machine_state_image *img, struct error *err)
{
    for (int i = 0; i < m->devices.count; i++) {
        struct registered_device *d = &m->devices.devices[i];
        if (!in_image(img, d) && !added_later(d) && !to_eject(m, img, d)) {
            return error_set(err, -EINVAL, "VM state has no section for device '%s' of this machine", d->name);
        }
    }
    return 0;
}

/* Guest RAM follows the devices, as one of these (or the end); post-copy
 * migration streams RAM after the devices in "mig-*" sections. */
static bool is_memory_section(const char *name)
{
    return strcmp(name, "memory") == 0 || strcmp(name, "ram") == 0 || strncmp(name, "mig-", 4) == 0;
}

/* Device sections up to guest RAM, which is given back to the reader for
 * whoever reads on. */
static int read_devices(struct machine *m, struct vmstate_reader *r, struct machine_state_image *img,
                        struct error *err)
{
    for (;;) {
        int ret = vmstate_next_section(r, err);
        if (ret < 0) {
            return ret;
        }
        if (ret == 1 || is_memory_section(r->section)) {
            vmstate_section_unread(r, ret);
            return 0;
        }
        struct registered_device *d = device_registry_find(&m->devices, r->section);
        if (!d) {
            return error_set(err, -EINVAL, "VM state has a section for device '%s', which this machine lacks",
                             r->section);
        }
        if ((ret = read_device(r, d, img, err)) < 0) {
            return ret;
        }
    }
}

int machine_state_save_config(struct machine *m, struct vmstate_writer *w, struct error *err)
{
    return write_config(m, w, err);
}

int machine_state_check_config(struct machine *m, struct vmstate_reader *r, struct error *err)
{
    return read_config(m, r, NULL, err);
}

int machine_state_read(struct machine *m, struct vmstate_reader *r, struct machine_state_image *img,
                       struct error *err)
{
    memset(img, 0, sizeof(*img));
    int ret = read_config(m, r, img->eject, err);
    if (ret == 0) {
        ret = read_devices(m, r, img, err);
    }
    if (ret == 0) {
        ret = check_complete(m, img, err);
    }
    if (ret < 0) {
        machine_state_image_free(img);
    }
    return ret;
}

bool machine_state_changes_devices(const struct machine_state_image *img)
{
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (img->eject[i]) {
            return true;
        }
    }
    return false;
}

int machine_state_eject_saved(struct machine *m, const struct machine_state_image *img, struct error *err)
{
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        int ret = img->eject[i] && m->disk_unplug[i] != DISK_UNPLUGGED ? machine_cold_disk_eject_now(m, i, err) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int machine_state_apply(struct machine *m, const struct machine_state_image *img, struct error *err)
{
    int ret = machine_state_eject_saved(m, img, err);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < img->count; i++) {
        struct state_buf b;
        state_buf_init_reader(&b, img->data[i], img->len[i]);
        ret = registered_device_load(img->device[i], &b, img->version[i], err);
        if (ret < 0) {
            return ret;
        }
    }
    device_registry_post_load(&m->devices);
    /* Every caller has replaced all of RAM too: what was lost is gone. */
    uint64_t gpa;
    guest_memory_fault_take(&m->vm.mem, &gpa);
    m->memory_lost = false;
    return 0;
}
