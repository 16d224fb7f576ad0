/* The block device API every program uses: a virtual disk with byte-granular
 * reads and writes, whatever the format underneath (raw, qcow2 with a backing
 * chain). All calls are thread-safe. Errors: negative errno, message in err. */
#ifndef BLOCK_BLOCKDEV_H
#define BLOCK_BLOCKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "util/json.h"

struct blockdev;
struct hostfile;

/* Open flags. */
enum {
    BDEV_READ_ONLY   = 1u << 0,
    BDEV_NO_BACKING  = 1u << 1,   /* do not open the backing chain (-u, check) */
    BDEV_FORCE_SHARE = 1u << 2,   /* -U: open even if another process holds the image */
    BDEV_NO_CACHE    = 1u << 3,   /* O_DIRECT on the image files (-t none) */
    BDEV_CHECK       = 1u << 4,   /* opened for check/repair: tolerate a corrupt or dirty image */
    BDEV_NO_LOCK     = 1u << 5,   /* file.locking=off: take and test no image locks */
    BDEV_NO_FLUSH    = 1u << 6,   /* cache=unsafe: never sync (power loss may corrupt) */
    BDEV_REOPEN      = 1u << 7,   /* this process uses the image already: no lock conflict */
};

struct blockdev_open_opts {
    const char *format;                 /* "qcow2", "raw", or NULL to probe */
    unsigned flags;
    const struct blockdev *parent;      /* set when opening a backing file: loop detection */
};

/* Flags of blockdev_pwrite_zeroes. */
enum {
    BDEV_ZERO_MAY_UNMAP = 1u << 0,      /* the driver may deallocate the range */
};

/* Preallocation modes (create and grow). */
enum blockdev_prealloc {
    PREALLOC_OFF, PREALLOC_METADATA, PREALLOC_FALLOC, PREALLOC_FULL,
};
int blockdev_prealloc_parse(const char *s, enum blockdev_prealloc *out);
const char *blockdev_prealloc_name(enum blockdev_prealloc mode);

/* What blockdev_block_status finds at an offset, for a run of st->len bytes. */
enum {
    BDEV_STATUS_DATA        = 1u << 0,  /* reads come from stored data */
    BDEV_STATUS_ZERO        = 1u << 1,  /* reads return zeros */
    BDEV_STATUS_ALLOCATED   = 1u << 2,  /* defined by this layer, not its backing */
    BDEV_STATUS_OFFSET_VALID = 1u << 3, /* host_offset is where the data lies in file */
    BDEV_STATUS_COMPRESSED  = 1u << 4,
    BDEV_STATUS_PAST_BACKING = 1u << 5, /* zeros past the end of a shorter backing file */
};

struct block_status {
    uint64_t len;           /* bytes from the queried offset with the same status */
    unsigned flags;
    uint64_t host_offset;   /* valid with BDEV_STATUS_OFFSET_VALID */
    const char *file;       /* file the data lies in (with OFFSET_VALID) */
    int depth;              /* chain depth that defined the range (0 = top) */
};

struct blockdev_driver {
    const char *format_name;
    /* Score how much the first bytes of a file look like this format (0: not). */
    int (*probe)(const uint8_t *buf, size_t len);
    int (*open)(struct blockdev **out, struct hostfile *file, const char *filename,
                const struct blockdev_open_opts *opts, struct error *err);
    void (*close)(struct blockdev *bd);
    int (*pread)(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err);
    /* pread that never waits (NULL: the driver cannot): see blockdev_pread_nowait. */
    int (*pread_nowait)(struct blockdev *bd, uint64_t off, void *buf, size_t len);
    int (*pwrite)(struct blockdev *bd, uint64_t off, const void *buf, size_t len, struct error *err);
    int (*pwrite_zeroes)(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                         struct error *err);
    /* Whole clusters only (the last one may be partial at the end of the disk). */
    int (*pwrite_compressed)(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                             struct error *err);
    int (*discard)(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err);
    int (*flush)(struct blockdev *bd, struct error *err);
    int (*truncate)(struct blockdev *bd, uint64_t size, bool shrink_ok,
                    enum blockdev_prealloc prealloc, struct error *err);
    /* Status of this layer only; blockdev_block_status walks the chain. */
    int (*block_status)(struct blockdev *bd, uint64_t off, uint64_t len,
                        struct block_status *st, struct error *err);
    /* Forgets cached metadata: another open of the same file changed it
     * (commit writes the base through its own read-write open). */
    int (*invalidate_cache)(struct blockdev *bd, struct error *err);
    /* Makes every cluster unallocated again, so reads fall through to the
     * backing file (commit empties the overlay); NULL when the format cannot. */
    int (*make_empty)(struct blockdev *bd, struct error *err);
    /* Bytes the image files occupy on the host (qemu-img info "disk size"). */
    int64_t (*allocated_size)(struct blockdev *bd);
    /* Format-specific part of info, as "format-specific" JSON data members. */
    void (*info_json)(struct blockdev *bd, struct json_writer *w);
    /* VM-state area (qcow2 only; NULL elsewhere). */
    int (*vmstate_read)(struct blockdev *bd, uint64_t pos, void *buf, size_t len, struct error *err);
    int (*vmstate_write)(struct blockdev *bd, uint64_t pos, const void *buf, size_t len,
                         struct error *err);
};

