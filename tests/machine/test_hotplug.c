/* device_add/device_del of virtio-blk-pci on a bare machine, driven as
 * QMP and the guest drive it: the device lands in a free slot, the guest's
 * view of the hotplug registers (through the port bus) shows it, QEMU's
 * errors for what cannot be done, and a guest-style eject write takes the
 * device out and reports it deleted, freeing its node for another device. */
#include <jansson.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "bare_machine.h"
#include "block/block_job.h"
#include "block/blockdev.h"
#include "migration/migration.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_pci.h"

static char deleted[8][64];       /* their ids ("(none)" when anonymous) */
static char deleted_path[8][MACHINE_QOM_PATH_MAX];
static int ndeleted;

static void on_deleted(void *opaque, const char *id, const char *path)
{
    snprintf(deleted_path[ndeleted % 8], sizeof(deleted_path[0]), "%s", path);
    snprintf(deleted[ndeleted++ % 8], sizeof(deleted[0]), "%s", id ? id : "(none)");
}

static void add_node(struct machine *m, const char *name)
{
    struct error err = { 0 };
    json_t *args = json_pack("{s:s,s:s,s:I}", "driver", "null-co", "node-name", name, "size", (json_int_t)(1 << 20));
    if (block_nodes_add(machine_block_nodes(m), args, &err) < 0) {
        fail_msg("blockdev-add %s: %s", name, err.msg);
    }
    json_decref(args);
}

static uint32_t port_read32(struct machine *m, uint16_t port)
{
    uint32_t v = 0;
    assert_true(bus_read(&m->vm.pio, port, &v, 4));
    return v;
}

static void port_write32(struct machine *m, uint16_t port, uint32_t v)
{
    assert_true(bus_write(&m->vm.pio, port, &v, 4));
}

static struct machine *hotplug_machine_with(const struct machine_config *cfg)
{
    struct machine *m = bare_machine(cfg);
    machine_set_device_deleted_hook(m, on_deleted, NULL);
    ndeleted = 0;
    return m;
}

/* A bare machine with null-co nodes "n1" .. "n<nodes>" to plug. */
static struct machine *hotplug_machine(int nodes)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = 16 << 20 };
    struct machine *m = hotplug_machine_with(&cfg);
    for (int i = 1; i <= nodes; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        add_node(m, name);
    }
    return m;
}

/* The guest's ACPI driver enables the hotplug GPE. */
static void guest_enables_gpe(struct machine *m)
{
    uint8_t gpe_en = 1u << ACPI_PCIHP_GPE_BIT;
    assert_true(bus_write(&m->vm.pio, ACPI_GPE0_PORT + 2, &gpe_en, 1));
}

/* The guest's _EJ0 for slot, and the main loop's part that removes it. */
static void guest_ejects(struct machine *m, int slot)
{
    port_write32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_EJECT, 1u << slot);
    machine_pci_process_ejects(m);
}

/* device_add with queue threads: the hot-plugged device's queues have
 * their threads (each queue's notify eventfd, which virtio-pci hands to
 * KVM), as --disk queue-threads=on gives a cold-plugged one; without, none. */
static void test_add_with_queue_threads(void **state)
{
    struct machine *m = hotplug_machine(2);
    struct error err = { 0 };
    guest_enables_gpe(m);
    struct machine_blk_options threads = { .queue_threads = true, .poll_max_ns = 1000 };
    assert_int_equal(machine_device_add_virtio_blk_with(m, "d1", "n1", &threads, &err), 0);
    assert_int_equal(machine_device_add_virtio_blk(m, "d2", "n2", &err), 0);
    struct virtio_blk *b1 = (struct virtio_blk *)m->hotplug[0].slot.dev;
    struct virtio_blk *b2 = (struct virtio_blk *)m->hotplug[1].slot.dev;
    assert_true(virtio_blk_queue_notify_fd(b1, 0) >= 0);
    assert_int_equal(virtio_blk_queue_notify_fd(b2, 0), -1);
    guest_ejects(m, m->hotplug[0].pci_slot);    /* the threads stop with the device */
    assert_int_equal(ndeleted, 1);
    bare_destroy(m);
}

