/* PCI bus 0 behind a host bridge with configuration mechanism #1 (ports
 * 0xcf8/0xcfc). Devices have 256 bytes of config space with write masks,
 * up to six 32-bit BARs and a capability list; the host moves their BAR
 * windows when the guest reprograms a BAR or the command register. The VMM
 * pre-assigns BARs from a window in the PCI hole (firmware may move them). */
#ifndef HW_PCI_H
#define HW_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "util/error.h"
#include "vmm/device.h"
#include "vmm/irq.h"

#define PCI_CONFIG_ADDRESS_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT 0xcfc
#define PCI_MAX_SLOTS 32
#define PCI_BARS 6
#define PCI_MMIO_WINDOW_START 0xe0000000ull
#define PCI_MMIO_WINDOW_END   0xfec00000ull

#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_INTX_PINS 4
#define PCI_INTX_FIRST_GSI 20   /* the IOAPIC inputs INTA-D reach (the DSDT's _PRT) */

/* The GSI that pin (1 = INTA .. 4 = INTD) of a device in slot reaches:
 * 20 + (slot + pin - 1) % 4, as QEMU q35's GSI mode swizzles. */
unsigned pci_intx_gsi(int slot, int pin);

struct pci_device;

struct pci_device_ops {
    /* A memory BAR moved: old/new are 0 when it was/becomes unmapped. */
    void (*bar_remap)(struct pci_device *d, int bar, uint64_t old_addr, uint64_t new_addr);
    /* After the guest wrote config space (the value is already stored). */
    void (*config_written)(struct pci_device *d, uint32_t offset, unsigned size);
    /* Before the guest reads config space: a chance to refresh the bytes. */
    void (*config_reading)(struct pci_device *d, uint32_t offset, unsigned size);
};

struct pci_device {
    uint8_t config[256];
    uint8_t wmask[256];
    uint32_t bar_size[PCI_BARS];    /* 0: no BAR */
    uint64_t bar_mapped[PCI_BARS];  /* where the window is now, 0 when not mapped */
    const struct pci_device_ops *ops;
    void *opaque;
    int slot;
    uint8_t cap_end;                /* where the next capability goes */
    /* Legacy INTx (a driver without MSI-X): the host's shared line its
     * pin reaches from its slot (set by pci_host_add). */
    struct irq_line intx;
    int intx_level;                 /* what the device asks (atomic) */
    int intx_out;                   /* what it drives now (atomic) */
};

struct pci_host {
    pthread_mutex_t lock;
    uint32_t address;
    struct pci_device *slots[PCI_MAX_SLOTS];
    struct pci_device bridge;
    uint64_t mmio_start, mmio_end;  /* where BARs are assigned: [start, end) */
    /* INTA-D's four IOAPIC inputs, each shared by the devices whose pins
     * reach it: high while any of them drives it (intx_count). */
    struct irq_line intx_lines[PCI_INTX_PINS];
    int intx_count[PCI_INTX_PINS];
    pthread_mutex_t intx_lock;
};

void pci_host_init(struct pci_host *h);
/* The interrupt lines GSIs 20-23 are (lines[i]: GSI 20 + i); devices
 * added later drive them through their pins. */
void pci_host_set_intx_lines(struct pci_host *h, const struct irq_line lines[PCI_INTX_PINS]);
void pci_host_destroy(struct pci_host *h);
uint64_t pci_host_io_read(void *opaque, uint64_t offset, unsigned size);
void pci_host_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

void pci_device_init(struct pci_device *d, uint16_t vendor, uint16_t device, uint32_t class_code,
                     uint8_t revision, const struct pci_device_ops *ops, void *opaque);
/* The device raises (1) or lowers (0) its INTx pin: the line follows
 * unless the command register's INTx Disable is set; the status
 * register's Interrupt Status shows it either way (PCI 3.0 6.2.2-3). */
void pci_set_intx(struct pci_device *d, int level);

/* Adds a capability of len bytes (id and next pointer included); returns its offset or 0. */
uint8_t pci_add_capability(struct pci_device *d, uint8_t id, uint8_t len);
/* Declares a 32-bit memory BAR (size a power of two >= 4 KiB). */
void pci_set_bar(struct pci_device *d, int bar, uint32_t size);
/* Places d in the first free slot and pre-assigns its BARs in the lowest
 * free space of the window (-ENOSPC when full); space a removed device's
 * BARs held is reused. */
int pci_host_add(struct pci_host *h, struct pci_device *d, struct error *err);

/* The first free slot (-ENOSPC when none), and taking d out of its slot
 * (hot-unplug: its BARs are unmapped first). */
int pci_host_free_slot(struct pci_host *h);
void pci_host_remove(struct pci_host *h, struct pci_device *d);

/* Config access as the guest does it (also used by tests). */
uint32_t pci_config_read(struct pci_device *d, uint32_t offset, unsigned size);
void pci_config_write(struct pci_device *d, uint32_t offset, unsigned size, uint32_t value);

void pci_device_save(struct pci_device *d, struct state_buf *b);
int pci_device_load(struct pci_device *d, struct state_buf *b, struct error *err);
/* The host bridge's own state (the config address register); each
 * device behind it saves its config space itself. */
void pci_host_save(struct pci_host *h, struct state_buf *b);
int pci_host_load(struct pci_host *h, struct state_buf *b, struct error *err);
/* For the machine's device registry (dev: struct pci_host). */
#define PCI_HOST_STATE_VERSION 1
extern const struct device_ops pci_host_device_ops;

#endif
