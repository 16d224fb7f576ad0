#include "hw/cmos_rtc.h"
#include <stdbool.h>

#include <string.h>
#include <time.h>

#include "vmm/host_input.h"

enum { SEC = 0, MIN = 2, HOUR = 4, WDAY = 6, MDAY = 7, MON = 8, YEAR = 9,
       REG_A = 10, REG_B = 11, REG_C = 12, REG_D = 13, CENTURY = 0x32 };
#define REG_B_24H 0x02
#define REG_B_BINARY 0x04
#define REG_B_SET 0x80

static uint8_t to_bcd(int v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }
static int from_bcd(uint8_t v) { return (v >> 4) * 10 + (v & 15); }

static uint8_t encode(const struct cmos_rtc *r, int v)
{
    return (r->nvram[REG_B] & REG_B_BINARY) ? (uint8_t)v : to_bcd(v);
}

static int decode(const struct cmos_rtc *r, uint8_t v)
{
    return (r->nvram[REG_B] & REG_B_BINARY) ? v : from_bcd(v);
}

void cmos_rtc_init(struct cmos_rtc *r, uint64_t low_ram, uint64_t high_ram)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->nvram[REG_A] = 0x26;
    r->nvram[REG_B] = REG_B_24H;
    r->nvram[REG_D] = 0x80;     /* battery good */
    /* Memory sizes the way PC firmware reads them. */
    uint64_t ext_kb = low_ram > (1 << 20) ? (low_ram - (1 << 20)) / 1024 : 0;
    if (ext_kb > 0xffff) {
        ext_kb = 0xffff;
    }
    r->nvram[0x17] = r->nvram[0x30] = (uint8_t)ext_kb;
    r->nvram[0x18] = r->nvram[0x31] = (uint8_t)(ext_kb >> 8);
    uint64_t above16m = low_ram > (16 << 20) ? (low_ram - (16 << 20)) >> 16 : 0;
    r->nvram[0x34] = (uint8_t)above16m;
    r->nvram[0x35] = (uint8_t)(above16m >> 8);
    uint64_t above4g = high_ram >> 16;
    r->nvram[0x5b] = (uint8_t)above4g;
    r->nvram[0x5c] = (uint8_t)(above4g >> 8);
    r->nvram[0x5d] = (uint8_t)(above4g >> 16);
}

void cmos_rtc_destroy(struct cmos_rtc *r)
{
    pthread_mutex_destroy(&r->lock);
}

static void fill_time(struct cmos_rtc *r)
{
    time_t now = (time_t)(host_input_clock() + r->offset_sec);
    struct tm tm;
    gmtime_r(&now, &tm);
    r->nvram[SEC] = encode(r, tm.tm_sec);
    r->nvram[MIN] = encode(r, tm.tm_min);
    r->nvram[HOUR] = encode(r, tm.tm_hour);
    r->nvram[WDAY] = encode(r, tm.tm_wday + 1);
    r->nvram[MDAY] = encode(r, tm.tm_mday);
    r->nvram[MON] = encode(r, tm.tm_mon + 1);
    r->nvram[YEAR] = encode(r, tm.tm_year % 100);
    r->nvram[CENTURY] = encode(r, (tm.tm_year + 1900) / 100);
}

/* The guest set the clock: remember how far from the host clock it is. */
static void take_time(struct cmos_rtc *r)
{
    struct tm tm = {
        .tm_sec = decode(r, r->nvram[SEC]), .tm_min = decode(r, r->nvram[MIN]),
        .tm_hour = decode(r, r->nvram[HOUR]), .tm_mday = decode(r, r->nvram[MDAY]),
        .tm_mon = decode(r, r->nvram[MON]) - 1,
        .tm_year = decode(r, r->nvram[CENTURY]) * 100 + decode(r, r->nvram[YEAR]) - 1900,
    };
    time_t t = timegm(&tm);
    if (t != (time_t)-1) {
        r->offset_sec = (int64_t)t - host_input_clock();
    }
}

uint64_t cmos_rtc_read(void *opaque, uint64_t offset, unsigned size)
{
    struct cmos_rtc *r = opaque;
    uint8_t v = 0xff;
    pthread_mutex_lock(&r->lock);
    if (offset == 0) {
        v = r->index;
    } else if (offset == 1) {
        if (r->index <= YEAR || r->index == CENTURY) {
            if (!(r->nvram[REG_B] & REG_B_SET)) {
                fill_time(r);
            }
        }
        v = r->nvram[r->index];
        if (r->index == REG_C) {
            r->nvram[REG_C] = 0;    /* reading C acknowledges */
        }
    }
    pthread_mutex_unlock(&r->lock);
    return v;
}

void cmos_rtc_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct cmos_rtc *r = opaque;
    uint8_t v = (uint8_t)value;
    pthread_mutex_lock(&r->lock);
    if (offset == 0) {
        r->index = v & 0x7f;    /* bit 7 is the NMI mask */
    } else if (offset == 1 && r->index != REG_C && r->index != REG_D) {
        bool was_set = r->nvram[REG_B] & REG_B_SET;
        r->nvram[r->index] = v;
        if (r->index == REG_B && was_set && !(v & REG_B_SET)) {
            take_time(r);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

void cmos_rtc_save(struct cmos_rtc *r, struct state_buf *b)
{
    pthread_mutex_lock(&r->lock);
    state_put_u8(b, r->index);
    state_put_bytes(b, r->nvram, sizeof(r->nvram));
    state_put_u64(b, (uint64_t)r->offset_sec);
    pthread_mutex_unlock(&r->lock);
}

int cmos_rtc_load(struct cmos_rtc *r, struct state_buf *b, struct error *err)
{
    uint8_t nvram[128];
    uint8_t index = state_get_u8(b);
    state_get_bytes(b, nvram, sizeof(nvram));
    int64_t offset = (int64_t)state_get_u64(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        pthread_mutex_lock(&r->lock);
        r->index = index & 0x7f;
        memcpy(r->nvram, nvram, sizeof(nvram));
        r->offset_sec = offset;
        pthread_mutex_unlock(&r->lock);
    }
    return ret;
}

static int cmos_rtc_save_op(void *dev, struct state_buf *b, struct error *err)
{
    cmos_rtc_save(dev, b);
    return state_buf_error(b, err);
}

static int cmos_rtc_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    return cmos_rtc_load(dev, b, err);
}

static void cmos_rtc_destroy_op(void *dev)
{
    cmos_rtc_destroy(dev);
}

const struct device_ops cmos_rtc_device_ops = {
    .version = CMOS_STATE_VERSION,
    .save = cmos_rtc_save_op,
    .load = cmos_rtc_load_op,
    .destroy = cmos_rtc_destroy_op,
};
