/* The PC devices every machine has (COM1, CMOS RTC, the system ports, the
 * PCI host) and, with firmware, fw_cfg: wired to the port bus and
 * registered with the machine. */
#include "machine/machine_int.h"

#include <stdint.h>

static void system_event(void *opaque, enum system_event ev, int code)
{
    struct machine *m = opaque;
    switch (ev) {
    case SYSTEM_EVENT_RESET: vm_request(&m->vm, VM_REQ_RESET, 0); break;
    case SYSTEM_EVENT_EXIT_CODE: vm_request(&m->vm, VM_REQ_EXIT_CODE, code); break;
    }
}

static int register_pio(struct machine *m, uint64_t port, uint64_t len, bus_read_fn r, bus_write_fn w,
                        void *opaque, const char *name, struct error *err)
{
    return bus_register(&m->vm.pio, port, len, r, w, opaque, name, err);
}

/* 0xcf9 (reset control, byte access) sits inside the PCI config address
 * register's dword at 0xcf8, so one range serves both. */
static uint64_t pci_or_reset_read(void *opaque, uint64_t offset, unsigned size)
{
    struct machine *m = opaque;
    if (offset == 1 && size == 1) {
        return reset_control_read(&m->sys, 0, size);
    }
    return pci_host_io_read(&m->pci, offset, size);
}

static void pci_or_reset_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct machine *m = opaque;
    if (offset == 1 && size == 1) {
        reset_control_write(&m->sys, 0, size, value);
    } else {
        pci_host_io_write(&m->pci, offset, size, value);
    }
}

/* The IOAPIC inputs the DSDT's _PRT gives PCI's INTA-D. Record/replay has
 * no PCI devices (virtio on MMIO) and a PIC without those inputs. */
static void connect_pci_intx(struct machine *m)
{
    struct irq_line lines[PCI_INTX_PINS] = { { 0 } };
    for (unsigned i = 0; !m->replay && i < PCI_INTX_PINS; i++) {
        lines[i] = machine_irq_line(m, PCI_INTX_FIRST_GSI + i);
    }
    pci_host_set_intx_lines(&m->pci, lines);
}

int machine_add_pc_devices(struct machine *m, struct error *err)
{
    uint64_t low = guest_memory_low_size(&m->vm.mem);
    int ret;
    uart_init(&m->uart, machine_irq_line(m, UART_COM1_IRQ), m->console.out);
    if ((ret = machine_add_device(m, "uart", -1, &uart_device_ops, &m->uart, err)) < 0) {
        return ret;
    }
    cmos_rtc_init(&m->rtc, low, m->vm.mem.ram_size - low);
    if ((ret = machine_add_device(m, "cmos-rtc", -1, &cmos_rtc_device_ops, &m->rtc, err)) < 0) {
        return ret;
    }
    system_ports_init(&m->sys, system_event, m);
    if ((ret = machine_add_device(m, "system-ports", -1, &system_ports_device_ops, &m->sys, err)) < 0) {
        return ret;
    }
    pci_host_init(&m->pci);
    connect_pci_intx(m);
    if ((ret = machine_add_device(m, "pci-host", -1, &pci_host_device_ops, &m->pci, err)) < 0) {
        return ret;
    }
    if ((ret = register_pio(m, UART_COM1_BASE, 8, uart_read, uart_write, &m->uart, "COM1", err)) < 0 ||
        (ret = register_pio(m, DEBUG_EXIT_PORT, 4, debug_exit_read, debug_exit_write, &m->sys, "debug-exit", err)) < 0 ||
        /* Record/replay answers port 0x61, inside the i8042's range, from the exit clock. */
        (ret = m->replay ? machine_replay_add_i8042_port_b(m, err)
                         : register_pio(m, I8042_DATA_PORT, 5, i8042_read, i8042_write, &m->sys, "i8042", err)) < 0 ||
        (ret = register_pio(m, CMOS_PORT, 2, cmos_rtc_read, cmos_rtc_write, &m->rtc, "cmos", err)) < 0 ||
        (ret = register_pio(m, PCI_CONFIG_ADDRESS_PORT, 8, pci_or_reset_read, pci_or_reset_write, m, "pci", err)) < 0) {
        return ret;
    }
    return 0;
}

/* What SeaBIOS needs to know that CMOS cannot tell it. */
static int fill_fw_cfg(struct machine *m, struct fw_cfg *f, struct error *err)
{
    struct { uint64_t addr, size; uint32_t type; } __attribute__((packed)) e820[GUEST_MEM_MAX_REGIONS];
    int n = 0;
    for (int i = 0; i < m->vm.mem.count; i++) {
        e820[n].addr = m->vm.mem.regions[i].gpa;
        e820[n].size = m->vm.mem.regions[i].size;
        e820[n++].type = 1;
    }
    uint16_t sercon = UART_COM1_BASE, no_menu = 0;
    int ret;
    if ((ret = fw_cfg_add_u64(f, FW_CFG_RAM_SIZE, m->vm.mem.ram_size, err)) < 0 ||
        (ret = fw_cfg_add_u16(f, FW_CFG_NB_CPUS, (uint16_t)m->vm.ncpus, err)) < 0 ||
        (ret = fw_cfg_add_u16(f, FW_CFG_MAX_CPUS, (uint16_t)m->vm.ncpus, err)) < 0 ||
        (ret = fw_cfg_add_u16(f, FW_CFG_NOGRAPHIC, 1, err)) < 0 ||
        (ret = fw_cfg_add_file(f, "etc/e820", e820, sizeof(e820[0]) * (size_t)n, err)) < 0 ||
        (ret = fw_cfg_add_file(f, "etc/sercon-port", &sercon, sizeof(sercon), err)) < 0 ||
        (ret = fw_cfg_add_file(f, "etc/show-boot-menu", &no_menu, sizeof(no_menu), err)) < 0) {
        return ret;
    }
    return 0;
}

int machine_add_fw_cfg(struct machine *m, struct error *err)
{
    fw_cfg_init(&m->fw_cfg);
    int ret = machine_add_device(m, "fw-cfg", -1, &fw_cfg_device_ops, &m->fw_cfg, err);
    if (ret < 0) {
        fw_cfg_destroy(&m->fw_cfg);
        return ret;
    }
    if ((ret = fill_fw_cfg(m, &m->fw_cfg, err)) < 0) {
        return ret;
    }
    return register_pio(m, FW_CFG_PORT, 2, fw_cfg_read, fw_cfg_write, &m->fw_cfg, "fw_cfg", err);
}
