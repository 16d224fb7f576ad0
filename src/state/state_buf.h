/* A byte buffer for one device's state: little-endian fields, no framing
 * (the VM-state stream names the device and carries its version). Reads
 * past the end never crash: they set an error that state_buf_error()
 * reports, and return zeros; bytes left unread (fields a newer writer
 * appended) are ignored. */
#ifndef STATE_STATE_BUF_H
#define STATE_STATE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct state_buf {
    uint8_t *data;
    size_t len;         /* bytes written (writer) or available (reader) */
    size_t cap;
    size_t pos;         /* read position */
    bool failed;
    char failure[256];
};

void state_buf_init(struct state_buf *b);
/* A reader over existing bytes (not copied; must outlive the reader). */
void state_buf_init_reader(struct state_buf *b, const void *data, size_t len);
void state_buf_free(struct state_buf *b);
/* 0 when all reads/writes so far succeeded, else -EINVAL with the reason in err. */
int state_buf_error(const struct state_buf *b, struct error *err);

/* Writer. */
void state_put_u8(struct state_buf *b, uint8_t v);
void state_put_u16(struct state_buf *b, uint16_t v);
void state_put_u32(struct state_buf *b, uint32_t v);
void state_put_u64(struct state_buf *b, uint64_t v);
void state_put_bool(struct state_buf *b, bool v);
void state_put_bytes(struct state_buf *b, const void *p, size_t n);

/* Reader. */
uint8_t state_get_u8(struct state_buf *b);
uint16_t state_get_u16(struct state_buf *b);
uint32_t state_get_u32(struct state_buf *b);
uint64_t state_get_u64(struct state_buf *b);
bool state_get_bool(struct state_buf *b);
void state_get_bytes(struct state_buf *b, void *p, size_t n);

#endif
