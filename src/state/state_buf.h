/* A simple versioned byte buffer for device state: every device writes one
 * section (name + version + length) with little-endian fields, and reads it
 * back checking name and version. Snapshots and migration are built on this.
 * Reads past the end of a section or a buffer never crash: they set an error
 * that state_buf_error() reports, and return zeros. */
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
    size_t section_start;   /* writer: offset of the open section's length field */
    size_t section_end;     /* reader: end of the open section */
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
void state_section_begin(struct state_buf *b, const char *name, uint32_t version);
void state_section_end(struct state_buf *b);
void state_put_u8(struct state_buf *b, uint8_t v);
void state_put_u16(struct state_buf *b, uint16_t v);
void state_put_u32(struct state_buf *b, uint32_t v);
void state_put_u64(struct state_buf *b, uint64_t v);
void state_put_bool(struct state_buf *b, bool v);
void state_put_bytes(struct state_buf *b, const void *p, size_t n);

/* Reader: opens the next section, which must be called name and have a
 * version <= max_version; returns its version (0 on failure). */
uint32_t state_section_open(struct state_buf *b, const char *name, uint32_t max_version);
/* Skips what is left of the section (newer writers may append fields). */
void state_section_close(struct state_buf *b);
uint8_t state_get_u8(struct state_buf *b);
uint16_t state_get_u16(struct state_buf *b);
uint32_t state_get_u32(struct state_buf *b);
uint64_t state_get_u64(struct state_buf *b);
bool state_get_bool(struct state_buf *b);
void state_get_bytes(struct state_buf *b, void *p, size_t n);

#endif
