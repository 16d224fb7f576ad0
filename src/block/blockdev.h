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
struct json_writer;
#include "util/options.h"

/* An open image: opaque to users. Drivers see block/block_int.h. */
struct blockdev;
struct blkdebug;

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
    BDEV_INACTIVE    = 1u << 8,   /* an incoming migration's image: see blockdev_activate */
};

struct blockdev_open_opts {
    const char *format;                 /* "qcow2", "raw", or NULL to probe */
    unsigned flags;
    const struct blockdev *parent;      /* set when opening a backing file: loop detection */
    const char *backing_format;         /* backing.driver: overrides the format the image records */
    struct blkdebug *blkdebug;          /* blkdebug rules over the image file: blockdev_open
                                         * takes them over (blockdev_spec makes them) */
    bool compressed_cache_set;          /* qcow2: compressed_cache_size was given ... */
    uint64_t compressed_cache_size;     /* ... bytes of decompressed clusters kept (0: none) */
    int lazy_refcounts;                 /* qcow2's lazy-refcounts option: 0 as the image's
                                         * compat bit says, 1 on, -1 off */
    bool overlap_checks_set;            /* qcow2: overlap_checks was given ... */
    unsigned overlap_checks;            /* ... BDEV_OL_* (block/overlap_check.h); unset:
                                         * BDEV_OL_CACHED, QEMU's default */
    const char *protocol;               /* "null-co" (or "null-aio"): the protocol node is not
                                         * a host file; NULL: the file (null-co:// names too) */
    uint64_t null_size;                 /* null-co's size (0: QEMU's default, 1 GiB) */
    bool null_read_zeroes;              /* null-co's read-zeroes */
    uint64_t raw_offset;                /* raw: where the disk starts in its protocol node */
    uint64_t raw_size;                  /* raw: the disk's size, with raw_has_size */
    bool raw_has_size;
    bool protocol_top;                  /* the protocol is the top node (driver=null-co) */
    struct blockdev *file_child;        /* a node the format sits on instead of a file
                                         * (qcow2 over qcow2, over NBD): taken over */
    const char *data_file;              /* qcow2: data-file.filename, the external data file
                                         * (NULL: the one the image records) */
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

int blockdev_open(struct blockdev **out, const char *filename, const struct blockdev_open_opts *opts,
                  struct error *err);

/* QEMU's ways of naming an image, the same in every program: a file name,
 * "json:{...}" (QEMU's JSON options) or, with options, an option string as
 * --image-opts takes it ("driver=qcow2,file.filename=a.qcow2,file.locking=off",
 * a bare leading value is the file). Dotted keys address the layers: the
 * format node, its protocol child "file" (file, host_device, host_cdrom) and
 * its "backing" child (backing.driver, or backing=null for none). */
enum { BDEV_NODE_TOP, BDEV_NODE_FILE, BDEV_NODE_BACKING, BDEV_NODE_LAYERS };

struct blockdev_spec {
    char *filename;             /* the protocol node's file */
    char *format;               /* driver of the format node; NULL: probe */
    char *protocol;             /* "file", "host_device", "host_cdrom", "null-co" when named */
    char *backing_format;       /* backing.driver: overrides the image's record */
    bool no_backing;            /* backing= or backing=null */
    bool no_lock;               /* file.locking=off */
    bool compress;              /* driver=compress filter on top */
    bool json;                  /* given as json:{...} */
    bool protocol_top;          /* the top node is a protocol (driver=file): raw over it */
    int read_only, direct, no_flush, force_share;  /* -1 unset, else the option */
    char format_prefix[16];     /* key prefix of the format node's own options */
    char *node_name[BDEV_NODE_LAYERS];
    struct blkdebug *blkdebug;  /* file.driver=blkdebug: its rules (owned until opened) */
    bool blkdebug_inline;       /* ... some given inline (not only file.config) */
    bool blkdebug_config;       /* ... file.config given */
    bool compressed_cache_set;  /* compressed-cache-size= (qcow2; not a QEMU option) */
    uint64_t compressed_cache_size;
    uint64_t null_size;         /* null-co's size and read-zeroes options */
    bool null_read_zeroes;
    uint64_t raw_offset, raw_size;  /* the raw format's offset and size options */
    bool raw_has_size;
    char *child_options;        /* file.driver is a format: the child node's options */
    char *data_file;            /* data-file.filename: a qcow2's external data file */
    struct options opts;        /* every option; unread ones are the caller's to check */
};

/* name: a file name or json:{...} (or NULL with options); options: an
 * option string or NULL. Zeroes *spec first; free it even on failure. */
int blockdev_spec_parse(struct blockdev_spec *spec, const char *name, const char *options,
                        struct error *err);
void blockdev_spec_free(struct blockdev_spec *spec);
/* The parts: an empty spec, then option text added to it (qemu-io's reopen -o). */
void blockdev_spec_init(struct blockdev_spec *spec);
int blockdev_spec_parse_options(struct blockdev_spec *spec, const char *text,
                                const char *implied_key, struct error *err);
/* flags with the spec's read-only, cache, force-share, locking and backing settings. */
unsigned blockdev_spec_flags(const struct blockdev_spec *spec, unsigned flags);
/* The node options of the spec (protocol, null-co's, raw's) into o. */
void blockdev_spec_node_opts(const struct blockdev_spec *spec, struct blockdev_open_opts *o);
/* A nested spec (file.driver=qcow2): opens the child format node into
 * o->file_child; nothing to do for other specs. */
int blockdev_spec_open_child(struct blockdev_spec *spec, struct blockdev_open_opts *o,
                             struct error *err);
/* QEMU's file protocols check what the file is before the format opens it. */
int blockdev_spec_check_protocol(const struct blockdev_spec *spec, bool read_only,
                                 struct error *err);
/* Parses, refuses options nobody takes, and opens: the one open path of the
 * programs. opts give defaults that the spec overrides. */
int blockdev_open_spec(struct blockdev **out, const char *name, const char *options,
                       const struct blockdev_open_opts *opts, struct error *err);
/* The object of a json: name as a dotted option string (*out to free). */
int blockdev_json_to_options(const char *json, char **out, struct error *err);
/* A "json:{...}" name as an option string, with options (or NULL) given
 * beside it, which win as in QEMU. */
int blockdev_json_with_options(const char *name, const char *options, char **out,
                               struct error *err);

/* Flushes and frees the whole chain. */
void blockdev_close(struct blockdev *bd);
/* A writable image whose format was probed as raw: writes that would make its
 * first sector probe as another format fail with -EPERM (as in QEMU), and the
 * programs print QEMU's warning about it (blockdev_warn_probed_raw). */
bool blockdev_is_probed_raw(const struct blockdev *bd);
void blockdev_warn_probed_raw(const struct blockdev *bd, const char *filename);
/* Whether a format is one this library reads and writes ("qcow2", "raw"). */
bool blockdev_format_known(const char *format);
/* Whether QEMU 7.2 has a block driver of that name (formats we do not read
 * and protocols included): what qemu-img accepts as a format to record. */
bool blockdev_qemu_driver_known(const char *name);

/* What an open image is. */
uint64_t blockdev_size(const struct blockdev *bd);
const char *blockdev_format(const struct blockdev *bd);
const char *blockdev_filename(const struct blockdev *bd);
/* The name QEMU gives the graph (bdrv_refresh_filename): the file's name,
 * unless a filter over it needs saying (blkdebug::FILE, json:{...}). */
const char *blockdev_exact_filename(const struct blockdev *bd);
uint32_t blockdev_cluster_size(const struct blockdev *bd);     /* 0 for raw */
bool blockdev_is_read_only(const struct blockdev *bd);
/* The open backing image (NULL: none, or opened with BDEV_NO_BACKING). */
struct blockdev *blockdev_backing(const struct blockdev *bd);
/* The backing file name and format as recorded in the image (NULL: none). */
const char *blockdev_backing_filename(const struct blockdev *bd);
const char *blockdev_backing_format(const struct blockdev *bd);
/* Both are opens of the same host file. */
bool blockdev_same_file(const struct blockdev *a, const struct blockdev *b);
/* Bytes the image files occupy on the host (-1: unknown; qemu-img info "disk size"). */
int64_t blockdev_allocated_size(const struct blockdev *bd);
/* QEMU's file node statistics of the image's host file (all zero for an
 * image over no host file): the discards it took (ok, bytes) and refused,
 * and the end of the furthest write to it. */
struct blockdev_file_stats {
    uint64_t nb_ok, nb_failed, bytes_ok;
    uint64_t wr_highest_offset;
};
void blockdev_file_stats(const struct blockdev *bd, struct blockdev_file_stats *out);
/* The end of the furthest write or zero write asked of the image (its
 * format node's wr_highest_offset in QEMU). */
uint64_t blockdev_wr_highest_offset(const struct blockdev *bd);
/* The dirty bit: refcounts may be stale after a crash under lazy refcounts. */
bool blockdev_is_dirty(const struct blockdev *bd);
bool blockdev_can_compress(const struct blockdev *bd);
bool blockdev_has_vmstate(const struct blockdev *bd);
/* Whether the format layer only passes the protocol's I/O through and has no
 * information of its own (a protocol node at the top, as driver=null-co). */
bool blockdev_is_protocol_node(const struct blockdev *bd);
/* The format-specific information (qemu-img info's "format-specific" data)
 * as a JSON object text to free, or NULL when the format has none. */
char *blockdev_format_specific_json(struct blockdev *bd);
/* Writes it as qemu-img info --output=json does: a "format-specific" member
 * holding "type" and "data" (nothing when the format has none). */
void blockdev_write_format_specific(struct blockdev *bd, struct json_writer *w);

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
/* The same for a write: only when the metadata is cached and says the data
 * goes in place (no allocation, no copy on write), the page cache takes it
 * (hostfile_pwrite_nowait) and no block job watches the writes. Otherwise
 * a negative errno without a message, and the caller writes the whole
 * range again with blockdev_pwrite (part of it may have been written). */
int blockdev_pwrite_nowait(struct blockdev *bd, uint64_t off, const void *buf, size_t len);
/* A block job's view of the writes to one image (its own writes excepted:
 * they come from the thread the job marked with block_job_self): before()
 * runs ahead of every write, write-zeroes, compressed write and discard and
 * may fail it (a backup that could not save the old data first); after()
 * runs once it is done, whatever the outcome. Either may be NULL. Set or cleared while no write
 * is in flight (the device drained). */
struct blockdev_write_notifier {
    int (*before)(void *opaque, uint64_t off, uint64_t len, struct error *err);
    void (*after)(void *opaque, uint64_t off, uint64_t len);
    void *opaque;
};
void blockdev_set_write_notifier(struct blockdev *bd, const struct blockdev_write_notifier *n);

/* QEMU's node options for the writes a user (a guest) sends, kept with the
 * open image. detect-zeroes: a write of only zero bytes becomes a
 * write-zeroes (with UNMAP one that may deallocate, when discards are
 * allowed). discard=ignore (discard_ignore): discards succeed doing
 * nothing and write-zeroes never deallocate. Defaults: off, discards
 * allowed (what the image tools want). */
enum blockdev_detect_zeroes { BDEV_DETECT_ZEROES_OFF, BDEV_DETECT_ZEROES_ON, BDEV_DETECT_ZEROES_UNMAP };
void blockdev_set_write_options(struct blockdev *bd, enum blockdev_detect_zeroes detect_zeroes, bool discard_ignore);
enum blockdev_detect_zeroes blockdev_detect_zeroes(const struct blockdev *bd);
bool blockdev_discard_ignored(const struct blockdev *bd);

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
/* The blkdebug filter over the image's file, or NULL: its breakpoints are
 * driven through blkdebug.h (qemu-io's break, resume, wait_break). */
struct blkdebug *blockdev_blkdebug(struct blockdev *bd);
/* Re-reads the image's metadata from its file (another wrote it); -EPERM
 * on an image showing a snapshot (blockdev_snapshot_load_tmp). */
int blockdev_invalidate_cache(struct blockdev *bd, struct error *err);

/* Migration on shared storage, as QEMU hands an image over: the
 * destination opens it inactive (BDEV_INACTIVE: no image locks taken and
 * every permission shared, writes refused, nothing written at open, not
 * even a repair), while the source still runs on it. At switchover the
 * source inactivates (flushes, writes back lazy refcounts and clears the
 * dirty bit, releases its locks), then the destination activates (takes
 * the locks an open with its flags takes, and reads the metadata again:
 * qcow2 header, L1 and refcount tables, snapshots; cached tables dropped).
 * A failed migration activates the source again. Both walk the backing
 * chain; calling either on an image already in that state does nothing.
 * Activation fails with QEMU's lock message while another process still
 * holds the image, and the image then stays inactive. */
int blockdev_inactivate(struct blockdev *bd, struct error *err);
int blockdev_activate(struct blockdev *bd, struct error *err);
bool blockdev_is_inactive(const struct blockdev *bd);
int blockdev_vmstate_read(struct blockdev *bd, uint64_t pos, void *buf, size_t len, struct error *err);
int blockdev_vmstate_write(struct blockdev *bd, uint64_t pos, const void *buf, size_t len,
                           struct error *err);

/* Creating images. */
enum blockdev_compression {
    BDEV_COMPRESSION_ZLIB = 0,
    BDEV_COMPRESSION_ZSTD = 1,
};

struct blockdev_create_opts {
    const char *format;             /* "qcow2" (NULL: qcow2) or "raw" */
    uint64_t size;                  /* virtual size; 0 with a backing file: take its size */
    uint32_t cluster_size;          /* 512 .. 2 MiB, a power of two; default 64 KiB */
    int version;                    /* 2 (compat=0.10) or 3 (compat=1.1, default) */
    int refcount_bits;              /* 1, 2, 4, ..., 64; default 16 */
    bool lazy_refcounts;
    bool extended_l2;
    enum blockdev_compression compression;
    enum blockdev_prealloc prealloc;
    const char *backing_file;       /* NULL for none */
    const char *backing_format;     /* NULL: not recorded */
    bool encrypt_aes;               /* qcow2 crypt_method 1 (QEMU's legacy AES-CBC): the
                                     * key is no part of the image, only the method is */
    const char *data_file;          /* qcow2 external data file to create (NULL: none) */
    bool data_file_raw;             /* ... kept a valid raw image (metadata preallocated) */
};

void blockdev_create_opts_init(struct blockdev_create_opts *o);
/* Whether a qcow2 cluster size is valid (with extended L2, at least 32
 * subclusters of 512 bytes), in qemu-img's words: create and measure share it. */
int blockdev_qcow2_check_cluster_size(uint64_t cluster_size, bool extended_l2, struct error *err);
/* Creates (or overwrites) filename as an empty image. */
int blockdev_create(const char *filename, const struct blockdev_create_opts *o, struct error *err);
/* Records a new backing file (NULL: none) in the header; the data is not touched. */
int blockdev_change_backing_file(struct blockdev *bd, const char *backing_file,
                                 const char *backing_fmt, struct error *err);

/* Internal snapshots (qemu-img snapshot, savevm). Each operation is atomic
 * on disk (a kill leaves the image before or after it). The caller quiesces
 * guest I/O on bd first, as QEMU drains it: a request in flight during the
 * operation may land on either side of it. Formats without snapshots fail
 * with -ENOTSUP. */
struct blockdev_snapshot_info {
    char id[128];               /* QEMU assigns "1", "2", ... */
    char *name;
    uint64_t vm_state_size;     /* bytes of VM state saved with it (0: disk only) */
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t disk_size;         /* virtual disk size when it was taken */
    int64_t icount;             /* -1 when not recorded */
};

/* What the VMM records with a snapshot; NULL for a disk-only snapshot. */
struct blockdev_snapshot_vm {
    uint64_t vm_state_size;
    uint64_t vm_clock_nsec;
    int64_t icount;
};

bool blockdev_has_snapshots(const struct blockdev *bd);
int blockdev_snapshot_list(struct blockdev *bd, struct blockdev_snapshot_info **list, int *count,
                           struct error *err);
void blockdev_snapshot_list_free(struct blockdev_snapshot_info *list, int count);
int blockdev_snapshot_create(struct blockdev *bd, const char *name,
                             const struct blockdev_snapshot_vm *vm, struct error *err);
/* id_or_name: matches an id first, then a name, as QEMU does. */
int blockdev_snapshot_apply(struct blockdev *bd, const char *id_or_name, struct error *err);
int blockdev_snapshot_delete(struct blockdev *bd, const char *id_or_name, struct error *err);
int blockdev_snapshot_rename(struct blockdev *bd, const char *id_or_name, const char *new_name,
                             struct error *err);
/* Makes a read-only image show a snapshot's disk instead of its active one
 * from now on (qemu-img convert -l); the file is not changed. From then on
 * it is not reopened for writing (a commit into it) nor re-read (-EPERM). */
int blockdev_snapshot_load_tmp(struct blockdev *bd, const char *id_or_name, struct error *err);
/* Reads the VM state saved with a snapshot (the snapshot's own area). */
int blockdev_snapshot_vmstate_read(struct blockdev *bd, const char *id_or_name, uint64_t pos,
                                   void *buf, size_t len, struct error *err);

/* Consistency check and repair (qemu-img check). */
enum {
    BDEV_FIX_LEAKS = 1u << 0,
    BDEV_FIX_ERRORS = 1u << 1,
};

struct blockdev_check_result {
    int corruptions;            /* unfixed, after repair */
    int leaks;
    int check_errors;           /* I/O errors while checking */
    int corruptions_fixed;
    int leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters;    /* guest clusters of the disk */
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
};

/* Open the image with BDEV_CHECK (and read-only unless fix is set).
 * -ENOTSUP when the format has no check. */
int blockdev_check(struct blockdev *bd, unsigned fix, struct blockdev_check_result *res,
                   struct error *err);

/* qemu-img amend: options that can change in place (compat, lazy_refcounts,
 * refcount_bits); unset fields stay as they are. */
struct blockdev_amend_opts {
    int version;                /* 0: keep */
    int lazy_refcounts;         /* -1: keep, 0/1 */
    int refcount_bits;          /* 0: keep */
    bool resize;                /* the virtual size changes to size (before a downgrade) */
    const char *data_file;      /* qcow2 data file name to record (NULL: keep, "": none) */
    int data_file_raw;          /* 0: keep, -1: clear, 1: set (refused unless already set) */
    uint64_t size;
    /* Progress of a refcount width change, in passes over the refcount
     * structure; total may grow (NULL: not wanted). */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    void *progress_opaque;
};
int blockdev_amend(struct blockdev *bd, const struct blockdev_amend_opts *o, struct error *err);

/* Dirty bitmaps (QEMU's block-dirty-bitmap-* and qemu-img bitmap): named
 * bitmaps over the virtual disk that record which ranges were written,
 * discarded or zeroed while they are enabled. Persistent ones live in the
 * image (qcow2 v3: loaded on open, stored on close)
 * and are flagged in use in the image while it is open for writing (so,
 * as in QEMU, they are written on close only: until then the image says
 * they are not saved). Errors
 * use QEMU's words. */
#define BDEV_BITMAP_NAME_MAX 1023

struct blockdev_bitmap_info {
    char *name;
    uint32_t granularity;
    bool recording;             /* enabled: writes mark it ('auto' in qcow2) */
    bool persistent;
    bool inconsistent;          /* found in use in the image: only removal is allowed */
    bool readonly;              /* the image is open read-only */
    bool busy;                  /* a backup holds it */
    uint64_t count;             /* dirty bytes */
};

struct blockdev_bitmap_add_opts {
    uint32_t granularity;       /* 0: the default (the cluster size within 4k..64k) */
    bool persistent;
    bool disabled;
};

int blockdev_bitmap_list(struct blockdev *bd, struct blockdev_bitmap_info **list, int *count,
                         struct error *err);
void blockdev_bitmap_list_free(struct blockdev_bitmap_info *list, int count);
int blockdev_bitmap_add(struct blockdev *bd, const char *name,
                        const struct blockdev_bitmap_add_opts *o, struct error *err);
int blockdev_bitmap_remove(struct blockdev *bd, const char *name, struct error *err);
int blockdev_bitmap_clear(struct blockdev *bd, const char *name, struct error *err);
int blockdev_bitmap_enable(struct blockdev *bd, const char *name, bool enable, struct error *err);
/* dst_name |= src_name (of src, which may be bd itself). */
int blockdev_bitmap_merge(struct blockdev *bd, const char *dst_name, struct blockdev *src,
                          const char *src_name, struct error *err);
/* A backup's hold on a bitmap (QEMU's successor bitmap): its bits are
 * taken out (*taken) and it starts empty, recording the writes made from
 * now on; it is busy (QEMU's "in use by another operation") until
 * backup_end, which merges taken back into it or not (the bitmap then
 * holds only what was written since begin) and frees taken. */
struct dirty_bitmap;
int blockdev_bitmap_backup_begin(struct blockdev *bd, const char *name, struct dirty_bitmap **taken,
                                 struct error *err);
void blockdev_bitmap_backup_end(struct blockdev *bd, const char *name, struct dirty_bitmap *taken, bool merge_back);
/* A clear that can be undone (a transaction's): the bits go to *taken;
 * untake merges them back (undo) or not (commit) and frees taken. */
int blockdev_bitmap_clear_taking(struct blockdev *bd, const char *name, struct dirty_bitmap **taken,
                                 struct error *err);
void blockdev_bitmap_untake(struct blockdev *bd, const char *name, struct dirty_bitmap *taken, bool merge_back);
/* Whether [off, off+*len) starts dirty in the bitmap, and how long that
 * lasts (*len shrinks to the run). */
int blockdev_bitmap_status(struct blockdev *bd, const char *name, uint64_t off, uint64_t *len,
                           bool *dirty, struct error *err);
/* The bytes persistent bitmaps of src would take in a new image of that
 * cluster size (qemu-img measure's "bitmaps size"). */
uint64_t blockdev_bitmaps_measure(struct blockdev *src, uint32_t cluster_size);
/* Whether the format stores bitmaps in the image (qcow2 v3). */
bool blockdev_supports_persistent_bitmaps(const struct blockdev *bd);

/* An unnamed dirty bitmap (QEMU's anonymous ones, one per disk in its
 * block migration): it records every write like an enabled bitmap, but is
 * never listed, stored or found by name. Freed by its owner before the
 * image closes. */
struct blockdev_tracker;
struct dirty_bitmap;
int blockdev_tracker_new(struct blockdev *bd, uint32_t granularity, struct blockdev_tracker **out,
                         struct error *err);
/* into |= the bits recorded since the last take, which are cleared: a write
 * that completes after this shows in the next take. into must be of the
 * disk's size. */
void blockdev_tracker_take(struct blockdev_tracker *t, struct dirty_bitmap *into);
void blockdev_tracker_free(struct blockdev_tracker *t);

/* Backing file names are relative to the directory of the image naming them. */
char *blockdev_backing_path(const char *image_filename, const char *backing_filename);

#endif
