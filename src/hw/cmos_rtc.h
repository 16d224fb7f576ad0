/* The MC146818 CMOS RTC (ports 0x70/0x71): wall-clock time in BCD from the
 * host clock plus a guest-set offset, and 128 bytes of NVRAM that carry the
 * memory size firmware reads. No periodic or alarm interrupts yet. */
#ifndef HW_CMOS_RTC_H
#define HW_CMOS_RTC_H

#include <pthread.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "vmm/device.h"

#define CMOS_PORT 0x70

struct cmos_rtc {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t nvram[128];
    int64_t offset_sec;     /* guest time minus host time */
};

void cmos_rtc_init(struct cmos_rtc *r, uint64_t low_ram, uint64_t high_ram);
void cmos_rtc_destroy(struct cmos_rtc *r);
uint64_t cmos_rtc_read(void *opaque, uint64_t offset, unsigned size);
void cmos_rtc_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
void cmos_rtc_save(struct cmos_rtc *r, struct state_buf *b);
int cmos_rtc_load(struct cmos_rtc *r, struct state_buf *b, struct error *err);
/* For the machine's device registry (dev: struct cmos_rtc). A reset keeps
 * the NVRAM and the clock, as a battery-backed chip does. */
#define CMOS_STATE_VERSION 1
extern const struct device_ops cmos_rtc_device_ops;

#endif
