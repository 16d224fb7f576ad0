/* A file on the host that an image lives in: positioned I/O that never
 * returns short, sync, size, and the fallocate family. */
#ifndef BLOCK_HOSTFILE_H
#define BLOCK_HOSTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "block/blkdebug.h"
#include "util/error.h"

struct hostfile;

/* A protocol node that is not a host file (null-co, ...): format drivers
 * do their I/O through the hostfile_* calls, which hand it to these. */
struct hostfile_protocol {
    const char *name;
    int (*pread)(struct hostfile *f, uint64_t off, void *buf, size_t len);
    int (*pwrite)(struct hostfile *f, uint64_t off, const void *buf, size_t len);
    int (*flush)(struct hostfile *f);
    int64_t (*size)(struct hostfile *f);
    int (*truncate)(struct hostfile *f, uint64_t size);
    int (*zero_range)(struct hostfile *f, uint64_t off, uint64_t len, bool may_unmap);
    /* An advisory discard (NULL: a discard zeroes with may_unmap). */
    int (*discard)(struct hostfile *f, uint64_t off, uint64_t len);
    /* Block status of the node: BDEV_STATUS_DATA / _ZERO flags for a run. */
    int (*status)(struct hostfile *f, uint64_t off, uint64_t len, unsigned *flags,
                  uint64_t *run);
    void (*close)(struct hostfile *f);
};

struct hostfile {
    const struct hostfile_protocol *proto;  /* NULL: a host file (fd) */
    void *proto_state;
    int fd;
    char *filename;
    bool read_only;
    bool direct;        /* O_DIRECT: unaligned requests go through a bounce buffer */
    bool no_nowait;     /* the kernel refused RWF_NOWAIT once: do not try again */
    bool no_nowait_write;   /* the same for buffered writes */
    bool no_flush;      /* cache=unsafe: hostfile_flush does nothing */
    pthread_rwlock_t rmw_lock;  /* direct mode: read-modify-write excludes other writes */
    bool locked;        /* registered with hostfile_lock */
    dev_t dev;
    ino_t ino;
    struct blkdebug *dbg;   /* blkdebug filter over the file (owned), or NULL */
    /* Writes that reached the file, and the count a successful flush last
     * covered: a flush with nothing written since is skipped, as QEMU does
     * (a tool that only read an image does not fdatasync it at close).
     * Atomic. */
    uint64_t write_gen, flushed_gen;
    /* A failed fdatasync, for good: the kernel reports a writeback error
     * once, so a retry would succeed over lost writes. As QEMU's
     * file-posix (page_cache_inconsistent), every later flush fails. */
    bool sync_failed;
    /* Discards the file took or refused (hostfile_discard), as QEMU's
     * file-posix counts them for query-blockstats. Atomic. */
    uint64_t discard_nb_ok, discard_nb_failed, discard_bytes_ok;
    /* End of the furthest write or zero write to the file, metadata
     * included, failed ones too (QEMU's wr_highest_offset of a file node;
     * discards do not count). Atomic. */
    uint64_t wr_highest_offset;
};

/* *highest = max(*highest, end), atomically (QEMU's stat64_max). */
static inline void hostfile_atomic_max(uint64_t *highest, uint64_t end)
{
    uint64_t cur = __atomic_load_n(highest, __ATOMIC_RELAXED);
    while (cur < end && !__atomic_compare_exchange_n(highest, &cur, end, true, __ATOMIC_RELAXED,
                                                     __ATOMIC_RELAXED)) {
    }
}

/* A point of the format driver blkdebug rules may react to (BLKDBG_EVENT). */
static inline void hostfile_event(struct hostfile *f, enum blkdebug_event ev)
{
    if (f->dbg) {
        blkdebug_event(f->dbg, ev);
    }
}

/* QEMU's block permissions, as its image locks number them. */
enum {
    HOSTFILE_PERM_READ            = 1u << 0,    /* "consistent read" */
    HOSTFILE_PERM_WRITE           = 1u << 1,
    HOSTFILE_PERM_WRITE_UNCHANGED = 1u << 2,
    HOSTFILE_PERM_RESIZE          = 1u << 3,
    HOSTFILE_PERM_ALL             = 0xf,
};