static void test_add_then_guest_ejects(void **state)
{
    struct machine *m = hotplug_machine(1);
    struct error err = { 0 };
    guest_enables_gpe(m);
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "n1", &err), 0);
    int slot = m->hotplug[0].pci_slot;
    assert_int_equal(slot, 1);          /* the bare machine's bus is empty */
    assert_non_null(m->pci.slots[slot]);
    assert_non_null(device_registry_find(&m->devices, "virtio-hotplug.1"));
    /* The SCI is up and the GPE handler's reads see the slot. */
    assert_true(m->acpi_pm.sci_level);
    assert_int_equal(port_read32(m, ACPI_GPE0_PORT) & 0xffff, 1u << ACPI_PCIHP_GPE_BIT);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_UP), 1u << slot);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_REMOVABLE), 1u << slot);
    /* The guest sees a virtio-blk function there (vendor 0x1af4, device 0x1042). */
    port_write32(m, PCI_CONFIG_ADDRESS_PORT, 0x80000000u | (uint32_t)slot << 11);
    assert_int_equal(port_read32(m, PCI_CONFIG_DATA_PORT), 0x10421af4u);
    /* device_del: the guest is asked, nothing goes yet. */
    assert_int_equal(machine_device_del(m, "d1", &err), 0);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_DOWN), 1u << slot);
    assert_int_equal(ndeleted, 0);
    assert_int_equal(machine_device_del(m, "d1", &err), -EALREADY);
    assert_string_equal(err.msg, "Device d1 is already in the process of unplug");
    guest_ejects(m, slot);
    assert_int_equal(ndeleted, 1);
    assert_string_equal(deleted[0], "d1");
    assert_null(m->pci.slots[slot]);
    assert_null(device_registry_find(&m->devices, "virtio-hotplug.1"));
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_DOWN), 0);
    assert_int_equal(port_read32(m, PCI_CONFIG_DATA_PORT), 0xffffffffu);
    assert_int_equal(machine_device_del(m, "d1", &err), -ENODEV);
    /* The node is free again: the same id and node work once more. */
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "n1", &err), 0);
    bare_destroy(m);
}

static void test_errors_in_qemus_words(void **state)
{
    struct machine *m = hotplug_machine(2);
    struct error err = { 0 };
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "nope", &err), -ENOENT);
    assert_string_equal(err.msg, "Property 'virtio-blk-device.drive' can't find value 'nope'");
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "n1", &err), 0);
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "n2", &err), -EEXIST);
    assert_string_equal(err.msg, "Duplicate device ID 'd1'");
    assert_int_equal(machine_device_add_virtio_blk(m, "d2", "n1", &err), -EBUSY);
    assert_string_equal(err.msg, "Permission conflict on node 'n1': permissions 'write' are both required by block "
                                 "device '/machine/peripheral/d1/virtio-backend' (uses node 'n1' as 'root' child) "
                                 "and unshared by block device '/machine/peripheral/d2/virtio-backend' (uses node "
                                 "'n1' as 'root' child).");
    assert_int_equal(machine_device_del(m, "d9", &err), -ENODEV);
    assert_string_equal(err.msg, "Device 'd9' not found");
    /* A slot the host did not plug is not the guest's to eject. */
    guest_ejects(m, 7);
    assert_int_equal(ndeleted, 0);
    /* Fill the bus: the error names the driver as QEMU does. */
    int added = 1;
    char id[16], node[16];
    for (; added < 40; added++) {
        snprintf(id, sizeof(id), "x%d", added);
        snprintf(node, sizeof(node), "m%d", added);
        add_node(m, node);
        if (machine_device_add_virtio_blk(m, id, node, &err) < 0) {
            break;
        }
    }
    assert_string_equal(err.msg, "PCI: no slot/function available for virtio-blk-pci, all in use or reserved");
    assert_true(added >= MACHINE_MAX_HOTPLUG);
    bare_destroy(m);
}

/* ---- PCI memory: BAR space comes back at unplug ---- */

static int slot_of(struct machine *m, const char *id)
{
    for (int i = 0; i < MACHINE_MAX_HOTPLUG; i++) {
        struct hotplugged *h = &m->hotplug[i];
        if (h->pci_slot > 0 && (strcmp(h->id, id) == 0 || strcmp(h->path, id) == 0)) {
            return h->pci_slot;
        }
    }
    fail_msg("no device '%s'", id);
    return -1;
}

