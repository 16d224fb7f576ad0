/* What an NBD server exports: a blockdev with a name, a description, the
 * transmission flags clients see and the policies of the command line
 * (cache mode, discard, detect-zeroes). The I/O helpers apply those
 * policies; all of them are thread-safe because blockdev is. */
#ifndef NBD_NBD_EXPORT_H
#define NBD_NBD_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/blockdev.h"
#include "util/error.h"

enum nbd_detect_zeroes { NBD_DETECT_ZEROES_OFF, NBD_DETECT_ZEROES_ON, NBD_DETECT_ZEROES_UNMAP };

struct nbd_export_opts {
    const char *name;               /* "" is the default export */
    const char *description;        /* NULL: none */
    bool read_only;
    bool multi_conn;                /* more than one client may connect */
    bool allocation_depth;          /* offer qemu:allocation-depth */
    bool writethrough;              /* flush after every write */
    bool no_flush;                  /* cache=unsafe: flushes do nothing */
    bool discard_unmap;             /* --discard=unmap (default: ignore) */
    enum nbd_detect_zeroes detect_zeroes;
    const char *const *bitmaps;     /* dirty bitmaps offered as qemu:dirty-bitmap:NAME */
    int n_bitmaps;
};

#define NBD_MAX_EXPORT_BITMAPS 32

struct nbd_export {
    struct blockdev *bd;
    char *name;
    char *description;              /* NULL: none */
    uint64_t size;                  /* the disk size rounded up to 512 like QEMU */
    uint16_t flags;                 /* NBD_FLAG_* without SEND_DF (per client) */
    bool allocation_depth;
    bool writethrough;
    bool no_flush;
    bool discard_unmap;
    enum nbd_detect_zeroes detect_zeroes;
    int n_bitmaps;
    char *bitmaps[NBD_MAX_EXPORT_BITMAPS];
    struct blockdev *bitmap_bd[NBD_MAX_EXPORT_BITMAPS];    /* the layer holding each */
};

/* The export takes no ownership of bd. */
int nbd_export_init(struct nbd_export *exp, struct blockdev *bd, const struct nbd_export_opts *o,
                    struct error *err);
void nbd_export_destroy(struct nbd_export *exp);

/* Requests are already checked against exp->size. */
int nbd_export_read(const struct nbd_export *exp, uint64_t off, void *buf, size_t len,
                    struct error *err);
int nbd_export_write(const struct nbd_export *exp, uint64_t off, const void *buf, size_t len,
                     bool fua, struct error *err);
/* cmd_flags: NBD_CMD_FLAG_FUA, NO_HOLE, FAST_ZERO. */
int nbd_export_write_zeroes(const struct nbd_export *exp, uint64_t off, uint64_t len,
                            unsigned cmd_flags, struct error *err);
int nbd_export_trim(const struct nbd_export *exp, uint64_t off, uint64_t len, bool fua,
                    struct error *err);
int nbd_export_flush(const struct nbd_export *exp, struct error *err);
/* Reads the range ahead of use (NBD_CMD_CACHE). */
int nbd_export_cache(const struct nbd_export *exp, uint64_t off, uint64_t len, struct error *err);

/* Status of a run starting at off, at most len bytes. */
struct nbd_status {
    uint64_t len;
    bool data;          /* reads come from stored data (else: a hole) */
    bool zero;          /* reads return zeros */
    uint32_t depth;     /* qemu:allocation-depth: 0 unallocated, 1 top layer, 2 its backing... */
};
int nbd_export_status(const struct nbd_export *exp, uint64_t off, uint64_t len,
                      struct nbd_status *st, struct error *err);
/* Whether the run at off is dirty in exported bitmap i, and its length (*len shrinks). */
int nbd_export_bitmap_status(const struct nbd_export *exp, int i, uint64_t off, uint64_t *len,
                             bool *dirty, struct error *err);

#endif
