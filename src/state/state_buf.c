#include "state/state_buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void state_buf_init(struct state_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void state_buf_init_reader(struct state_buf *b, const void *data, size_t len)
{
    memset(b, 0, sizeof(*b));
    b->data = (uint8_t *)data;
    b->len = len;
}

void state_buf_free(struct state_buf *b)
{
    if (b->cap) {
        free(b->data);
    }
    memset(b, 0, sizeof(*b));
}

static void fail(struct state_buf *b, const char *fmt, ...)
{
    if (b->failed) {
        return;
    }
    b->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->failure, sizeof(b->failure), fmt, ap);
    va_end(ap);
}

int state_buf_error(const struct state_buf *b, struct error *err)
{
    if (!b->failed) {
        return 0;
    }
    return error_set(err, -EINVAL, "device state: %s", b->failure);
}

void state_put_bytes(struct state_buf *b, const void *p, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            fail(b, "out of memory");
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(struct state_buf *b, uint64_t v, unsigned n)
{
    uint8_t bytes[8];
    for (unsigned i = 0; i < n; i++) {
        bytes[i] = (uint8_t)(v >> (8 * i));
    }
    state_put_bytes(b, bytes, n);
}

void state_put_u8(struct state_buf *b, uint8_t v) { put_le(b, v, 1); }
void state_put_u16(struct state_buf *b, uint16_t v) { put_le(b, v, 2); }
void state_put_u32(struct state_buf *b, uint32_t v) { put_le(b, v, 4); }
void state_put_u64(struct state_buf *b, uint64_t v) { put_le(b, v, 8); }
void state_put_bool(struct state_buf *b, bool v) { put_le(b, v ? 1 : 0, 1); }

void state_get_bytes(struct state_buf *b, void *p, size_t n)
{
    if (b->failed || n > b->len - b->pos) {
        fail(b, "truncated (wanted %zu bytes at offset %zu)", n, b->pos);
        memset(p, 0, n);
        return;
    }
    memcpy(p, b->data + b->pos, n);
    b->pos += n;
}

static uint64_t get_le(struct state_buf *b, unsigned n)
{
    uint8_t bytes[8];
    state_get_bytes(b, bytes, n);
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v |= (uint64_t)bytes[i] << (8 * i);
    }
    return v;
}

uint8_t state_get_u8(struct state_buf *b) { return (uint8_t)get_le(b, 1); }
uint16_t state_get_u16(struct state_buf *b) { return (uint16_t)get_le(b, 2); }
uint32_t state_get_u32(struct state_buf *b) { return (uint32_t)get_le(b, 4); }
uint64_t state_get_u64(struct state_buf *b) { return get_le(b, 8); }
bool state_get_bool(struct state_buf *b) { return get_le(b, 1) != 0; }
