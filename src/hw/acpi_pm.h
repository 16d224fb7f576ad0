/* The ACPI power management device of a PC (the fixed hardware the FADT
 * points at, at QEMU piix4's ports): PM1a event block (status/enable),
 * PM1a control (SCI_EN, SLP_TYP/SLP_EN: S5 powers the machine off), the
 * 3.579545 MHz PM timer and the GPE0 block (status/enable). The SCI is a
 * level interrupt (IRQ 9), raised while an enabled status bit is set.
 * The power button (system_powerdown) sets PWRBTN_STS; other devices
 * (PCI hotplug) raise general-purpose events. */
#ifndef HW_ACPI_PM_H
#define HW_ACPI_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "vmm/device.h"
#include "vmm/irq.h"

#define ACPI_PM1_EVT_PORT 0x600
#define ACPI_PM1_EVT_LEN 4
#define ACPI_PM1_CNT_PORT 0x604
#define ACPI_PM1_CNT_LEN 2
#define ACPI_PM_TIMER_PORT 0x608
#define ACPI_PM_BLOCK_LEN 12        /* event, control, timer: one port range */
#define ACPI_GPE0_PORT 0xafe0
#define ACPI_GPE0_LEN 4             /* 2 status bytes, 2 enable bytes */
#define ACPI_S5_SLP_TYP 5           /* the DSDT's _S5 */

#define ACPI_PM1_TMR_STS (1u << 0)
#define ACPI_PM1_PWRBTN_STS (1u << 8)
#define ACPI_PM1_WAK_STS (1u << 15)
#define ACPI_PM1_CNT_SCI_EN (1u << 0)
#define ACPI_PM1_CNT_SLP_EN (1u << 13)

struct acpi_pm {
    pthread_mutex_t lock;           /* the guest's vCPUs and the host (power button, hotplug) */
    struct irq_line sci;
    void (*power_off)(void *opaque);    /* the guest entered S5 */
    void *opaque;
    uint64_t (*clock_ns)(void);     /* the PM timer's time base; NULL: no timer */
    uint16_t pm1_sts, pm1_en, pm1_cnt;
    uint16_t gpe_sts, gpe_en;
    bool sci_level;
};

void acpi_pm_init(struct acpi_pm *pm, struct irq_line sci, void (*power_off)(void *), void *opaque,
                  uint64_t (*clock_ns)(void));
void acpi_pm_destroy(struct acpi_pm *pm);
/* The PM1a event, control and timer block (ACPI_PM1_EVT_PORT, 12 bytes). */
uint64_t acpi_pm_read(void *opaque, uint64_t offset, unsigned size);
void acpi_pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* The GPE0 block (ACPI_GPE0_PORT, 4 bytes). */
uint64_t acpi_gpe_read(void *opaque, uint64_t offset, unsigned size);
void acpi_gpe_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* The power button was pressed (QMP system_powerdown). */
void acpi_pm_power_button(struct acpi_pm *pm);
/* General-purpose event bit (0-15) happened: its status is set until the
 * guest clears it. */
void acpi_pm_gpe(struct acpi_pm *pm, unsigned bit);

#define ACPI_PM_STATE_VERSION 1
extern const struct device_ops acpi_pm_device_ops;

#endif
