#include "bare_machine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "virtio/virtio_mmio.h"
#include "virtio/virtio_rng.h"

static void add_rng(struct machine *m)
{
    struct error err = { 0 };
    struct virtio_rng *r = calloc(1, sizeof(*r));
    struct virtio_slot *s = &m->virtio[0];
    assert_non_null(r);
    assert_int_equal(virtio_rng_init(r, &m->vm.mem, &err), 0);
    s->dev = &r->dev;
    s->mmio = calloc(1, sizeof(*s->mmio));
    assert_non_null(s->mmio);
    assert_int_equal(virtio_mmio_create(s->mmio, s->dev, NULL, NULL, VIRTIO_MMIO_BASE, (struct irq_line){ 0 },
                                        &err), 0);
    m->nvirtio = m->nmmio = 1;
    assert_int_equal(machine_add_device(m, "virtio", 0, &machine_virtio_slot_ops, s, &err), 0);
}

struct machine *bare_machine(const struct machine_config *cfg)
{
    struct error err = { 0 };
    struct machine *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->cfg = cfg;
    m->console.in = m->console.out = m->console.listen = -1;
    m->vm.vm_fd = m->vm.kvm_fd = m->vm.event_fd = -1;
    bus_init(&m->vm.pio, "port I/O");
    bus_init(&m->vm.mmio, "MMIO");
    device_registry_init(&m->devices);
    assert_int_equal(guest_memory_create(&m->vm.mem, cfg->memory, &err), 0);
    if (cfg->record_replay) {
        assert_int_equal(machine_add_replay_devices(m, &err), 0);
    }
    assert_int_equal(machine_add_pc_devices(m, &err), 0);
    assert_int_equal(machine_add_fw_cfg(m, &err), 0);
    add_rng(m);
    return m;
}

void bare_destroy(struct machine *m)
{
    device_registry_destroy(&m->devices);
    machine_close_disks(m);
    machine_replay_free(m);
    guest_memory_destroy(&m->vm.mem);
    bus_destroy(&m->vm.pio);
    bus_destroy(&m->vm.mmio);
    free(m);
}
