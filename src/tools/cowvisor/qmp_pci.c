/* query-pci: bus 0's functions decoded from their configuration space, as
 * QEMU 7.2 reports them. */
#include "qmp_int.h"

#include <stdint.h>
#include <stdlib.h>

#include "hw/pci.h"

uint32_t qmp_pci_config_le(const uint8_t *c, int off, int size)
{
    uint32_t v = 0;
    for (int i = size - 1; i >= 0; i--) {
        v = v << 8 | c[off + i];
    }
    return v;
}

const char *qmp_pci_class_desc(uint32_t class16)
{
    switch (class16) {
    case 0x0100: return "SCSI controller";
    case 0x0200: return "Ethernet controller";
    case 0x0600: return "Host bridge";
    case 0x0780: return "Communication controller";
    default: return NULL;
    }
}

static json_t *regions(const struct machine_pci_function *f)
{
    json_t *list = json_array();
    for (int bar = 0; bar < PCI_BARS; bar++) {
        if (!f->bar_size[bar]) {
            continue;
        }
        uint32_t reg = qmp_pci_config_le(f->config, PCI_BAR0 + 4 * bar, 4);
        bool io = reg & 1;
        json_t *o = json_pack("{s:i,s:s,s:I,s:I}", "bar", bar, "type", io ? "io" : "memory", "address",
                              (json_int_t)(reg & (io ? ~3u : ~15u)), "size", (json_int_t)f->bar_size[bar]);
        if (!io) {
            json_object_set_new(o, "prefetch", json_boolean(reg & 8));
            json_object_set_new(o, "mem_type_64", json_boolean(((reg >> 1) & 3) == 2));
        }
        json_array_append_new(list, o);
    }
    return list;
}

static json_t *device_info(const struct machine_pci_function *f)
{
    const uint8_t *c = f->config;
    uint32_t class16 = qmp_pci_config_le(c, PCI_CLASS_PROG + 1, 2);
    json_t *class_info = json_pack("{s:i}", "class", (int)class16);
    const char *desc = qmp_pci_class_desc(class16);
    if (desc) {
        json_object_set_new(class_info, "desc", json_string(desc));
    }
    json_t *id = json_pack("{s:i,s:i,s:i,s:i}", "device", (int)qmp_pci_config_le(c, PCI_DEVICE_ID, 2),
                           "vendor", (int)qmp_pci_config_le(c, PCI_VENDOR_ID, 2),
                           "subsystem", (int)qmp_pci_config_le(c, PCI_SUBSYSTEM_ID, 2),
                           "subsystem-vendor", (int)qmp_pci_config_le(c, PCI_SUBSYSTEM_VENDOR_ID, 2));
    json_t *o = json_pack("{s:i,s:i,s:i,s:o,s:o,s:i,s:s,s:o}", "bus", 0, "slot", f->slot, "function", 0,
                          "class_info", class_info, "id", id, "irq_pin", c[PCI_INTERRUPT_PIN], "qdev_id", "",
                          "regions", regions(f));
    if (c[PCI_INTERRUPT_PIN]) {
        json_object_set_new(o, "irq", json_integer(c[PCI_INTERRUPT_LINE]));
    }
    return o;
}

void qmp_query_pci(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    struct machine_pci_function *fns = calloc(PCI_MAX_SLOTS, sizeof(*fns));
    if (!fns) {
        qmp_fail(r, QMP_GENERIC, "out of memory");
        return;
    }
    int n = machine_pci_list(s->m, fns, PCI_MAX_SLOTS);
    json_t *devices = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(devices, device_info(&fns[i]));
    }
    free(fns);
    r->ret = json_pack("[{s:i,s:o}]", "bus", 0, "devices", devices);
}