struct blockdev {
    const struct blockdev_driver *drv;
    char *filename;
    uint64_t size;              /* virtual disk size in bytes */
    uint32_t cluster_size;      /* allocation unit; 0 for raw */
    bool read_only;
    bool probed;                /* the format was guessed, not given */
    dev_t dev;                  /* identity of the image file, for loop detection */
    ino_t ino;
    const struct blockdev *parent;
    struct blockdev *backing;   /* NULL when there is none or BDEV_NO_BACKING */
    char *backing_filename;     /* as recorded in the image, or NULL */
    char *backing_format;       /* as recorded in the image, or NULL */
};

int blockdev_open(struct blockdev **out, const char *filename, const struct blockdev_open_opts *opts,
                  struct error *err);
/* For drivers: fills the common fields; call before opening the backing file. */
void blockdev_init(struct blockdev *bd, const struct blockdev_driver *drv, const char *filename,
                   const struct hostfile *file, const struct blockdev_open_opts *opts);
/* For drivers: opens bd->backing_filename (relative to bd's directory) read-only,
 * unless there is none or opts say BDEV_NO_BACKING. */
int blockdev_open_backing(struct blockdev *bd, const struct blockdev_open_opts *opts,
                          struct error *err);
/* Flushes and frees the whole chain. */
void blockdev_close(struct blockdev *bd);
/* Probe the format of a file (NULL when unknown, then "raw" is the fallback). */
const struct blockdev_driver *blockdev_probe_file(struct hostfile *file);
/* The same for the first BLOCKDEV_PROBE_SIZE bytes of an image. */
#define BLOCKDEV_PROBE_SIZE 512
const struct blockdev_driver *blockdev_probe_buf(const uint8_t *buf);
/* The name of an image format QEMU recognises in buf but cowvisor does not
 * read (vmdk, vdi, vhdx, vpc, qed, luks, qcow, ...), or NULL. */
const char *blockdev_probe_foreign(const uint8_t *buf, size_t len);
/* A writable image whose format was probed as raw: writes that would make its
 * first sector probe as another format fail with -EPERM (as in QEMU), and the
 * programs print QEMU's warning about it (blockdev_warn_probed_raw). */
bool blockdev_is_probed_raw(const struct blockdev *bd);
void blockdev_warn_probed_raw(const struct blockdev *bd, const char *filename);
const struct blockdev_driver *blockdev_find_driver(const char *format);

static inline uint64_t blockdev_size(const struct blockdev *bd) { return bd->size; }
static inline const char *blockdev_format(const struct blockdev *bd) { return bd->drv->format_name; }

/* I/O on the virtual disk. Ranges must lie inside the disk (-EINVAL otherwise,
 * or -EIO for a read past the end like QEMU's "Request out of range"). */
int blockdev_pread(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err);
int blockdev_pwrite(struct blockdev *bd, uint64_t off, const void *buf, size_t len, struct error *err);
/* Reads only when nothing has to wait: metadata and data all cached (the
 * page cache for data), no lock contended. Any other outcome returns a
 * negative errno (-EAGAIN mostly) without a message, and the caller reads
 * with blockdev_pread, which reports real errors; buf may be partly filled.
 * Lets an event loop serve cached reads without handing them to a thread. */
int blockdev_pread_nowait(struct blockdev *bd, uint64_t off, void *buf, size_t len);
int blockdev_pwrite_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                           struct error *err);
int blockdev_pwrite_compressed(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                               struct error *err);
int blockdev_discard(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err);
int blockdev_flush(struct blockdev *bd, struct error *err);
int blockdev_truncate(struct blockdev *bd, uint64_t size, bool shrink_ok,
                      enum blockdev_prealloc prealloc, struct error *err);
/* Status of the top layer (st->depth 0) or, when the top layer does not
 * define the range, of the first layer of the chain that does. */
int blockdev_block_status(struct blockdev *bd, uint64_t off, uint64_t len, struct block_status *st,
                          struct error *err);
int blockdev_make_empty(struct blockdev *bd, struct error *err);
int blockdev_invalidate_cache(struct blockdev *bd, struct error *err);
int blockdev_vmstate_read(struct blockdev *bd, uint64_t pos, void *buf, size_t len, struct error *err);
int blockdev_vmstate_write(struct blockdev *bd, uint64_t pos, const void *buf, size_t len,
                           struct error *err);

/* Backing file names are relative to the directory of the image naming them. */
char *blockdev_backing_path(const char *image_filename, const char *backing_filename);

#endif