static uint64_t bar0_of(struct machine *m, const char *id)
{
    return pci_config_read(m->pci.slots[slot_of(m, id)], PCI_BAR0, 4) & ~0xfu;
}

/* device_del and the guest's _EJ0, as the guest answers. */
static void unplug(struct machine *m, const char *id)
{
    struct error err = { 0 };
    int slot = slot_of(m, id);
    assert_int_equal(machine_device_del(m, id, &err), 0);
    guest_ejects(m, slot);
    assert_null(m->pci.slots[slot]);
}

/* A window with room for two BARs: a third device is refused with an
 * error naming the window; an unplug makes room again, many times over. */
static void test_unplug_gives_pci_memory_back(void **state)
{
    struct machine *m = hotplug_machine(3);
    struct error err = { 0 };
    m->pci.mmio_end = m->pci.mmio_start + 2 * VIRTIO_PCI_BAR_SIZE;
    assert_int_equal(machine_device_add_virtio_blk(m, "a", "n1", &err), 0);
    assert_int_equal(machine_device_add_virtio_blk(m, "b", "n2", &err), 0);
    assert_int_equal(machine_device_add_virtio_blk(m, "c", "n3", &err), -ENOSPC);
    char want[160];
    snprintf(want, sizeof(want), "PCI memory window 0x%llx-0x%llx is full: no room for a %u-byte BAR",
             (unsigned long long)m->pci.mmio_start, (unsigned long long)m->pci.mmio_end - 1, VIRTIO_PCI_BAR_SIZE);
    assert_string_equal(err.msg, want);
    /* The refusal left nothing behind: the node is free, no slot taken. */
    assert_int_equal(machine_block_node_find(m, "n3")->device[0], 0);
    uint64_t a_bar = bar0_of(m, "a");
    for (int cycle = 0; cycle < 30; cycle++) {
        unplug(m, cycle ? "c" : "a");
        assert_int_equal(machine_device_add_virtio_blk(m, "c", "n3", &err), 0);
        assert_int_equal(bar0_of(m, "c"), a_bar);
    }
    assert_int_not_equal(bar0_of(m, "b"), a_bar);
    bare_destroy(m);
}

/* Space the guest (firmware) moved a BAR to is taken: a new device goes
 * elsewhere, never overlapping. */
static void test_bars_the_guest_moved_are_avoided(void **state)
{
    struct machine *m = hotplug_machine(2);
    struct error err = { 0 };
    assert_int_equal(machine_device_add_virtio_blk(m, "a", "n1", &err), 0);
    uint64_t start = m->pci.mmio_start;
    assert_int_equal(bar0_of(m, "a"), start);
    pci_config_write(m->pci.slots[slot_of(m, "a")], PCI_BAR0, 4, (uint32_t)(start + VIRTIO_PCI_BAR_SIZE));
    assert_int_equal(machine_device_add_virtio_blk(m, "b", "n2", &err), 0);
    assert_int_equal(bar0_of(m, "b"), start);
    unplug(m, "b");
    assert_int_equal(machine_device_add_virtio_blk(m, "b", "n2", &err), 0);
    uint64_t b = bar0_of(m, "b"), a = bar0_of(m, "a");
    assert_true(b + VIRTIO_PCI_BAR_SIZE <= a || a + VIRTIO_PCI_BAR_SIZE <= b);
    bare_destroy(m);
}

/* device_add without an id, as QEMU allows: the device is
 * /machine/peripheral-anon/device[N] (the lowest N free), listed for
 * query-block, and device_del takes that path (any device's path, in
 * fact), as QEMU 7.2 does. */
