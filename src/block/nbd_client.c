/* NBD exports as images, through libnbd: nbd://host[:port]/export,
 * nbd+unix:///export?socket=path (and the other URIs libnbd takes), and
 * QEMU's legacy names nbd:host:port[:exportname=name] and
 * nbd:unix:path[:exportname=name]. The export is the disk (a raw format
 * node over the nbd protocol node, as QEMU opens it); another format over
 * NBD is refused. */
#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_int.h"

struct nbd_state {
    struct blockdev bd;
    struct nbd_handle *h;
    bool can_zero, can_trim, can_flush;
    pthread_mutex_t block0_lock;    /* a probed export's first-sector check and write */
};

static struct nbd_state *nbd_of(struct blockdev *bd)
{
    return (struct nbd_state *)bd;
}

bool blockdev_is_nbd_name(const char *filename)
{
    return strncmp(filename, "nbd:", 4) == 0 || strncmp(filename, "nbd+", 4) == 0 ||
           strncmp(filename, "nbds:", 5) == 0 || strncmp(filename, "nbds+", 5) == 0;
}

static int nbd_fail(struct blockdev *bd, struct error *err, const char *what)
{
    int e = nbd_get_errno();
    return error_set(err, e ? -e : -EIO, "%s on '%s': %s", what, bd->filename, nbd_get_error());
}

/* nbd:unix:path[:exportname=x] or nbd:host:port[:exportname=x]. */
static int connect_legacy(struct nbd_handle *h, const char *filename, struct error *err)
{
    char *spec = strdup(filename + 4);
    char *export = strstr(spec, ":exportname=");
    int ret;
    if (export) {
        *export = 0;
        export += strlen(":exportname=");
    }
    if (nbd_set_export_name(h, export ? export : "") < 0) {
        free(spec);
        return error_set(err, -EINVAL, "%s", nbd_get_error());
    }
    if (strncmp(spec, "unix:", 5) == 0) {
        ret = nbd_connect_unix(h, spec + 5);
    } else {
        char *colon = strrchr(spec, ':');
        const char *port = "10809";
        if (colon) {
            *colon = 0;
            port = colon + 1;
        }
        ret = nbd_connect_tcp(h, spec, port);
    }
    free(spec);
    return ret;
}

static const struct blockdev_driver nbd_driver;

/* The node's name as QEMU spells it in messages: libnbd's URI, with no
 * path at all when the export name is empty ("nbd+unix://?socket=..."). */
static char *qemu_filename(struct nbd_handle *h, const char *given)
{
    char *uri = nbd_get_uri(h), *export = nbd_get_export_name(h);
    if (uri && export && !export[0]) {
        char *p = strstr(uri, ":///?");
        size_t len = strlen(uri);
        if (p) {
            memmove(p + 3, p + 4, strlen(p + 4) + 1);
        } else if (len > 0 && uri[len - 1] == '/') {
            uri[len - 1] = 0;
        }
    }
    free(export);
    return uri ? uri : strdup(given);
}

