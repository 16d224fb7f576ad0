/* The virtio-pci modern transport (virtio 1.2 section 4.1): a PCI function
 * (vendor 0x1af4, device 0x1040 + id) whose BAR 0 holds the common, ISR,
 * device and notify structures and the MSI-X table. Queue notifies are
 * ioeventfds on the notify structure (moved when the BAR moves); MSI-X
 * vectors are irqfds on KVM MSI routes. Without MSI-X only the ISR bit is
 * set (no INTx line is wired: guests must use MSI-X or poll). */
#ifndef VIRTIO_VIRTIO_PCI_H
#define VIRTIO_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/pci.h"
#include "virtio/virtio_device.h"
#include "vmm/event_loop.h"
#include "vmm/vm.h"

#define VIRTIO_PCI_BAR_SIZE 0x8000
#define VIRTIO_PCI_COMMON 0x0000
#define VIRTIO_PCI_ISR 0x1000
#define VIRTIO_PCI_DEVICE 0x2000
#define VIRTIO_PCI_NOTIFY 0x3000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4
#define VIRTIO_PCI_MSIX_TABLE 0x4000
#define VIRTIO_PCI_MSIX_PBA 0x5000
#define VIRTIO_PCI_VECTORS (VIRTIO_MAX_QUEUES + 1)

struct msix_entry {
    uint32_t addr_lo;
    uint32_t addr_hi;
    uint32_t data;
    uint32_t ctrl;      /* bit 0: masked */
};

struct virtio_pci {
    struct pci_device pci;
    struct virtio_device *dev;
    struct vm *vm;              /* NULL in unit tests */
    struct event_loop *loop;
    uint64_t bar;               /* where BAR 0 is mapped, 0 when not */
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint16_t queue_sel;
    uint16_t msix_config;
    uint8_t isr;
    uint8_t msix_cap;
    uint8_t pci_cfg_cap;        /* VIRTIO_PCI_CAP_PCI_CFG: BAR access through config space */
    struct msix_entry msix[VIRTIO_PCI_VECTORS];
    uint32_t msix_pending;
    int vector_fd[VIRTIO_PCI_VECTORS];
    uint32_t vector_gsi[VIRTIO_PCI_VECTORS];
    bool vector_routed[VIRTIO_PCI_VECTORS];
    int notify_fd[VIRTIO_MAX_QUEUES];
    pthread_mutex_t msix_lock;
};

int virtio_pci_create(struct virtio_pci *p, struct virtio_device *dev, struct vm *vm, struct event_loop *loop,
                      struct error *err);
void virtio_pci_destroy(struct virtio_pci *p);
void virtio_pci_reset(struct virtio_pci *p);
uint64_t virtio_pci_bar_read(void *opaque, uint64_t offset, unsigned size);
void virtio_pci_bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

void virtio_pci_save(struct virtio_pci *p, struct state_buf *b);
int virtio_pci_load(struct virtio_pci *p, struct state_buf *b, struct error *err);

#endif
