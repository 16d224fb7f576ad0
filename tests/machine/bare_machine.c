#include "bare_machine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "machine/machine_state.h"
#include "vmm/guest_memory_stream.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_rng.h"

/* Not cmocka's asserts: bench/ builds this too, without the test suite. */
static void must(int ret, const char *what, const struct error *err)
{
    if (ret != 0) {
        fprintf(stderr, "bare machine: %s failed: %s\n", what, err ? err->msg : "out of memory");
        abort();
    }
}

static void add_rng(struct machine *m)
{
    struct error err = { 0 };
    struct virtio_rng *r = calloc(1, sizeof(*r));
    struct virtio_slot *s = &m->virtio[0];
    must(!r, "allocating virtio-rng", NULL);
    must(virtio_rng_init(r, &m->vm.mem, &err), "virtio_rng_init", &err);
    s->dev = &r->dev;
    s->mmio = calloc(1, sizeof(*s->mmio));
    must(!s->mmio, "allocating its transport", NULL);
    must(virtio_mmio_create(s->mmio, s->dev, NULL, NULL, VIRTIO_MMIO_BASE, (struct irq_line){ 0 }, &err),
         "virtio_mmio_create", &err);
    m->nvirtio = m->nmmio = 1;
    must(machine_add_device(m, "virtio", 0, &machine_virtio_slot_ops, s, &err), "registering virtio.0", &err);
}

struct machine *bare_machine(const struct machine_config *cfg)
{
    struct error err = { 0 };
    struct machine *m = calloc(1, sizeof(*m));
    must(!m, "allocating the machine", NULL);
    m->cfg = cfg;
    m->console.in = m->console.out = m->console.listen = m->console.retry_timer = -1;
    m->vm.vm_fd = m->vm.kvm_fd = m->vm.event_fd = -1;
    bus_init(&m->vm.pio, "port I/O");
    bus_init(&m->vm.mmio, "MMIO");
    device_registry_init(&m->devices);
    must(event_loop_init(&m->loop, &err), "event_loop_init", &err);
    must(guest_memory_create(&m->vm.mem, cfg->memory, &err), "guest_memory_create", &err);
    if (cfg->record_replay) {
        must(machine_add_replay_devices(m, &err), "machine_add_replay_devices", &err);
    }
    must(machine_add_pc_devices(m, &err), "machine_add_pc_devices", &err);
    must(machine_add_acpi(m, &err), "machine_add_acpi", &err);
    must(machine_add_fw_cfg(m, &err), "machine_add_fw_cfg", &err);
    add_rng(m);
    must(machine_build_acpi(m, &err), "machine_build_acpi", &err);
    return m;
}

void bare_destroy(struct machine *m)
{
    device_registry_destroy(&m->devices);
    block_nodes_close_all(&m->nodes);
    machine_close_disks(m);
    machine_replay_free(m);
    event_loop_destroy(&m->loop);
    guest_memory_destroy(&m->vm.mem);
    bus_destroy(&m->vm.pio);
    bus_destroy(&m->vm.mmio);
    free(m->vm.routes);     /* MSI routes a driver's MSI-X enable set up */
    free(m->acpi_image);
    free(m);
}

void bare_save(struct machine *m, struct bare_stream *s)
{
    struct error err = { 0 };
    struct vmstate_writer w;
    s->fd = memfd_create("vmstate", MFD_CLOEXEC);
    must(s->fd < 0, "memfd_create", NULL);
    must(vmstate_writer_begin(&w, vmstate_fd_io(&s->fd), &err), "vmstate_writer_begin", &err);
    must(machine_state_save(m, &w, &err), "machine_state_save", &err);
    must(guest_memory_stream_write(&m->vm.mem, &w, &err), "guest_memory_stream_write", &err);
    int64_t n = vmstate_writer_finish(&w, &err);
    must(n <= 0, "vmstate_writer_finish", &err);
    s->size = (uint64_t)n;
    vmstate_writer_free(&w);
}

int bare_load(struct machine *m, struct bare_stream *s, struct error *err)
{
    struct vmstate_reader r;
    struct machine_state_image img;
    int ret = vmstate_reader_begin(&r, vmstate_fd_io(&s->fd), s->size, err);
    if (ret == 0) {
        ret = machine_state_read(m, &r, &img, err);
    }
    if (ret == 0) {
        ret = vmstate_next_section(&r, err);
        if (ret == 0 && strcmp(r.section, "ram")) {
            ret = error_set(err, -EINVAL, "section '%s' where RAM was expected", r.section);
        }
        if (ret == 0) {
            ret = guest_memory_stream_load(&m->vm.mem, &r, err);
        }
        if (ret == 0) {
            ret = machine_state_apply(m, &img, err);
        }
        machine_state_image_free(&img);
    }
    vmstate_reader_free(&r);
    return ret;
}
