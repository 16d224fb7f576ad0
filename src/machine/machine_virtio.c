/* The machine's virtio devices (disks, console, rng, net) on the
 * transports the configuration asks for, each registered as "virtio.N":
 * the device with its transport, saved and reset together. */
#include "machine/machine_int.h"

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

/* ---- the registered device: a virtio device on its transport ---- */

static int slot_reset(void *dev, struct error *err)
{
    struct virtio_slot *s = dev;
    pthread_mutex_lock(&s->dev->lock);
    virtio_device_reset(s->dev);
    pthread_mutex_unlock(&s->dev->lock);
    if (s->mmio) {
        virtio_mmio_reset(s->mmio);
    } else {
        virtio_pci_reset(s->pci);
    }
    return 0;
}

static void slot_quiesce(void *dev)
{
    virtio_device_quiesce(((struct virtio_slot *)dev)->dev);
}

static void slot_resume(void *dev)
{
    virtio_device_resume(((struct virtio_slot *)dev)->dev);
}

static int slot_save(void *dev, struct state_buf *b, struct error *err)
{
    struct virtio_slot *s = dev;
    if (s->mmio) {
        virtio_mmio_save(s->mmio, b);
    } else {
        virtio_pci_save(s->pci, b);
    }
    return state_buf_error(b, err);
}

static int slot_load(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    struct virtio_slot *s = dev;
    return s->mmio ? virtio_mmio_load(s->mmio, b, err) : virtio_pci_load(s->pci, b, err);
}

/* The guest may have posted requests whose notification the old process
 * never served: look at every ready queue once. */
