/* The machine's configuration, vCPUs and devices as stream sections. */
#include "machine_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "machine_disks.h"
#include "util/size.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_pci.h"

#define CONFIG_VERSION 1
#define PCI_HOST_VERSION 1
#define MAX_SMALL_SECTION (64u << 20)

/* ---- configuration ---- */

/* What must be the same on restore: what the guest saw of the machine. */
struct config_image {
    uint32_t cpus;
    uint64_t memory;
    uint32_t ndisks;
    struct { uint8_t transport, read_only; uint64_t size; } disks[MACHINE_MAX_DISKS];
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
    state_section_begin(b, "config", CONFIG_VERSION);
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
    state_section_end(b);
}

static int config_get(struct state_buf *b, struct config_image *c, struct error *err)
{
    memset(c, 0, sizeof(*c));
    state_section_open(b, "config", CONFIG_VERSION);
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
    state_section_close(b);
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
        if (snap->disks[i].size != now->disks[i].size) {
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

/* ---- the sections ---- */

#define KVM_VM_VERSION 1
#define VCPU_VERSION 1
#define DEVICE_VERSION 1

/* The section names, in stream order, for this machine. */
static int section_names(struct machine *m, char names[][VMSTATE_NAME_LEN + 1])
{
    int n = 0;
    snprintf(names[n++], VMSTATE_NAME_LEN + 1, "kvm-vm");
    for (int i = 0; i < m->vm.ncpus; i++) {
        snprintf(names[n++], VMSTATE_NAME_LEN + 1, "vcpu.%d", i);
    }
    static const char *fixed[] = { "uart", "cmos-rtc", "system-ports", "pci-host" };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        snprintf(names[n++], VMSTATE_NAME_LEN + 1, "%s", fixed[i]);
    }
    for (int i = 0; i < m->nvirtio; i++) {
        snprintf(names[n++], VMSTATE_NAME_LEN + 1, "virtio.%d", i);
    }
    return n;
}

/* Section k's contents, in the state_buf format the devices use. */
static int save_one(struct machine *m, int k, struct state_buf *b, struct error *err)
{
    if (k == 0) {
        return vm_save_kvm_state(&m->vm, b, err);
    }
    k--;
    if (k < m->vm.ncpus) {
        return vcpu_save_state(&m->vm.vcpus[k], b, err);
    }
    k -= m->vm.ncpus;
    switch (k) {
    case 0: uart_save(&m->uart, b); return 0;
    case 1: cmos_rtc_save(&m->rtc, b); return 0;
    case 2: system_ports_save(&m->sys, b); return 0;
    case 3:
        pthread_mutex_lock(&m->pci.lock);
        state_section_begin(b, "pci-host", PCI_HOST_VERSION);
        state_put_u32(b, m->pci.address);
        state_section_end(b);
        pthread_mutex_unlock(&m->pci.lock);
        return 0;
    default:
        k -= 4;
        if (m->mmio[k]) {
            virtio_mmio_save(m->mmio[k], b);
        } else if (m->vpci[k]) {
            virtio_pci_save(m->vpci[k], b);
        }
        return 0;
    }
}

static int load_one(struct machine *m, int k, struct state_buf *b, struct error *err)
{
    if (k == 0) {
        return vm_load_kvm_state(&m->vm, b, err);
    }
    k--;
    if (k < m->vm.ncpus) {
        return vcpu_load_state(&m->vm.vcpus[k], b, err);
    }
    k -= m->vm.ncpus;
    int ret;
    switch (k) {
    case 0: return uart_load(&m->uart, b, err);
    case 1: return cmos_rtc_load(&m->rtc, b, err);
    case 2: return system_ports_load(&m->sys, b, err);
    case 3: {
        state_section_open(b, "pci-host", PCI_HOST_VERSION);
        uint32_t address = state_get_u32(b);
        state_section_close(b);
        if ((ret = state_buf_error(b, err)) == 0) {
            pthread_mutex_lock(&m->pci.lock);
            m->pci.address = address & 0x80fffffcu;
            pthread_mutex_unlock(&m->pci.lock);
        }
        return ret;
    }
    default:
        k -= 4;
        return m->mmio[k] ? virtio_mmio_load(m->mmio[k], b, err)
             : m->vpci[k] ? virtio_pci_load(m->vpci[k], b, err) : 0;
    }
}

/* ---- save ---- */

int machine_state_save(struct machine *m, struct vmstate_writer *w, struct error *err)
{
    struct config_image c;
    struct state_buf b;
    /* Requests in flight complete now, before any queue index is saved:
     * virtio_device_save records the indices before its device's own save
     * (which drains too, too late for them). */
    machine_disks_drain(m);
    config_of(m, &c);
    state_buf_init(&b);
    config_put(&b, &c);
    int ret = state_buf_error(&b, err);
    if (ret == 0) {
        ret = vmstate_write_section(w, "config", CONFIG_VERSION, b.data, b.len, err);
    }
    state_buf_free(&b);
    static char names[MACHINE_STATE_MAX_SECTIONS][VMSTATE_NAME_LEN + 1];
    int n = section_names(m, names);
    for (int k = 0; ret == 0 && k < n; k++) {
        state_buf_init(&b);
        if ((ret = save_one(m, k, &b, err)) == 0 && (ret = state_buf_error(&b, err)) == 0) {
            ret = vmstate_write_section(w, names[k], DEVICE_VERSION, b.data, b.len, err);
        }
        state_buf_free(&b);
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

int machine_state_read(struct machine *m, struct vmstate_reader *r, struct machine_state_image *img,
                       struct error *err)
{
    memset(img, 0, sizeof(*img));
    uint8_t *data;
    size_t len;
    int ret = vmstate_read_section(r, "config", CONFIG_VERSION, MAX_SMALL_SECTION, &data, &len, NULL, err);
    if (ret < 0) {
        return ret;
    }
    struct config_image snap, now;
    struct state_buf b;
    state_buf_init_reader(&b, data, len);
    ret = config_get(&b, &snap, err);
    free(data);
    if (ret < 0) {
        return ret;
    }
    config_of(m, &now);
    if ((ret = config_compare(&snap, &now, err)) < 0) {
        return ret;
    }
    static char names[MACHINE_STATE_MAX_SECTIONS][VMSTATE_NAME_LEN + 1];
    int n = section_names(m, names);
    for (int k = 0; k < n; k++) {
        ret = vmstate_read_section(r, names[k], DEVICE_VERSION, MAX_SMALL_SECTION, &img->data[k], &img->len[k],
                                   NULL, err);
        if (ret < 0) {
            machine_state_image_free(img);
            return ret;
        }
        img->count = k + 1;
    }
    return 0;
}

int machine_state_apply(struct machine *m, const struct machine_state_image *img, struct error *err)
{
    static char names[MACHINE_STATE_MAX_SECTIONS][VMSTATE_NAME_LEN + 1];
    int n = section_names(m, names);
    if (n != img->count) {
        return error_set(err, -EINVAL, "VM state has %d sections for this machine's %d", img->count, n);
    }
    for (int k = 0; k < n; k++) {
        struct state_buf b;
        state_buf_init_reader(&b, img->data[k], img->len[k]);
        int ret = load_one(m, k, &b, err);
        if (ret < 0) {
            error_prefix(err, "loading VM state section '%s'", names[k]);
            return ret;
        }
    }
    /* The guest may have posted requests whose notification the old
     * process never served: look at every ready queue once. */
    for (int i = 0; i < m->nvirtio; i++) {
        for (int q = 0; q < m->virtio[i]->nqueues; q++) {
            virtio_device_handle_notify(m->virtio[i], q);
        }
    }
    return 0;
}