static void test_anonymous_device_by_qom_path(void **state)
{
    struct machine *m = hotplug_machine(3);
    struct error err = { 0 };
    assert_int_equal(machine_device_add_virtio_blk(m, NULL, "n1", &err), 0);
    assert_int_equal(machine_device_add_virtio_blk(m, NULL, "n2", &err), 0);
    assert_int_equal(machine_device_add_virtio_blk(m, "d3", "n3", &err), 0);
    struct machine_hotplugged_disk hot[4];
    assert_int_equal(machine_hotplugged_disks(m, hot, 4), 3);
    assert_null(hot[0].id);
    assert_string_equal(hot[0].path, "/machine/peripheral-anon/device[0]");
    assert_string_equal(hot[0].node, "n1");
    assert_string_equal(hot[1].path, "/machine/peripheral-anon/device[1]");
    assert_string_equal(hot[2].id, "d3");
    assert_string_equal(hot[2].path, "/machine/peripheral/d3");
    assert_int_equal(hot[2].stats.rd_ops, 0);
    /* The node's user is named by its path in QEMU's words. */
    assert_int_equal(machine_device_add_virtio_blk(m, NULL, "n1", &err), -EBUSY);
    assert_non_null(strstr(err.msg, "'/machine/peripheral-anon/device[0]/virtio-backend' (uses node 'n1'"));
    assert_non_null(strstr(err.msg, "'/machine/peripheral-anon/device[2]/virtio-backend'"));
    assert_int_equal(machine_device_del(m, "device[0]", &err), -ENODEV);
    assert_string_equal(err.msg, "Device 'device[0]' not found");
    unplug(m, "/machine/peripheral-anon/device[0]");
    assert_int_equal(ndeleted, 1);
    assert_string_equal(deleted[0], "(none)");
    assert_string_equal(deleted_path[0], "/machine/peripheral-anon/device[0]");
    assert_int_equal(machine_device_del(m, "/machine/peripheral-anon/device[1]", &err), 0);
    assert_int_equal(machine_device_del(m, "/machine/peripheral-anon/device[1]", &err), -EALREADY);
    assert_string_equal(err.msg, "Device /machine/peripheral-anon/device[1] is already in the process of unplug");
    /* The lowest free index again; a device with an id by its path too. */
    assert_int_equal(machine_device_add_virtio_blk(m, NULL, "n1", &err), 0);
    assert_int_equal(machine_hotplugged_disks(m, hot, 4), 3);
    assert_string_equal(hot[0].path, "/machine/peripheral-anon/device[0]");
    unplug(m, "/machine/peripheral/d3");
    assert_string_equal(deleted[1], "d3");
    bare_destroy(m);
}

/* ---- cold-plugged disks ---- */

/* A bare machine with one --disk on PCI (its own image), composed as the
 * machine composes it, and its ACPI tables made again with the disk there. */
struct cold_rig {
    struct machine_config cfg;
    char image[64];
    struct machine *m;
};

static struct machine *cold_disk_machine(struct cold_rig *r)
{
    struct error err = { 0 };
    snprintf(r->image, sizeof(r->image), "/tmp/cowvisor-cold-XXXXXX");
    int fd = mkstemp(r->image);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    r->cfg = (struct machine_config){ .cpus = 1, .memory = 16 << 20, .ndisks = 1 };
    r->cfg.disks[0] = (struct disk_config){ .file = r->image, .format = "raw", .transport = TRANSPORT_PCI };
    r->m = hotplug_machine_with(&r->cfg);
    if (machine_add_virtio(r->m, &err) < 0) {
        fail_msg("machine_add_virtio: %s", err.msg);
    }
    free(r->m->acpi_image);
    r->m->acpi_image = NULL;
    assert_int_equal(machine_build_acpi(r->m, &err), 0);
    return r->m;
}

static void cold_rig_destroy(struct cold_rig *r)
{
    bare_destroy(r->m);
    unlink(r->image);
}

/* As QEMU's pc machine: the guest may eject a cold-plugged virtio-blk-pci
 * disk (device_del with its QOM path), its slot is in the DSDT, and once
 * gone the slot and the anonymous name are free for device_add. */
