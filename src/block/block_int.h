/* The driver side of the block layer: what a format driver implements and
 * the common part of every open image. Only src/block includes this; users
 * of the block layer see block/blockdev.h, where struct blockdev is opaque. */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include <pthread.h>
#include <sys/types.h>

#include "block/blockdev.h"
#include "block/hostfile.h"
#include "util/dirty_bitmap.h"
#include "util/json.h"

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
    /* pwrite that only the page cache serves (NULL: the driver cannot): see blockdev_pwrite_nowait. */
    int (*pwrite_nowait)(struct blockdev *bd, uint64_t off, const void *buf, size_t len);
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
    /* Migration's hand-over of an image between two processes
     * (blockdev_inactivate/_activate): inactivate writes back what only
     * this process knows (lazy refcounts, the dirty bit); activate reads
     * again everything the other process may have changed. NULL: nothing
     * to do (activate then falls back to invalidate_cache). */
    int (*inactivate)(struct blockdev *bd, struct error *err);
    int (*activate)(struct blockdev *bd, struct error *err);
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
    /* Format operations beyond I/O (NULL: the format has none). */
    bool (*is_dirty)(const struct blockdev *bd);
    int (*change_backing_file)(struct blockdev *bd, const char *backing_file,
                               const char *backing_fmt, struct error *err);
    int (*snapshot_list)(struct blockdev *bd, struct blockdev_snapshot_info **list, int *count,
                         struct error *err);
    int (*snapshot_create)(struct blockdev *bd, const char *name,
                           const struct blockdev_snapshot_vm *vm, struct error *err);
    int (*snapshot_apply)(struct blockdev *bd, const char *id_or_name, struct error *err);
    int (*snapshot_delete)(struct blockdev *bd, const char *id_or_name, struct error *err);
    int (*snapshot_rename)(struct blockdev *bd, const char *id_or_name, const char *new_name,
                           struct error *err);
    int (*snapshot_load_tmp)(struct blockdev *bd, const char *id_or_name, struct error *err);
    int (*snapshot_vmstate_read)(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                 void *buf, size_t len, struct error *err);
    int (*check)(struct blockdev *bd, unsigned fix, struct blockdev_check_result *res,
                 struct error *err);
    int (*amend)(struct blockdev *bd, const struct blockdev_amend_opts *o, struct error *err);
    /* Persistent dirty bitmaps (NULL: the format stores none). can_store
     * vets a new one (name NULL: whether this image can hold any), remove
     * drops it from the image at once, store writes every persistent bitmap
     * of bd->bitmaps. All are called with the bitmaps' lock held. */
    int (*bitmap_can_store)(struct blockdev *bd, const char *name, uint32_t granularity,
                            struct error *err);
    int (*bitmap_remove)(struct blockdev *bd, const char *name, struct error *err);
    int (*bitmaps_store)(struct blockdev *bd, struct error *err);
    /* Creates an image of this format (blockdev_create). */
    int (*create)(const char *filename, const struct blockdev_create_opts *o, struct error *err);
};

struct blockdev {
    const struct blockdev_driver *drv;
    char *filename;
    char *open_name;            /* the json:/blkdebug: name it was opened by (reopen), or NULL */
    char *exact_name;           /* QEMU's name for the graph when not filename (a blkdebug
                                 * filter: blkdebug::FILE, or json:{...} with inline rules) */
    uint64_t size;              /* virtual disk size in bytes */
    uint32_t cluster_size;      /* allocation unit; 0 for raw */
    bool read_only;
    bool probed;                /* the format was guessed, not given */
    const char *node_driver;    /* shown as the format when the top node is a protocol
                                 * (driver=null-co): no format layer in QEMU's graph */
    dev_t dev;                  /* identity of the image file, for loop detection */
    ino_t ino;
    const struct blockdev *parent;
    struct blockdev *backing;   /* NULL when there is none or BDEV_NO_BACKING */
    char *backing_filename;     /* as recorded in the image, or NULL */
    char *backing_format;       /* as recorded in the image, or NULL */
    /* A block job watching the writes (blockdev_set_write_notifier). */
    const struct blockdev_write_notifier *_Atomic write_notifier;
    struct hostfile *file;      /* the image file (NULL: NBD), for its locks */
    unsigned open_flags;        /* BDEV_* as opened */
    bool inactive;              /* another process may write the image: no writes, no locks */
    bool snapshot_view;         /* shows an internal snapshot (blockdev_snapshot_load_tmp), not
                                 * its file's active disk: never reopened for writing, never
                                 * re-read from the file */
    struct bdev_bitmaps *bitmaps;   /* dirty bitmaps (blockdev_bitmap.c), NULL until the first */
    enum blockdev_detect_zeroes detect_zeroes;  /* blockdev_set_write_options */
    bool discard_ignore;
    /* End of the furthest write or zero write asked of this node, failed
     * ones too (QEMU's wr_highest_offset, query-blockstats). Atomic. */
    uint64_t wr_highest_offset;
};

/* A named dirty bitmap of an open image. */
struct bdev_bitmap {
    char *name;
    struct dirty_bitmap *bits;
    bool recording, persistent, inconsistent, readonly;
    bool busy;                  /* a backup holds it (blockdev_bitmap_backup_begin) ... */
    const struct dirty_bitmap *frozen;  /* ... with these bits, which it shows meanwhile */
    struct bdev_bitmap *next;
};

