/* The replay log: what a recorded run took from the outside world, keyed by
 * the exit ordinal (the count of synchronous vCPU exits: the replay clock).
 *
 * File format, version 3, integers little endian:
 *   header  "COWRPLAY" | u32 version | u32 start (REPLAY_START_*)
 *           | u64 config hash | u64 kernel hash | u64 disk hash
 *           | u16 n | n bytes: the starting point's name (snapshot dir or
 *             savevm name; empty for boot) | u32 check of all before
 *   events  u8 kind | varint exit ordinal - the previous event's | varint
 *           len | len bytes | u32 check of the event's bytes before; len is
 *           at most REPLAY_MAX_PAYLOAD; an exit's payload is its record
 *           coded as replay_exit_code.h says (the reader gives it back as a
 *           struct replay_exit), the others' as below
 *   end     an event of kind REPLAY_EV_END whose payload is the u64 count
 *           of events before it; nothing may follow.
 * Version 3's checks are the low 32 bits of XXH3-64, and its hashes (the
 * header's, an exit's register hash) are replay_hash: XXH3, a word at a
 * time. Version 2 (still read and replayed): events are u8 kind | u64 exit
 * ordinal | u32 len | len bytes (an exit: struct replay_exit as it is in
 * memory) | u32 check, its checks zlib's crc32 and its hashes
 * replay_hash_v2 (a byte at a time); version 1 is version 2 without
 * SNAPSHOT and STATUS events. This cowvisor writes version 3.
 * A reader refuses anything else with a message naming the byte offset. */
#ifndef REPLAY_REPLAY_LOG_H
#define REPLAY_REPLAY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define REPLAY_LOG_VERSION 3
#define REPLAY_MAX_NAME 4096
/* A network frame with its virtio-net header is the largest event. */
#define REPLAY_MAX_PAYLOAD (65536 + 64)

enum replay_start { REPLAY_START_BOOT = 0, REPLAY_START_RESTORE = 1, REPLAY_START_LOADVM = 2 };

enum replay_event_kind {
    /* Host inputs through the seam (vmm/host_input.h), in the order devices took them. */
    REPLAY_EV_CLOCK = 1,        /* i64 seconds */
    REPLAY_EV_ENTROPY = 2,      /* the bytes */
    REPLAY_EV_CONSOLE = 3,      /* the bytes */
    REPLAY_EV_NET = 4,          /* the frame */
    REPLAY_EV_BLOCK = 5,        /* struct replay_block */
    /* What the VMM does at an exit. */
    REPLAY_EV_EXIT = 6,         /* struct replay_exit: checked by replay */
    REPLAY_EV_IRQ = 7,          /* u32 line or vector the VMM injected at this exit */
    /* Time travel: a snapshot of the machine at this exit and this point of
     * the log. u64 recording id | its directory, relative to the log's. */
    REPLAY_EV_SNAPSHOT = 8,
    /* How the recorded run ended: i32 exit status (<0: a negative errno,
     * the run failed) | the failure's message. Last before the end. */
    REPLAY_EV_STATUS = 9,
    REPLAY_EV_END = 255,        /* u64 count of events before */
};

struct replay_header {
    uint32_t version;
    uint32_t start;             /* enum replay_start */
    uint64_t config_hash;
    uint64_t kernel_hash;
    uint64_t disk_hash;
    char name[REPLAY_MAX_NAME + 1];
};

/* A block completion as logged: devices by order of first completion. */
struct replay_block {
    uint32_t device;
    uint32_t head;
    uint32_t len;
};

/* What a synchronous exit looked like: replay compares every field. */
struct replay_exit {
    uint32_t reason;            /* KVM_EXIT_* */
    uint32_t size;              /* access size (0: none) */
    uint64_t rip;
    uint64_t reg_hash;          /* of the general registers */
    uint64_t addr;              /* port or guest-physical address */
    uint64_t value;             /* written, or returned to the guest */
};

struct replay_event {
    uint8_t kind;
    uint64_t ordinal;
    uint32_t len;
    uint8_t *data;              /* the reader's buffer: valid until the next read */
};

const char *replay_event_kind_name(unsigned kind);

/* A 64-bit hash (not cryptographic) for configurations, images, registers:
 * version 3's (XXH3). */
uint64_t replay_hash(uint64_t seed, const void *data, size_t len);
/* Versions 1 and 2's, a byte at a time: only to replay their logs. */
uint64_t replay_hash_v2(uint64_t seed, const void *data, size_t len);
typedef uint64_t replay_hash_fn(uint64_t seed, const void *data, size_t len);
/* The hash a log of this version was written with. */
replay_hash_fn *replay_hash_of(uint32_t version);
/* Of a whole file's content, as a log of this version hashes it; 0 for
 * path == NULL. */
int replay_hash_file(const char *path, uint32_t version, uint64_t *out, struct error *err);
/* The version of the log in the file at path, to hash this run's
 * configuration and exits as it did; REPLAY_LOG_VERSION when the file is
 * no log this cowvisor reads (the reader refuses it, saying why). */
uint32_t replay_log_version_of(const char *path);

/* The writer buffers; events go to fd in order. Not thread safe. */
struct replay_writer {
    int fd;
    uint8_t *buf;
    size_t used;
    uint64_t events;
    uint64_t last_ordinal;
    uint64_t last_rip;          /* of the last exit: the next one's is coded as the step */
    uint64_t bytes;
    int failed;                 /* first write error (negative errno) */
};

int replay_writer_begin(struct replay_writer *w, int fd, const struct replay_header *h, struct error *err);
int replay_writer_event(struct replay_writer *w, uint8_t kind, uint64_t ordinal, const void *data, uint32_t len,
                        struct error *err);
/* Writes the end record and flushes; the writer is freed either way. */
int replay_writer_finish(struct replay_writer *w, struct error *err);
void replay_writer_free(struct replay_writer *w);

struct replay_reader {
    int fd;
    uint8_t *buf;               /* read buffer */
    size_t have, pos;
    uint64_t offset;            /* of buf[pos] in the file */
    bool eof;
    bool ended;                 /* the end record was read */
    uint32_t version;           /* the header's */
    uint64_t events;
    uint64_t last_ordinal;
    uint64_t last_rip;          /* version 3: of the last exit */
    uint8_t *event;             /* an event's head and payload as stored, one check over them */
    struct replay_exit exit;    /* version 3: the last exit record, decoded */
};

int replay_reader_begin(struct replay_reader *r, int fd, struct replay_header *h, struct error *err);
/* 1: *ev is the next event; 0: the end record (valid, nothing after it); <0: refused. */
int replay_reader_next(struct replay_reader *r, struct replay_event *ev, struct error *err);
void replay_reader_free(struct replay_reader *r);

#endif