static void test_cold_plugged_disk_ejects(void **state)
{
    struct cold_rig r;
    struct machine *m = cold_disk_machine(&r);
    struct error err = { 0 };
    struct virtio_slot *vs = machine_disk_pci_slot(m, 0);
    assert_non_null(vs);
    int slot = vs->pci->pci.slot;
    assert_int_equal(slot, 1);
    assert_non_null(memmem(m->acpi_image, m->acpi_image_len, "S08_", 4));     /* slot 1's Device(S08) */
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_REMOVABLE), 1u << slot);
    const char *path = "/machine/peripheral-anon/device[0]";
    machine_set_migrating(m, true);     /* as a hot-plugged device: not while a migration walks the devices */
    assert_int_equal(machine_device_del(m, path, &err), -EBUSY);
    assert_string_equal(err.msg, "device_del not allowed while migrating");
    machine_set_migrating(m, false);
    assert_int_equal(machine_device_del(m, path, &err), 0);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_DOWN), 1u << slot);
    assert_int_equal(machine_device_del(m, path, &err), -EALREADY);
    guest_ejects(m, slot);
    assert_int_equal(ndeleted, 1);
    assert_string_equal(deleted[0], "(none)");
    assert_string_equal(deleted_path[0], path);
    assert_null(m->pci.slots[slot]);
    assert_null(m->disks[0]);
    assert_null(device_registry_find(&m->devices, "virtio.1"));
    struct disk_layer l;
    bool ro;
    struct machine_disk_stats st;
    assert_int_equal(machine_disk_chain(m, 0, &l, 1, &ro), -ENODEV);
    assert_int_equal(machine_disk_stats(m, 0, &st), -ENOENT);
    assert_int_equal(machine_device_del(m, path, &err), -ENODEV);
    /* Its slot and its name serve a new device. */
    add_node(m, "n1");
    assert_int_equal(machine_device_add_virtio_blk(m, NULL, "n1", &err), 0);
    struct machine_hotplugged_disk hot[2];
    assert_int_equal(machine_hotplugged_disks(m, hot, 2), 1);
    assert_string_equal(hot[0].path, path);
    assert_int_equal(slot_of(m, path), slot);
    cold_rig_destroy(&r);
}

/* A cold-disk machine whose guest has ejected its disk after device_del. */
static struct machine *machine_with_ejected_disk(struct cold_rig *r)
{
    struct machine *m = cold_disk_machine(r);
    struct error err = { 0 };
    int slot = machine_disk_pci_slot(m, 0)->pci->pci.slot;
    assert_int_equal(machine_device_del(m, "/machine/peripheral-anon/device[0]", &err), 0);
    guest_ejects(m, slot);
    return m;
}

/* The snapshot records which cold-plugged disks the guest ejected: a
 * machine made again from the same command line drops them on restore
 * (no DEVICE_DELETED: that guest saw it long ago), and a snapshot with the
 * disk cannot be restored where it is gone. */
static void test_ejected_disk_stays_ejected_across_restore(void **state)
{
    struct cold_rig ra, rb;
    struct machine *a = machine_with_ejected_disk(&ra), *b = cold_disk_machine(&rb);
    struct error err = { 0 };
    int slot = machine_disk_pci_slot(b, 0)->pci->pci.slot;     /* the same on both */
    assert_null(a->disks[0]);
    struct bare_stream with, without;
    bare_save(b, &with);
    bare_save(a, &without);
    ndeleted = 0;
    assert_int_equal(bare_load(b, &without, &err), 0);
    assert_null(b->disks[0]);
    assert_null(b->pci.slots[slot]);
    assert_null(device_registry_find(&b->devices, "virtio.1"));
    struct disk_layer l;
    bool ro;
    assert_int_equal(machine_disk_chain(b, 0, &l, 1, &ro), -ENODEV);
    assert_int_equal(ndeleted, 0);
    /* Gone for good: a snapshot that has the disk does not fit any more. */
    assert_int_equal(bare_load(b, &with, &err), -EINVAL);
    assert_string_equal(err.msg, "configuration mismatch: disk 0 was there, here it is ejected");
    close(with.fd);
    close(without.fd);
    cold_rig_destroy(&ra);
    cold_rig_destroy(&rb);
}

/* The migration thread's stand-in for the main loop: it asks, the test's
 * thread (the main loop) runs the call when it chooses. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int (*fn)(void *arg, struct error *err);
    void *arg;
    bool asked, done;
    int ret;
} loop_call = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static int on_main_loop(void *opaque, int (*fn)(void *arg, struct error *err), void *arg, struct error *err)
{
    pthread_mutex_lock(&loop_call.lock);
    loop_call.fn = fn;
    loop_call.arg = arg;
    loop_call.asked = true;
    pthread_cond_broadcast(&loop_call.cond);
    while (!loop_call.done) {
        pthread_cond_wait(&loop_call.cond, &loop_call.lock);
    }
    int ret = loop_call.ret;
    pthread_mutex_unlock(&loop_call.lock);
    return ret;
}

/* The migration's destination leaves a disk its source's guest ejected
 * alone until the main loop drops it: until then the main loop may be
 * using it (QMP's query-block), so the migration thread must not close it
 * under its feet. Found by review. Post-copy: the device loader asks. */