int blockdev_nbd_open(struct blockdev **out, const char *filename,
                      const struct blockdev_open_opts *opts, struct error *err)
{
    if (opts->format && strcmp(opts->format, "raw") != 0) {
        return error_set(err, -ENOTSUP, "Image format '%s' over NBD is not supported (only "
                         "raw: the export is the disk)", opts->format);
    }
    struct nbd_handle *h = nbd_create();
    if (!h) {
        return error_set(err, -ENOMEM, "%s", nbd_get_error());
    }
    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
    int ret = strncmp(filename, "nbd:", 4) == 0 && strncmp(filename, "nbd://", 6) != 0
                  ? connect_legacy(h, filename, err) : nbd_connect_uri(h, filename);
    if (ret < 0) {
        int e = nbd_get_errno();
        if (!err || !err->msg[0]) {
            error_set(err, e ? -e : -EIO, "Failed to connect to '%s': %s", filename,
                      nbd_get_error());
        }
        nbd_close(h);
        return e ? -e : -EIO;
    }
    int64_t size = nbd_get_size(h);
    bool export_ro = nbd_is_read_only(h) == 1;
    if (size < 0 || (export_ro && !(opts->flags & BDEV_READ_ONLY))) {
        error_set(err, size < 0 ? -EIO : -EACCES, size < 0 ? "Could not get the size of '%s': %s"
                  : "'%s' is a read-only export%s", filename, size < 0 ? nbd_get_error() : "");
        nbd_close(h);
        return size < 0 ? -EIO : -EACCES;
    }
    /* A format the data probes as is not readable over NBD here. */
    if (!opts->format && size >= BLOCKDEV_PROBE_SIZE) {
        uint8_t buf[BLOCKDEV_PROBE_SIZE];
        if (nbd_pread(h, buf, sizeof(buf), 0, 0) == 0) {
            const struct blockdev_driver *drv = blockdev_probe_buf(buf);
            const char *name = drv && strcmp(drv->format_name, "raw") != 0 ? drv->format_name
                             : blockdev_probe_foreign(buf, sizeof(buf), NULL, 0);
            if (name) {
                nbd_close(h);
                return error_set(err, -ENOTSUP, "Image format '%s' over NBD is not supported "
                                 "(give the format raw to read the export as a raw disk)", name);
            }
        }
    }
    struct nbd_state *s = calloc(1, sizeof(*s));
    s->h = h;
    s->can_zero = nbd_can_zero(h) == 1;
    s->can_trim = nbd_can_trim(h) == 1;
    s->can_flush = nbd_can_flush(h) == 1;
    struct blockdev *bd = &s->bd;
    bd->drv = &nbd_driver;
    bd->filename = qemu_filename(h, filename);
    bd->read_only = opts->flags & BDEV_READ_ONLY;
    bd->parent = opts->parent;
    bd->size = (uint64_t)size;
    bd->probed = !opts->format;
    pthread_mutex_init(&s->block0_lock, NULL);
    *out = bd;
    return 0;
}

static void nbdc_close(struct blockdev *bd)
{
    struct nbd_state *s = nbd_of(bd);
    if (!bd->read_only && s->can_flush) {
        nbd_flush(s->h, 0);
    }
    nbd_shutdown(s->h, 0);
    nbd_close(s->h);
    pthread_mutex_destroy(&s->block0_lock);
    free(s);
}

static int nbdc_pread(struct blockdev *bd, uint64_t off, void *buf, size_t len, struct error *err)
{
    return nbd_pread(nbd_of(bd)->h, buf, len, off, 0) < 0 ? nbd_fail(bd, err, "Read") : 0;
}

static int nbdc_pwrite_data(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                            struct error *err)
{
    return nbd_pwrite(nbd_of(bd)->h, buf, len, off, 0) < 0 ? nbd_fail(bd, err, "Write") : 0;
}

/* A probed export is a probed raw image: its first sector is guarded as
 * raw.c guards a file's. Returns with block0_lock held when it returns 0
 * and *locked. */
static int nbdc_guard_block0(struct blockdev *bd, uint64_t off, const void *buf, size_t len, bool *locked,
                             struct error *err)
{
    struct nbd_state *s = nbd_of(bd);
    *locked = false;
    if (!bd->probed || off >= BLOCKDEV_PROBE_SIZE) {
        return 0;
    }
    /* An export shorter than a sector probes by what it has. */
    uint8_t sector[BLOCKDEV_PROBE_SIZE] = { 0 };
    size_t have = bd->size < sizeof(sector) ? (size_t)bd->size : sizeof(sector);
    pthread_mutex_lock(&s->block0_lock);
    int ret = have && nbd_pread(s->h, sector, have, 0, 0) < 0 ? nbd_fail(bd, err, "Read") : 0;
    if (ret == 0) {
        ret = blockdev_check_block0_write(bd, sector, off, buf, len, err);
    }
    if (ret < 0) {
        pthread_mutex_unlock(&s->block0_lock);
        return ret;
    }
    *locked = true;
    return 0;
}

static int nbdc_pwrite(struct blockdev *bd, uint64_t off, const void *buf, size_t len,
                       struct error *err)
{
    bool locked;
    int ret = nbdc_guard_block0(bd, off, buf, len, &locked, err);
    if (ret == 0) {
        ret = nbdc_pwrite_data(bd, off, buf, len, err);
    }
    if (locked) {
        pthread_mutex_unlock(&nbd_of(bd)->block0_lock);
    }
    return ret;
}