/* The path an explicit "file:" prefix names, as QEMU's
 * bdrv_parse_filename_strip_prefix gives it ("./" before a path whose colon
 * would read as a protocol prefix): NULL without the prefix, else malloc'd. */
char *hostfile_strip_prefix(const char *filename);
int hostfile_open(struct hostfile **out, const char *filename, bool read_only, bool direct,
                  struct error *err);
/* Creates (or truncates) a file for a new image, locked as QEMU's create
 * locks it: refused while another process uses the image. */
int hostfile_create(struct hostfile **out, const char *filename, struct error *err);
void hostfile_close(struct hostfile *f);

/* Takes QEMU's image locks for using the permissions perm while sharing
 * shared with other processes; -EAGAIN with QEMU's message ("Failed to get
 * "write" lock") when another process conflicts, or another user of the file
 * in this process unless share_own (a reopen of an image this process already
 * uses). hostfile_close releases them. */
int hostfile_lock(struct hostfile *f, unsigned perm, unsigned shared, bool share_own,
                  struct error *err);
void hostfile_unlock(struct hostfile *f);

/* Reads past the end of the file return zeros, as a sparse file would. */
int hostfile_pread(struct hostfile *f, uint64_t off, void *buf, size_t len);
/* Like hostfile_pread when the page cache holds every byte; -EAGAIN (part of
 * buf may be filled) when the read would have to wait for the disk, and
 * always with O_DIRECT. */
int hostfile_pread_nowait(struct hostfile *f, uint64_t off, void *buf, size_t len);
int hostfile_pwrite(struct hostfile *f, uint64_t off, const void *buf, size_t len);
/* Like hostfile_pwrite when the page cache takes the write: RWF_NOWAIT
 * where the filesystem honours it on buffered writes. Where it does not
 * (ext4 answers -EOPNOTSUPP, remembered), whole pages only, written
 * plainly: they need no read of the old page, and wait at most on the
 * kernel's dirty-page throttling, as any buffered writer. -EAGAIN for the
 * rest and always with O_DIRECT; part of the range may be written. */
int hostfile_pwrite_nowait(struct hostfile *f, uint64_t off, const void *buf, size_t len);
int hostfile_flush(struct hostfile *f);
int64_t hostfile_size(struct hostfile *f);
int hostfile_truncate(struct hostfile *f, uint64_t size);
/* Allocates blocks for a range (preallocation=falloc), or writes zeros where
 * fallocate is not supported and full is true. */
int hostfile_allocate(struct hostfile *f, uint64_t off, uint64_t len, bool full);
/* Makes a range read as zeros; may deallocate it. */
int hostfile_zero_range(struct hostfile *f, uint64_t off, uint64_t len, bool may_unmap);
/* A format driver gives a range back to the host (it reads as zeros
 * after), counted as a discard. */
int hostfile_discard(struct hostfile *f, uint64_t off, uint64_t len);
/* Bytes of the host file system the file occupies. */
int64_t hostfile_allocated_bytes(struct hostfile *f);
/* Whether off starts data or a hole, and how long that run is (SEEK_DATA/HOLE). */
int hostfile_data_run(struct hostfile *f, uint64_t off, uint64_t len, bool *is_data, uint64_t *run);
/* The same as BDEV_STATUS_DATA / BDEV_STATUS_ZERO flags: a protocol may
 * know neither (null-co without read-zeroes reads undefined bytes). */
int hostfile_status(struct hostfile *f, uint64_t off, uint64_t len, unsigned *flags,
                    uint64_t *run);

/* A protocol node of proto with its state (taken over: proto->close frees it). */
struct hostfile *hostfile_new_protocol(const struct hostfile_protocol *proto, void *state,
                                       const char *filename, bool read_only);
/* null-co: a node of size bytes that drops writes and reads zeros
 * (read_zeroes) or leaves the buffer alone, as QEMU's null-co driver. */
struct hostfile *hostfile_null_co(const char *filename, uint64_t size, bool read_zeroes,
                                  bool read_only);

#endif
