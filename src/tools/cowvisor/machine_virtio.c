#include "machine_virtio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "util/log.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_rng.h"

/* Puts a device on the transport the user chose. */
static int attach(struct machine *m, struct virtio_device *d, enum transport t, struct error *err)
{
    int i = m->nvirtio;
    if (i == MACHINE_MAX_VIRTIO) {
        return error_set(err, -E2BIG, "at most %d virtio devices", MACHINE_MAX_VIRTIO);
    }
    m->virtio[i] = d;
    m->nvirtio++;
    if (t == TRANSPORT_MMIO) {
        int n = m->nmmio;
        struct virtio_mmio *mm = calloc(1, sizeof(*mm));
        if (!mm) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        m->mmio[i] = mm;
        m->nmmio++;
        return virtio_mmio_create(mm, d, &m->vm, &m->loop, VIRTIO_MMIO_BASE + (uint64_t)n * VIRTIO_MMIO_SIZE,
                                  vm_irq_line(&m->vm, VIRTIO_MMIO_FIRST_GSI + (unsigned)n), err);
    }
    struct virtio_pci *p = calloc(1, sizeof(*p));
    if (!p) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    m->vpci[i] = p;
    int ret = virtio_pci_create(p, d, &m->vm, &m->loop, err);
    if (ret == 0) {
        ret = pci_host_add(&m->pci, &p->pci, err);
    }
    if (ret == 0) {
        virtio_device_set_location(d, "@pci:00:%02x.0", p->pci.slot);
    }
    return ret;
}

static int add_disk(struct machine *m, int i, struct error *err)
{
    const struct disk_config *dc = &m->cfg->disks[i];
    struct blockdev_open_opts opts = { .format = dc->format, .flags = dc->read_only ? BDEV_READ_ONLY : 0 };
    int ret = blockdev_open(&m->disks[i], dc->file, &opts, err);
    if (ret < 0) {
        error_prefix(err, "--disk '%s'", dc->file);
        return ret;
    }
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (!b) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    if ((ret = virtio_blk_init(b, &m->vm.mem, m->disks[i], dc->read_only, dc->serial, err)) < 0) {
        virtio_blk_destroy(b);
        free(b);
        return ret;
    }
    return attach(m, &b->dev, dc->transport, err);
}

int machine_add_virtio(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    int ret;
    for (int i = 0; i < cfg->ndisks; i++) {
        if ((ret = add_disk(m, i, err)) < 0) {
            return ret;
        }
    }
    for (int i = 0; i < cfg->nrng; i++) {
        struct virtio_rng *r = calloc(1, sizeof(*r));
        if (!r) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        if ((ret = virtio_rng_init(r, &m->vm.mem, err)) < 0 || (ret = attach(m, &r->dev, cfg->rng[i], err)) < 0) {
            return ret;
        }
    }
    for (int i = 0; i < cfg->nvconsole; i++) {
        struct virtio_console *c = calloc(1, sizeof(*c));
        if (!c) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        if ((ret = virtio_console_init(c, &m->vm.mem, m->console_out, err)) < 0 ||
            (ret = attach(m, &c->dev, cfg->vconsole[i], err)) < 0) {
            return ret;
        }
    }
    if (cfg->net_tap) {
        struct virtio_net *n = calloc(1, sizeof(*n));
        if (!n) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        if ((ret = virtio_net_init(n, &m->vm.mem, &m->loop, cfg->net_tap, cfg->net_mac, err)) < 0) {
            virtio_net_destroy(n);
            free(n);
            return ret;
        }
        return attach(m, &n->dev, cfg->net_transport, err);
    }
    return 0;
}

void machine_reset_virtio(struct machine *m)
{
    for (int i = 0; i < m->nvirtio; i++) {
        pthread_mutex_lock(&m->virtio[i]->lock);
        virtio_device_reset(m->virtio[i]);
        pthread_mutex_unlock(&m->virtio[i]->lock);
        if (m->mmio[i]) {
            m->mmio[i]->interrupt_status = 0;
            m->mmio[i]->queue_sel = 0;
        }
        if (m->vpci[i]) {
            virtio_pci_reset(m->vpci[i]);
        }
    }
}

static void destroy_device(struct virtio_device *d)
{
    switch (d->device_id) {
    case VIRTIO_ID_BLOCK: virtio_blk_destroy((struct virtio_blk *)d); break;
    case VIRTIO_ID_RNG: virtio_rng_destroy((struct virtio_rng *)d); break;
    case VIRTIO_ID_CONSOLE: virtio_console_destroy((struct virtio_console *)d); break;
    case VIRTIO_ID_NET: virtio_net_destroy((struct virtio_net *)d); break;
    default: break;
    }
    free(d);
}

void machine_destroy_virtio(struct machine *m)
{
    for (int i = 0; i < m->nvirtio; i++) {
        if (m->mmio[i]) {
            virtio_mmio_destroy(m->mmio[i]);
            free(m->mmio[i]);
        }
        if (m->vpci[i]) {
            virtio_pci_destroy(m->vpci[i]);
            free(m->vpci[i]);
        }
        destroy_device(m->virtio[i]);
    }
    m->nvirtio = m->nmmio = 0;
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        if (m->disks[i]) {
            blockdev_close(m->disks[i]);
            m->disks[i] = NULL;
        }
    }
}

char *machine_kernel_cmdline(struct machine *m)
{
    const char *append = m->cfg->append ? m->cfg->append : "";
    size_t cap = strlen(append) + 64 * (size_t)(m->nmmio + 1);
    char *s = malloc(cap);
    if (!s) {
        return NULL;
    }
    size_t n = (size_t)snprintf(s, cap, "%s", append);
    for (int i = 0; i < m->nmmio; i++) {
        n += (size_t)snprintf(s + n, cap - n, "%svirtio_mmio.device=4K@0x%llx:%u", n ? " " : "",
                              (unsigned long long)(VIRTIO_MMIO_BASE + (uint64_t)i * VIRTIO_MMIO_SIZE),
                              VIRTIO_MMIO_FIRST_GSI + i);
    }
    return s;
}
