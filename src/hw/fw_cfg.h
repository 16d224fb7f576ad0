/* QEMU's firmware configuration interface (docs/specs/fw_cfg.txt), the
 * traditional port interface only: a 16-bit selector at 0x510 and a byte
 * data port at 0x511. SeaBIOS reads RAM size, CPU count and named files
 * (the e820 map, the boot order, the serial console port) from it. */
#ifndef HW_FW_CFG_H
#define HW_FW_CFG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "util/error.h"
#include "vmm/device.h"

#define FW_CFG_PORT 0x510
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID 0x01
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NOGRAPHIC 0x04
#define FW_CFG_NB_CPUS 0x05
#define FW_CFG_MAX_CPUS 0x0f
#define FW_CFG_FILE_DIR 0x19
#define FW_CFG_FILE_FIRST 0x20
#define FW_CFG_MAX_ITEMS 64

struct fw_cfg_item {
    uint16_t key;
    char name[56];      /* empty for numbered items */
    uint8_t *data;
    size_t len;
};

struct fw_cfg {
    pthread_mutex_t lock;
    struct fw_cfg_item items[FW_CFG_MAX_ITEMS];
    int count;
    uint16_t selector;
    size_t offset;
    int nfiles;
};

void fw_cfg_init(struct fw_cfg *f);
void fw_cfg_destroy(struct fw_cfg *f);
int fw_cfg_add(struct fw_cfg *f, uint16_t key, const void *data, size_t len, struct error *err);
int fw_cfg_add_u16(struct fw_cfg *f, uint16_t key, uint16_t v, struct error *err);
int fw_cfg_add_u32(struct fw_cfg *f, uint16_t key, uint32_t v, struct error *err);
int fw_cfg_add_u64(struct fw_cfg *f, uint16_t key, uint64_t v, struct error *err);
/* Adds a named file (and rebuilds the file directory). */
int fw_cfg_add_file(struct fw_cfg *f, const char *name, const void *data, size_t len, struct error *err);
uint64_t fw_cfg_read(void *opaque, uint64_t offset, unsigned size);
void fw_cfg_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
void fw_cfg_save(struct fw_cfg *f, struct state_buf *b);
int fw_cfg_load(struct fw_cfg *f, struct state_buf *b, struct error *err);
/* For the machine's device registry (dev: struct fw_cfg). Its items are
 * the machine's configuration, rebuilt by the machine: only the guest's
 * position (selector, offset) is state. */
#define FW_CFG_STATE_VERSION 1
extern const struct device_ops fw_cfg_device_ops;

#endif
