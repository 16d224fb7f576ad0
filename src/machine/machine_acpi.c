/* The machine's ACPI: the PM device (power button, S5) and the PCI
 * hotplug registers on their ports, and the tables describing the machine
 * as composed, given to a kernel in the BIOS area or to firmware through
 * fw_cfg's table loader. The hotplug registers: machine_hotplug.c. */
#include "machine/machine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/acpi_tables.h"
#include "virtio/virtio_pci.h"
#include "util/clock.h"
#include "vmm/boot.h"

#define RSDP_SPACE 0x40         /* the RSDP, then the tables 64-byte aligned (the FACS) */

static void guest_power_off(void *opaque)
{
    struct machine *m = opaque;
    vm_request(&m->vm, VM_REQ_POWER_OFF, 0);
}

int machine_add_acpi(struct machine *m, struct error *err)
{
    /* Record/replay: no PM timer, it would be time the log does not carry. */
    acpi_pm_init(&m->acpi_pm, machine_irq_line(m, ACPI_SCI_IRQ), guest_power_off, m,
                 m->cfg->record_replay ? NULL : monotonic_ns);
    int ret = machine_add_device(m, "acpi-pm", -1, &acpi_pm_device_ops, &m->acpi_pm, err);
    if (ret < 0) {
        acpi_pm_destroy(&m->acpi_pm);
        return ret;
    }
    struct bus *pio = &m->vm.pio;
    if ((ret = bus_register(pio, ACPI_PM1_EVT_PORT, ACPI_PM_BLOCK_LEN, acpi_pm_read, acpi_pm_write, &m->acpi_pm,
                            "acpi-pm", err)) < 0 ||
        (ret = bus_register(pio, ACPI_GPE0_PORT, ACPI_GPE0_LEN, acpi_gpe_read, acpi_gpe_write, &m->acpi_pm,
                            "acpi-gpe0", err)) < 0) {
        return ret;
    }
    return machine_add_pci_hotplug(m, err);
}

/* The slots of the cold-plugged disks on PCI: ejectable, as QEMU's pc
 * machine lets a guest eject -drive if=virtio disks. */
static uint32_t cold_disk_slots(struct machine *m)
{
    uint32_t slots = 0;
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct virtio_slot *s = machine_disk_pci_slot(m, i);
        slots |= s ? 1u << s->pci->pci.slot : 0;
    }
    return slots;
}

/* What the tables say, from the machine as composed: the slots still free
 * are the ones device_add may fill, and the guest may eject what is there
 * or what the cold-plugged disks hold. */
static void describe(struct machine *m, struct acpi_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ncpus = m->vm.ncpus > 0 ? m->vm.ncpus : m->cfg->cpus;
    cfg->ioapic_id = (uint8_t)cfg->ncpus;       /* as the MP table */
    cfg->pci_mem_start = guest_memory_low_size(&m->vm.mem);
    cfg->pci_mem_end = PCI_MMIO_WINDOW_END;
    cfg->hotplug_slots = cold_disk_slots(m);
    for (int slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        if (!m->pci.slots[slot]) {
            cfg->hotplug_slots |= 1u << slot;
        }
    }
    cfg->pm_timer = !m->cfg->record_replay;
}

static int give_firmware(struct machine *m, struct acpi_blob *b, struct error *err)
{
    uint8_t *loader;
    size_t len;
    int ret = acpi_blob_loader(b, &loader, &len, err);
    if (ret < 0) {
        return ret;
    }
    if ((ret = fw_cfg_add_file(&m->fw_cfg, ACPI_TABLES_FILE, b->tables, b->len, err)) == 0 &&
        (ret = fw_cfg_add_file(&m->fw_cfg, ACPI_RSDP_FILE, b->rsdp, sizeof(b->rsdp), err)) == 0) {
        ret = fw_cfg_add_file(&m->fw_cfg, ACPI_LOADER_FILE, loader, len, err);
    }
    free(loader);
    return ret;
}

/* The image a kernel boot copies to BOOT_ACPI_ADDR at every (re)load. */
static int keep_for_kernel(struct machine *m, struct acpi_blob *b, struct error *err)
{
    size_t len = RSDP_SPACE + b->len;
    if (len > BOOT_ACPI_SIZE) {
        return error_set(err, -E2BIG, "the ACPI tables (%zu bytes) do not fit the BIOS area", len);
    }
    m->acpi_image = calloc(1, len);
    if (!m->acpi_image) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    acpi_blob_place(b, BOOT_ACPI_ADDR + RSDP_SPACE);
    memcpy(m->acpi_image, b->rsdp, sizeof(b->rsdp));
    memcpy(m->acpi_image + RSDP_SPACE, b->tables, b->len);
    m->acpi_image_len = len;
    return 0;
}

int machine_build_acpi(struct machine *m, struct error *err)
{
    struct acpi_config cfg;
    struct acpi_blob b;
    uint32_t cold = cold_disk_slots(m);
    for (int slot = 1; slot < PCI_MAX_SLOTS; slot++) {
        if (cold & (1u << slot)) {
            acpi_pcihp_set_removable(&m->pcihp, slot);
        }
    }
    describe(m, &cfg);
    int ret = acpi_build(&b, &cfg, err);
    if (ret < 0) {
        return ret;
    }
    ret = m->cfg->bios ? give_firmware(m, &b, err) : keep_for_kernel(m, &b, err);
    acpi_blob_free(&b);
    return ret;
}

int machine_write_acpi(struct machine *m, struct error *err)
{
    if (!m->acpi_image) {
        return 0;
    }
    return guest_memory_write(&m->vm.mem, BOOT_ACPI_ADDR, m->acpi_image, m->acpi_image_len, err);
}

void machine_power_button(struct machine *m)
{
    acpi_pm_power_button(&m->acpi_pm);
}
