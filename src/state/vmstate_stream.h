/* The VM-state stream: what a snapshot of a running VM is made of, written
 * to a file, to the qcow2 VM-state area or anywhere else that takes bytes
 * at an offset. Layout (all integers little-endian):
 *
 *   header   "COWVMSTA" | u32 version | u32 crc32 of the 12 bytes before
 *   section  char name[32] | u32 version | u64 payload length
 *            | u32 crc32 of the 44 header bytes before | payload
 *            | u32 crc32 of the payload
 *   ...      the last section is called "end" and is empty.
 *
 * Readers refuse another magic, another stream version, and any section
 * whose header or payload checksum does not match, naming it.
 *
 * Writers and readers go through the stream once, front to back: a stream
 * that cannot seek (a pipe, a socket: vmstate_pipe_io) carries the same
 * bytes as a file. */
#ifndef STATE_VMSTATE_STREAM_H
#define STATE_VMSTATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define VMSTATE_MAGIC "COWVMSTA"
/* Version 2: each device section holds the device's fields only, its name
 * and version being the section's (version 1 nested a second header). */
#define VMSTATE_VERSION 2
#define VMSTATE_NAME_LEN 32
#define VMSTATE_HEADER_SIZE 16
#define VMSTATE_SECTION_HEADER_SIZE 48

/* Where the stream lives. Writes and reads come in stream order; pos is
 * where they are in the stream (a sequential stream may ignore it). */
struct vmstate_io {
    int (*write)(void *opaque, uint64_t pos, const void *buf, size_t len, struct error *err);
    int (*read)(void *opaque, uint64_t pos, void *buf, size_t len, struct error *err);
    void *opaque;
    bool sequential;        /* reads must not ask for bytes beyond what the reader needs */
};

/* A file as a vmstate_io, at offset pos (opaque points at the int). */
struct vmstate_io vmstate_fd_io(int *fd);
/* A pipe or socket as a sequential vmstate_io (opaque points at the int). */
struct vmstate_io vmstate_pipe_io(int *fd);

struct vmstate_writer {
    struct vmstate_io io;
    uint64_t pos;               /* where the buffer's first byte goes */
    uint8_t *buf;
    size_t buf_len, buf_cap;
    bool in_section;
    uint64_t section_left;      /* payload bytes still to come */
    uint32_t crc;
    char section[VMSTATE_NAME_LEN + 1];
    int failed;                 /* first error, sticky */
};

int vmstate_writer_begin(struct vmstate_writer *w, struct vmstate_io io, struct error *err);
/* Opens a section whose payload will be exactly len bytes. */
int vmstate_section_begin(struct vmstate_writer *w, const char *name, uint32_t version, uint64_t len,
                          struct error *err);
int vmstate_section_write(struct vmstate_writer *w, const void *data, size_t len, struct error *err);
int vmstate_section_end(struct vmstate_writer *w, struct error *err);
/* A whole section at once. */
int vmstate_write_section(struct vmstate_writer *w, const char *name, uint32_t version, const void *data,
                          size_t len, struct error *err);
/* Sends what is buffered (a migration's requested page must not wait for
 * the buffer to fill). */
int vmstate_writer_flush(struct vmstate_writer *w, struct error *err);
/* Writes the end section and flushes; returns the stream's total size or <0. */
int64_t vmstate_writer_finish(struct vmstate_writer *w, struct error *err);
void vmstate_writer_free(struct vmstate_writer *w);

struct vmstate_reader {
    struct vmstate_io io;
    uint64_t pos;               /* of the next byte the caller gets */
    uint64_t limit;             /* stream size when known (UINT64_MAX: unknown) */
    uint8_t *buf;
    uint64_t buf_pos;           /* stream offset of buf[0] */
    size_t buf_len, buf_cap;
    char section[VMSTATE_NAME_LEN + 1];
    uint32_t section_version;
    uint64_t section_left;
    uint32_t crc;
    int pending;                /* 1 + the result of a header given back, 0: none */
};

/* limit: bytes available (the file size) or UINT64_MAX. */
int vmstate_reader_begin(struct vmstate_reader *r, struct vmstate_io io, uint64_t limit, struct error *err);
/* Reads the next section header: 0 and its name/version/length, 1 at the
 * end section, <0 on errors. The previous section must have been consumed
 * (or skipped with vmstate_section_skip). */
int vmstate_next_section(struct vmstate_reader *r, struct error *err);
/* Gives the section header just read back: the next vmstate_next_section
 * returns it again. Only before any of its payload was read; lets a reader
 * of one part of the stream stop where another part begins. */
void vmstate_section_unread(struct vmstate_reader *r, int result);
int vmstate_section_read(struct vmstate_reader *r, void *data, size_t len, struct error *err);
/* Reads what is left of the payload (checking it) and the payload checksum. */
int vmstate_section_finish(struct vmstate_reader *r, struct error *err);
/* Next section must be name (version <= max_version): its whole payload into
 * a malloc'd buffer of at most max_len bytes, checked. */
int vmstate_read_section(struct vmstate_reader *r, const char *name, uint32_t max_version, uint64_t max_len,
                         uint8_t **data, size_t *len, uint32_t *version, struct error *err);
void vmstate_reader_free(struct vmstate_reader *r);

#endif
