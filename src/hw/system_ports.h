/* The small system ports a PC guest expects:
 *  - debug exit (QEMU isa-debug-exit compatible, iobase 0xf4, 4 bytes): a write
 *    of v ends the VM with exit status (v << 1) | 1, exactly as QEMU does, so a
 *    guest writing 0 exits with 1 and scripts can tell it from a clean power off (0);
 *  - i8042 keyboard controller (0x60, 0x64): command 0xfe pulses the reset line;
 *  - reset control register 0xcf9 (write 0x06 or 0x0e resets).
 * Power off is the ACPI PM device's (acpi_pm.h). */
#ifndef HW_SYSTEM_PORTS_H
#define HW_SYSTEM_PORTS_H

#include <stdint.h>

#include "state/state_buf.h"
#include "vmm/device.h"

#define DEBUG_EXIT_PORT 0xf4
#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define RESET_CONTROL_PORT 0xcf9

enum system_event { SYSTEM_EVENT_RESET, SYSTEM_EVENT_EXIT_CODE };

struct system_ports {
    void (*event)(void *opaque, enum system_event ev, int exit_code);
    void *opaque;
    /* i8042 */
    uint8_t i8042_command_byte;
    uint8_t i8042_output;
    uint8_t i8042_status;
    uint8_t i8042_pending_cmd;
};

void system_ports_init(struct system_ports *s, void (*event)(void *, enum system_event, int), void *opaque);
uint64_t debug_exit_read(void *opaque, uint64_t offset, unsigned size);
void debug_exit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size);
void i8042_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
uint64_t reset_control_read(void *opaque, uint64_t offset, unsigned size);
void reset_control_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

void system_ports_save(struct system_ports *s, struct state_buf *b);
int system_ports_load(struct system_ports *s, struct state_buf *b, struct error *err);
/* For the machine's device registry (dev: struct system_ports). */
#define SYSTEM_PORTS_STATE_VERSION 1
extern const struct device_ops system_ports_device_ops;

#endif