struct bdev_bitmaps {
    pthread_mutex_t lock;       /* the list and every bitmap's bits */
    struct bdev_bitmap *head;
    struct blockdev_tracker *trackers;  /* unnamed ones (blockdev_tracker.c), under lock too */
};

/* An unnamed bitmap's place in the list. */
struct blockdev_tracker {
    struct blockdev *bd;
    struct dirty_bitmap *bits;
    struct blockdev_tracker *next;
};
/* The device's bitmap list (create: make one when there is none yet; NULL
 * then means out of memory). */
struct bdev_bitmaps *blockdev_bitmaps_of(struct blockdev *bd, bool create);

/* For drivers: adds a bitmap loaded from the image (takes bits). */
int blockdev_bitmap_attach(struct blockdev *bd, const char *name, struct dirty_bitmap *bits,
                           bool recording, bool inconsistent, struct error *err);
/* For blockdev.c: marks [off, off+len) in every recording bitmap. */
void blockdev_bitmaps_mark(struct blockdev *bd, uint64_t off, uint64_t len);
/* Refusals before whole-disk operations, in QEMU's words: a snapshot switch
 * with any bitmap, a resize with bitmaps that cannot follow. */
int blockdev_bitmaps_check_apply(struct blockdev *bd, struct error *err);
int blockdev_bitmaps_check_resize(struct blockdev *bd, struct error *err);
void blockdev_bitmaps_resize(struct blockdev *bd, uint64_t size);
/* Stores persistent bitmaps (writable images) and frees them all (close). */
void blockdev_bitmaps_close(struct blockdev *bd);
/* Frees them without storing (a failed open). */
void blockdev_bitmaps_free(struct blockdev *bd);
/* Migration on shared storage, as QEMU hands bitmaps over with the image:
 * inactivation stores the persistent bitmaps (no longer in use) and drops
 * them from memory; activation drops any in memory before the driver loads
 * the image's (what the other side stored). Unnamed and non-persistent
 * bitmaps stay. */
int blockdev_bitmaps_inactivate(struct blockdev *bd, struct error *err);
void blockdev_bitmaps_drop_persistent(struct blockdev *bd);

/* For drivers: fills the common fields; call before opening the backing file. */
void blockdev_init(struct blockdev *bd, const struct blockdev_driver *drv, const char *filename,
                   struct hostfile *file, const struct blockdev_open_opts *opts);
/* Takes the image locks an open with flags needs (BDEV_INACTIVE: none, and
 * every permission shared, as QEMU's inactive nodes); a second call
 * replaces the first call's locks (blockdev_activate.c). */
int blockdev_lock_file(struct hostfile *file, unsigned flags, struct error *err);
/* For drivers: opens bd->backing_filename (relative to bd's directory) read-only,
 * unless there is none or opts say BDEV_NO_BACKING. */
int blockdev_open_backing(struct blockdev *bd, const struct blockdev_open_opts *opts,
                          struct error *err);
/* A handle on a layer of an open chain that may be written (the chain has
 * it read-only), without its own backing chain: commit's base. */
int blockdev_reopen_layer_rw(const struct blockdev *layer, struct blockdev **out, struct error *err);
/* Probe the format of a file (NULL when unknown, then "raw" is the fallback). */
const struct blockdev_driver *blockdev_probe_file(struct hostfile *file);
/* The same for the first BLOCKDEV_PROBE_SIZE bytes of an image. */
#define BLOCKDEV_PROBE_SIZE 512
const struct blockdev_driver *blockdev_probe_buf(const uint8_t *buf);
/* Whoever writes the first sector of an image whose format was probed
 * chooses the format of its next open, and a qcow2 header there names any
 * host file as its backing file. So, as QEMU does, a write (of data or
 * zeros: buf NULL) to [off, off + len) with off < BLOCKDEV_PROBE_SIZE is
 * refused (-EPERM) when sector, the image's first sector now, would then
 * probe as anything but raw. sector is changed. The caller holds a lock
 * over the check and its write, or two writers could each pass with half
 * a header. */
int blockdev_check_block0_write(const struct blockdev *bd, uint8_t *sector, uint64_t off, const void *buf,
                                size_t len, struct error *err);
const struct blockdev_driver *blockdev_find_driver(const char *format);
/* NBD names (nbd://, nbd+unix://, nbd:host:port, nbd:unix:path): the
 * export opened through libnbd as a raw disk (nbd_client.c). */
/* A protocol node over the block node child (taken over: closing the
 * file closes it), for a format node on top of another node. */
struct hostfile *hostfile_over_node(struct blockdev *child);

bool blockdev_is_nbd_name(const char *filename);
int blockdev_nbd_open(struct blockdev **out, const char *filename,
                      const struct blockdev_open_opts *opts, struct error *err);
/* The name of a format QEMU knows and this library does not read (vmdk,
 * vdi, vhdx, vpc, qed, qcow version 1, parallels, dmg, luks, cloop, bochs)
 * when the first bytes (buf) or the last 512 (tail, may be NULL) carry its
 * magic; NULL otherwise. */
const char *blockdev_probe_foreign(const uint8_t *buf, size_t len, const uint8_t *tail, size_t tail_len);

#endif