static void incoming_eject(bool postcopy)
{
    struct cold_rig ra, rb;
    struct machine *a = cold_disk_machine(&ra), *b = cold_disk_machine(&rb);
    struct error err = { 0 };
    int slot = machine_disk_pci_slot(a, 0)->pci->pci.slot, fds[2];
    assert_int_equal(machine_device_del(a, "/machine/peripheral-anon/device[0]", &err), 0);
    guest_ejects(a, slot);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    struct migration_params p;
    migration_params_default(&p);
    p.max_bandwidth = postcopy ? 8 << 20 : 0;     /* post-copy: asked for in the first pass */
    p.postcopy_ram = postcopy;
    struct migration_hooks dh = { .on_main_loop = on_main_loop };
    struct migration_source *src = NULL;
    struct migration_dest *dst = NULL;
    loop_call.asked = loop_call.done = false;
    assert_int_equal(migration_dest_start(&dst, b, fds[1], &dh, &err), 0);
    assert_int_equal(migration_source_start(&src, a, fds[0], &p, NULL, &err), 0);
    if (postcopy) {
        assert_int_equal(migration_source_start_postcopy(src, &err), 0);
    }
    pthread_mutex_lock(&loop_call.lock);
    for (int i = 0; i < 3000 && !loop_call.asked && !migration_dest_done(dst); i++) {
        pthread_mutex_unlock(&loop_call.lock);
        usleep(10000);
        pthread_mutex_lock(&loop_call.lock);
    }
    bool asked = loop_call.asked;
    pthread_mutex_unlock(&loop_call.lock);
    if (!asked) {
        fail_msg("the incoming migration dropped the ejected disk without the main loop (disk %s)",
                 b->disks[0] ? "still here" : "closed by a migration thread");
    }
    /* The migration waits: the main loop still has the disk to use. */
    struct disk_layer l;
    bool ro;
    assert_non_null(b->disks[0]);
    assert_int_equal(machine_disk_chain(b, 0, &l, 1, &ro), 1);
    pthread_mutex_lock(&loop_call.lock);
    loop_call.ret = loop_call.fn(loop_call.arg, &err);
    loop_call.done = true;
    pthread_cond_broadcast(&loop_call.cond);
    pthread_mutex_unlock(&loop_call.lock);
    assert_int_equal(loop_call.ret, 0);
    if (migration_source_wait(src, &err) < 0 || migration_dest_wait(dst, &err) < 0) {
        fail_msg("migration: %s", err.msg);
    }
    assert_null(b->disks[0]);
    assert_null(device_registry_find(&b->devices, "virtio.1"));
    struct migration_stats ss;
    migration_source_stats(src, &ss);
    assert_true(!postcopy || ss.postcopy_bytes > 0);     /* it did run as post-copy */
    migration_source_free(src);
    migration_dest_free(dst);
    cold_rig_destroy(&ra);
    cold_rig_destroy(&rb);
}

static void test_incoming_eject_waits_for_main_loop(void **state)
{
    incoming_eject(false);
}

static void test_incoming_eject_waits_for_main_loop_postcopy(void **state)
{
    incoming_eject(true);
}

/* A device the snapshot has no section for: the restore is refused. */
static int extra_save(void *dev, struct state_buf *b, struct error *err) { (void)dev; (void)b; (void)err; return 0; }
static int extra_load(void *dev, struct state_buf *b, uint32_t v, struct error *err) { (void)dev; (void)b; (void)v; (void)err; return 0; }
static const struct device_ops extra_ops = { .version = 1, .save = extra_save, .load = extra_load };
/* A restore refused after its configuration was read leaves the machine as
 * it was: the disk the snapshot had ejected is still here (it was ejected
 * while the state was read, before the checks). Found by review. */