static int nbdc_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                             struct error *err)
{
    struct nbd_state *s = nbd_of(bd);
    if (!s->can_zero) {
        static const uint8_t zeros[65536];
        while (len) {
            size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
            int ret = nbdc_pwrite_data(bd, off, zeros, n, err);
            if (ret < 0) {
                return ret;
            }
            off += n;
            len -= n;
        }
        return 0;
    }
    uint32_t f = (flags & BDEV_ZERO_MAY_UNMAP) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
    return nbd_zero(s->h, len, off, f) < 0 ? nbd_fail(bd, err, "Write zeroes") : 0;
}

static int nbdc_pwrite_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, unsigned flags,
                              struct error *err)
{
    bool locked;
    size_t head = len < BLOCKDEV_PROBE_SIZE ? (size_t)len : BLOCKDEV_PROBE_SIZE;
    int ret = nbdc_guard_block0(bd, off, NULL, head, &locked, err);
    if (ret == 0) {
        ret = nbdc_write_zeroes(bd, off, len, flags, err);
    }
    if (locked) {
        pthread_mutex_unlock(&nbd_of(bd)->block0_lock);
    }
    return ret;
}

static int nbdc_discard(struct blockdev *bd, uint64_t off, uint64_t len, struct error *err)
{
    struct nbd_state *s = nbd_of(bd);
    if (!s->can_trim) {
        return 0;   /* discard is advisory */
    }
    return nbd_trim(s->h, len, off, 0) < 0 ? nbd_fail(bd, err, "Discard") : 0;
}

static int nbdc_flush(struct blockdev *bd, struct error *err)
{
    struct nbd_state *s = nbd_of(bd);
    if (!s->can_flush) {
        return 0;
    }
    return nbd_flush(s->h, 0) < 0 ? nbd_fail(bd, err, "Flush") : 0;
}

static int nbdc_truncate(struct blockdev *bd, uint64_t size, bool shrink_ok,
                         enum blockdev_prealloc prealloc, struct error *err)
{
    if (size == bd->size) {
        return 0;
    }
    return error_set(err, -ENOTSUP, "Cannot resize an NBD export");
}

struct status_walk {
    uint64_t len;
    uint32_t flags;
    bool got;
};

static int status_cb(void *opaque, const char *context, uint64_t offset, uint32_t *entries,
                     size_t nr, int *error)
{
    struct status_walk *w = opaque;
    if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || nr < 2 || w->got) {
        return 0;
    }
    w->len = entries[0];
    w->flags = entries[1];
    w->got = true;
    return 0;
}

static int nbdc_block_status(struct blockdev *bd, uint64_t off, uint64_t len,
                             struct block_status *st, struct error *err)
{
    struct nbd_state *s = nbd_of(bd);
    struct status_walk w = { 0 };
    uint64_t ask = len > (1u << 30) ? (1u << 30) : len;
    if (nbd_can_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1) {
        nbd_extent_callback cb = { .callback = status_cb, .user_data = &w };
        if (nbd_block_status(s->h, ask, off, cb, 0) < 0) {
            return nbd_fail(bd, err, "Block status");
        }
    }
    if (!w.got || w.len == 0) {
        w.len = ask;
        w.flags = 0;
    }
    if (w.len > len) {
        w.len = len;
    }
    bool zero = w.flags & LIBNBD_STATE_ZERO;
    bool hole = w.flags & LIBNBD_STATE_HOLE;
    *st = (struct block_status){
        .len = w.len,
        .flags = BDEV_STATUS_ALLOCATED | BDEV_STATUS_OFFSET_VALID |
                 (hole ? 0 : BDEV_STATUS_DATA) | (zero ? BDEV_STATUS_ZERO : 0),
        .host_offset = off,
        .file = bd->filename,
    };
    return 0;
}

static const struct blockdev_driver nbd_driver = {
    .format_name = "raw",
    .close = nbdc_close,
    .pread = nbdc_pread,
    .pwrite = nbdc_pwrite,
    .pwrite_zeroes = nbdc_pwrite_zeroes,
    .discard = nbdc_discard,
    .flush = nbdc_flush,
    .truncate = nbdc_truncate,
    .block_status = nbdc_block_status,
};