static void slot_post_load(void *dev)
{
    virtio_device_kick_queues(((struct virtio_slot *)dev)->dev);
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

static void slot_destroy(void *dev)
{
    struct virtio_slot *s = dev;
    if (s->dev) {
        /* Nothing may complete onto the transport freed below: a queue
         * thread or worker could be mid-request at shutdown. */
        virtio_device_quiesce(s->dev);
    }
    if (s->mmio) {
        virtio_mmio_destroy(s->mmio);
        free(s->mmio);
    }
    if (s->pci) {
        virtio_pci_destroy(s->pci);
        free(s->pci);
    }
    destroy_device(s->dev);
    memset(s, 0, sizeof(*s));
}

const struct device_ops machine_virtio_slot_ops = {
    .version = VIRTIO_STATE_VERSION,
    .reset = slot_reset,
    .quiesce = slot_quiesce,
    .resume = slot_resume,
    .save = slot_save,
    .load = slot_load,
    .post_load = slot_post_load,
    .destroy = slot_destroy,
};

/* ---- composition ---- */

static int attach_mmio(struct machine *m, struct virtio_slot *s, struct error *err)
{
    int n = m->nmmio;
    if (n == machine_mmio_max(m)) {
        return error_set(err, -E2BIG, "at most %d virtio-mmio devices (one interrupt each); put more on PCI "
                         "(transport=pci)", machine_mmio_max(m));
    }
    s->mmio = calloc(1, sizeof(*s->mmio));
    if (!s->mmio) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    m->nmmio++;
    /* Record/replay: no ioeventfd or irqfd, so queue notifies are served at
     * the vCPU's exit and interrupts go through the user-space PIC. */
    return virtio_mmio_create(s->mmio, s->dev, m->replay ? NULL : &m->vm, m->replay ? NULL : &m->loop,
                              VIRTIO_MMIO_BASE + (uint64_t)n * VIRTIO_MMIO_SIZE,
                              machine_irq_line(m, machine_mmio_irq(m, n)), err);
}

static int attach_pci(struct machine *m, struct virtio_slot *s, struct error *err)
{
    s->pci = calloc(1, sizeof(*s->pci));
    if (!s->pci) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = virtio_pci_create(s->pci, s->dev, &m->vm, &m->loop, err);
    if (ret == 0) {
        ret = pci_host_add(&m->pci, &s->pci->pci, err);
    }
    if (ret == 0) {
        virtio_device_set_location(s->dev, "@pci:00:%02x.0", s->pci->pci.slot);
    }
    return ret;
}

/* Puts a device on the transport the user chose and registers it; from
 * here on the registry owns (and destroys) it. */
static int attach(struct machine *m, struct virtio_device *d, enum transport t, struct error *err)
{
    int i = m->nvirtio;
    if (i == MACHINE_MAX_VIRTIO) {
        destroy_device(d);
        return error_set(err, -E2BIG, "at most %d virtio devices", MACHINE_MAX_VIRTIO);
    }
    struct virtio_slot *s = &m->virtio[i];
    s->dev = d;
    m->nvirtio++;
    int ret = machine_add_device(m, "virtio", i, &machine_virtio_slot_ops, s, err);
    if (ret < 0) {
        destroy_device(d);
        memset(s, 0, sizeof(*s));
        return ret;
    }
    return t == TRANSPORT_MMIO ? attach_mmio(m, s, err) : attach_pci(m, s, err);
}

static int add_disk(struct machine *m, int i, struct error *err)
{
    const struct disk_config *dc = &m->cfg->disks[i];
    struct blockdev_open_opts opts = { .format = dc->format,
                                       .flags = (dc->read_only ? BDEV_READ_ONLY : 0) |
                                                (m->cfg->incoming ? BDEV_INACTIVE : 0),
                                       .compressed_cache_set = dc->compressed_cache_set,
                                       .compressed_cache_size = dc->compressed_cache_size };
    int ret = blockdev_open(&m->disks[i], dc->file, &opts, err);
    if (ret < 0) {
        error_prefix(err, "--disk '%s'", dc->file);
        return ret;
    }
    blockdev_warn_probed_raw(m->disks[i], dc->file);     /* as QEMU's -drive without format= */
    blockdev_set_write_options(m->disks[i], dc->detect_zeroes, !dc->discard_unmap);
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (!b) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int queues = dc->num_queues ? dc->num_queues : virtio_blk_default_queues(m->cfg->cpus);
    if ((ret = virtio_blk_init(b, &m->vm.mem, m->disks[i], dc->read_only, dc->serial, queues, err)) < 0) {
        error_prefix(err, "--disk '%s'", dc->file);
        virtio_blk_destroy(b);
        free(b);
        return ret;
    }
    if (m->replay) {
        virtio_blk_make_synchronous(b);
    } else if (dc->queue_threads && (ret = virtio_blk_serve_queues_in_threads(b, dc->poll_max_ns, err)) < 0) {
        error_prefix(err, "--disk '%s'", dc->file);
        virtio_blk_destroy(b);
        free(b);
        return ret;
    }
    return attach(m, &b->dev, dc->transport, err);
}

static int add_rng(struct machine *m, enum transport t, struct error *err)
{
    struct virtio_rng *r = calloc(1, sizeof(*r));
    if (!r) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = virtio_rng_init(r, &m->vm.mem, err);
    if (ret < 0) {
        virtio_rng_destroy(r);
        free(r);
        return ret;
    }
    return attach(m, &r->dev, t, err);
}

static int add_console(struct machine *m, enum transport t, struct error *err)
{
    struct virtio_console *c = calloc(1, sizeof(*c));
    if (!c) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = virtio_console_init(c, &m->vm.mem, m->console.out, err);
    if (ret < 0) {
        virtio_console_destroy(c);
        free(c);
        return ret;
    }
    return attach(m, &c->dev, t, err);
}

static int add_net(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    struct virtio_net *n = calloc(1, sizeof(*n));
    if (!n) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = virtio_net_init(n, &m->vm.mem, &m->loop, cfg->net_tap, cfg->net_mac, err);
    if (ret < 0) {
        virtio_net_destroy(n);
        free(n);
        return ret;
    }
    return attach(m, &n->dev, cfg->net_transport, err);
}

int machine_add_virtio(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    int ret = 0;
    for (int i = 0; ret == 0 && i < cfg->ndisks; i++) {
        ret = add_disk(m, i, err);
    }
    for (int i = 0; ret == 0 && i < cfg->nrng; i++) {
        ret = add_rng(m, cfg->rng[i], err);
    }
    for (int i = 0; ret == 0 && i < cfg->nvconsole; i++) {
        ret = add_console(m, cfg->vconsole[i], err);
    }
    if (ret == 0 && cfg->net_tap) {
        ret = add_net(m, err);
    }
    return ret;
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
                              machine_mmio_irq(m, i));
    }
    return s;
}