static void test_refused_restore_keeps_the_disk(void **state)
{
    struct cold_rig ra, rb;
    struct machine *a = machine_with_ejected_disk(&ra), *b = cold_disk_machine(&rb);
    struct error err = { 0 };
    struct bare_stream without;
    bare_save(a, &without);
    static int dummy;
    assert_true(machine_add_device(b, "extra-device", -1, &extra_ops, &dummy, &err) >= 0);
    int ret = bare_load(b, &without, &err);
    assert_true(ret < 0);
    assert_non_null(b->disks[0]);
    close(without.fd);
    cold_rig_destroy(&ra);
    cold_rig_destroy(&rb);
}

/* An id too long to keep whole is refused: cut short, a second device took
 * the same id and device_del found neither. Found by review. */
static void test_long_id_refused(void **state)
{
    struct machine *m = hotplug_machine(1);
    struct error err = { 0 };
    char long_id[101];
    memset(long_id, 'a', 100);
    long_id[100] = 0;
    assert_int_equal(machine_device_add_virtio_blk(m, long_id, "n1", &err), -EINVAL);
    assert_string_equal(err.msg, "Parameter 'id' is longer than 63 characters");
    long_id[63] = 0;
    assert_int_equal(machine_device_add_virtio_blk(m, long_id, "n1", &err), 0);
    assert_int_equal(machine_device_del(m, long_id, &err), 0);
    bare_destroy(m);
}

/* A slow backup of disk 0 into a scratch file, started as QMP starts it. */
static struct block_job *start_slow_backup(struct machine *m, char *target_path)
{
    struct error err = { 0 };
    int fd = mkstemp(target_path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    struct blockdev *target = NULL;
    assert_int_equal(blockdev_open(&target, target_path, &(struct blockdev_open_opts){ .format = "raw" }, &err), 0);
    struct block_job_host host;
    assert_int_equal(machine_disk_job_host(m, 0, &host, &err), 0);
    struct block_job_params p = { .type = BLOCK_JOB_BACKUP, .speed = 64 << 10, .target = target };
    snprintf(p.id, sizeof(p.id), "slow");
    struct block_job *job = NULL;
    if (block_job_start(&job, &p, &host, &err) < 0) {
        fail_msg("block_job_start: %s", err.msg);
    }
    return job;
}

/* The guest ejects a cold-plugged disk (it needs no device_del) while a
 * block job reads its image, or while a migration sends the devices: the
 * device stays until the job is freed or the migration ends, then goes (its
 * image was closed under the job's thread: a use-after-free). Found by
 * review. */
static void test_eject_waits_for_job_and_migration(void **state)
{
    struct cold_rig r;
    struct machine *m = cold_disk_machine(&r);
    int slot = machine_disk_pci_slot(m, 0)->pci->pci.slot;
    char target_path[] = "/tmp/cowvisor-eject-target-XXXXXX";
    struct block_job *job = start_slow_backup(m, target_path);
    guest_ejects(m, slot);
    assert_int_equal(ndeleted, 0);
    assert_non_null(m->disks[0]);
    assert_non_null(m->pci.slots[slot]);
    block_job_free(job);                    /* the job gives the disk back */
    machine_pci_process_ejects(m);          /* what the main loop's wake-up does */
    assert_int_equal(ndeleted, 1);
    assert_null(m->disks[0]);
    cold_rig_destroy(&r);

    m = cold_disk_machine(&r);
    machine_set_migrating(m, true);
    guest_ejects(m, slot);
    assert_int_equal(ndeleted, 0);
    assert_non_null(m->disks[0]);
    machine_set_migrating(m, false);
    machine_pci_process_ejects(m);
    assert_int_equal(ndeleted, 1);
    assert_null(m->disks[0]);
    cold_rig_destroy(&r);
    unlink(target_path);
}

/* An eject that waits (here for a migration) is part of the state: the
 * machine that loads it removes the disk too (the guest let it go, and the
 * registers say so: the slot is no longer removable). It was lost: the
 * loading machine kept a disk its guest had ejected. Found by review. */
static void test_deferred_eject_travels_with_the_state(void **state)
{
    struct cold_rig ra, rb;
    struct machine *a = cold_disk_machine(&ra), *b = cold_disk_machine(&rb);
    struct error err = { 0 };
    int slot = machine_disk_pci_slot(a, 0)->pci->pci.slot;
    machine_set_migrating(a, true);
    guest_ejects(a, slot);
    assert_non_null(a->disks[0]);       /* waits for the migration */
    struct bare_stream s;
    bare_save(a, &s);
    ndeleted = 0;
    assert_int_equal(bare_load(b, &s, &err), 0);
    machine_pci_process_ejects(b);      /* what the main loop's wake-up does */
    assert_null(b->disks[0]);
    assert_null(b->pci.slots[slot]);
    assert_int_equal(ndeleted, 1);
    assert_int_equal(port_read32(b, ACPI_PCIHP_PORT + ACPI_PCIHP_REMOVABLE), 0);
    close(s.fd);
    cold_rig_destroy(&ra);
    cold_rig_destroy(&rb);
}

/* The other way: a machine whose own eject waits loads a state taken
 * before its guest ejected: that guest still has the disk, which stays
 * when the wait ends. */
static void test_loaded_state_drops_own_deferred_eject(void **state)
{
    struct cold_rig r;
    struct machine *m = cold_disk_machine(&r);
    struct error err = { 0 };
    int slot = machine_disk_pci_slot(m, 0)->pci->pci.slot;
    struct bare_stream before;
    bare_save(m, &before);
    machine_set_migrating(m, true);
    guest_ejects(m, slot);
    assert_int_equal(bare_load(m, &before, &err), 0);
    machine_set_migrating(m, false);
    machine_ejects_resume(m);
    machine_pci_process_ejects(m);
    assert_non_null(m->disks[0]);
    assert_non_null(m->pci.slots[slot]);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_REMOVABLE), 1u << slot);
    close(before.fd);
    cold_rig_destroy(&r);
}

