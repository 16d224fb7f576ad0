#include "replay/replay_exit_code.h"

#include <string.h>

size_t replay_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* A varint from p + *at (before end): 0, or -1 when it runs past end or
 * past 64 bits. */
static int varint_get(const uint8_t *p, size_t end, size_t *at, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; *at < end && shift < 64; shift += 7) {
        uint8_t b = p[(*at)++];
        if (shift == 63 && b > 1) {
            return -1;      /* bits past the 64th */
        }
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static uint64_t rotl1(uint64_t v) { return v << 1 | v >> 63; }
static uint64_t rotr1(uint64_t v) { return v >> 1 | v << 63; }
static uint64_t zigzag(uint64_t step) { return step << 1 ^ (uint64_t)((int64_t)step >> 63); }
static uint64_t unzigzag(uint64_t z) { return z >> 1 ^ (uint64_t)-(int64_t)(z & 1); }

size_t replay_exit_encode(const struct replay_exit *e, uint64_t *last_rip, uint8_t *p)
{
    size_t n = replay_varint_put(p, e->reason);
    n += replay_varint_put(p + n, e->size);
    n += replay_varint_put(p + n, zigzag(e->rip - *last_rip));
    for (int i = 0; i < 8; i++) {
        p[n++] = (uint8_t)(e->reg_hash >> (8 * i));
    }
    n += replay_varint_put(p + n, e->addr);
    n += replay_varint_put(p + n, rotl1(e->value));
    *last_rip = e->rip;
    return n;
}

int replay_exit_decode(const uint8_t *p, size_t len, uint64_t *last_rip, struct replay_exit *e)
{
    uint64_t reason, size, step, addr, value;
    size_t at = 0;
    if (varint_get(p, len, &at, &reason) < 0 || varint_get(p, len, &at, &size) < 0 || reason > UINT32_MAX ||
        size > UINT32_MAX || varint_get(p, len, &at, &step) < 0 || len - at < 8) {
        return -1;
    }
    memset(e, 0, sizeof(*e));
    for (int i = 0; i < 8; i++) {
        e->reg_hash |= (uint64_t)p[at++] << (8 * i);
    }
    if (varint_get(p, len, &at, &addr) < 0 || varint_get(p, len, &at, &value) < 0 || at != len) {
        return -1;
    }
    e->reason = (uint32_t)reason;
    e->size = (uint32_t)size;
    e->rip = *last_rip + unzigzag(step);
    e->addr = addr;
    e->value = rotr1(value);
    *last_rip = e->rip;
    return 0;
}