/* Record/replay has no virtio-pci and its log no hotplug: refused. */
static void test_refused_in_replay_mode(void **state)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = 16 << 20, .record_replay = true };
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    add_node(m, "n1");
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "n1", &err), -ENOTSUP);
    assert_string_equal(err.msg, "device_add is not supported in record/replay mode");
    bare_destroy(m);
}

/* A reset while an unplug is pending (the guest never ejected): as
 * QEMU, no removal is pending afterwards, and device_del can ask the guest
 * again; it was refused as "already in the process of unplug" for good. */
static void test_reset_drops_pending_unplug(void **state)
{
    struct machine *m = hotplug_machine(1);
    struct error err = { 0 };
    guest_enables_gpe(m);
    assert_int_equal(machine_device_add_virtio_blk(m, "d1", "n1", &err), 0);
    int slot = m->hotplug[0].pci_slot;
    assert_int_equal(machine_device_del(m, "d1", &err), 0);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_DOWN), 1u << slot);
    assert_int_equal(device_registry_reset(&m->devices, &err), 0);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_DOWN), 0);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_REMOVABLE), 1u << slot);
    guest_enables_gpe(m);   /* the guest's driver again */
    assert_int_equal(machine_device_del(m, "d1", &err), 0);
    assert_int_equal(port_read32(m, ACPI_PCIHP_PORT + ACPI_PCIHP_DOWN), 1u << slot);
    assert_true(m->acpi_pm.sci_level);
    guest_ejects(m, slot);
    assert_int_equal(ndeleted, 1);
    bare_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_then_guest_ejects),
        cmocka_unit_test(test_add_with_queue_threads),
        cmocka_unit_test(test_reset_drops_pending_unplug),
        cmocka_unit_test(test_errors_in_qemus_words),
        cmocka_unit_test(test_long_id_refused),
        cmocka_unit_test(test_refused_in_replay_mode),
        cmocka_unit_test(test_unplug_gives_pci_memory_back),
        cmocka_unit_test(test_bars_the_guest_moved_are_avoided),
        cmocka_unit_test(test_anonymous_device_by_qom_path),
        cmocka_unit_test(test_cold_plugged_disk_ejects),
        cmocka_unit_test(test_eject_waits_for_job_and_migration),
        cmocka_unit_test(test_deferred_eject_travels_with_the_state),
        cmocka_unit_test(test_loaded_state_drops_own_deferred_eject),
        cmocka_unit_test(test_ejected_disk_stays_ejected_across_restore),
        cmocka_unit_test(test_refused_restore_keeps_the_disk),
        cmocka_unit_test(test_incoming_eject_waits_for_main_loop),
        cmocka_unit_test(test_incoming_eject_waits_for_main_loop_postcopy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
