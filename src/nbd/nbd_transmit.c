/* Serving one request of the transmission phase: the command, then a
 * simple reply or, once negotiated, structured reply chunks. Messages and
 * error values follow qemu-nbd 7.2 (and the protocol where they differ). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd_proto.h"
#include "nbd/nbd_session.h"
#include "nbd/nbd_wire.h"
#include "util/bswap.h"

/* 1 MiB of extents per context, like QEMU. */
#define MAX_EXTENTS ((1u << 20) / 8)


static int send_locked(struct nbd_session *s, struct iovec *iov, int n, struct error *err)
{
    pthread_mutex_lock(&s->send_lock);
    int ret = nbd_writev_full(s->fd, iov, n, err);
    pthread_mutex_unlock(&s->send_lock);
    return ret;
}

static int send_simple(struct nbd_session *s, const struct nbd_request *r, int errnum,
                       const void *data, size_t len, struct error *err)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_SIZE];
    st_be32(hdr, NBD_SIMPLE_REPLY_MAGIC);
    st_be32(hdr + 4, nbd_errno_to_wire(errnum));
    st_be64(hdr + 8, r->handle);
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };
    return send_locked(s, iov, len ? 2 : 1, err);
}

/* A structured chunk: header, a fixed part, then a variable payload. */
static int send_chunk(struct nbd_session *s, const struct nbd_request *r, uint16_t flags,
                      uint16_t type, const void *fixed, size_t fixed_len, const void *data,
                      size_t data_len, struct error *err)
{
    uint8_t hdr[NBD_CHUNK_HEADER_SIZE];
    st_be32(hdr, NBD_STRUCTURED_REPLY_MAGIC);
    st_be16(hdr + 4, flags);
    st_be16(hdr + 6, type);
    st_be64(hdr + 8, r->handle);
    st_be32(hdr + 16, (uint32_t)(fixed_len + data_len));
    struct iovec iov[3] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)fixed, .iov_len = fixed_len },
        { .iov_base = (void *)data, .iov_len = data_len },
    };
    return send_locked(s, iov, 3, err);
}

static int send_error_chunk(struct nbd_session *s, const struct nbd_request *r, int errnum,
                            const char *msg, struct error *err)
{
    uint8_t fixed[6];
    size_t len = strlen(msg);
    if (len > NBD_MAX_STRING_SIZE) {
        len = NBD_MAX_STRING_SIZE;
    }
    st_be32(fixed, nbd_errno_to_wire(errnum));
    st_be16(fixed + 4, (uint16_t)len);
    return send_chunk(s, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, fixed, sizeof(fixed), msg,
                      len, err);
}

/* Success without payload, or an error (errnum > 0) with its message. */
static int send_generic(struct nbd_session *s, const struct nbd_request *r, int errnum,
                        const char *msg, struct error *err)
{
    if (s->structured_reply && errnum) {
        return send_error_chunk(s, r, errnum, msg, err);
    }
    return send_simple(s, r, errnum, NULL, 0, err);
}

static int send_data_chunk(struct nbd_session *s, const struct nbd_request *r, uint64_t off,
                           const void *data, size_t len, bool done, struct error *err)
{
    uint8_t fixed[8];
    st_be64(fixed, off);
    return send_chunk(s, r, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, fixed,
                      sizeof(fixed), data, len, err);
}

static int send_hole_chunk(struct nbd_session *s, const struct nbd_request *r, uint64_t off,
                           uint32_t len, bool done, struct error *err)
{
    uint8_t fixed[12];
    st_be64(fixed, off);
    st_be32(fixed + 8, len);
    return send_chunk(s, r, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_HOLE, fixed,
                      sizeof(fixed), NULL, 0, err);
}

/* Holes go out as OFFSET_HOLE chunks, data as OFFSET_DATA chunks. */
static int sparse_read(struct nbd_session *s, const struct nbd_request *r, uint8_t *buf,
                       struct error *err)
{
    uint64_t done = 0;
    while (done < r->len) {
        uint64_t off = r->from + done;
        struct nbd_status st;
        struct error ioerr = {0};
        int ret = nbd_export_status(s->exp, off, r->len - done, &st, &ioerr);
        if (ret < 0) {
            char msg[64];
            snprintf(msg, sizeof(msg), "unable to check for holes: %s", strerror(-ret));
            return send_error_chunk(s, r, -ret, msg, err);
        }
        bool last = done + st.len == r->len;
        if (st.zero) {
            ret = send_hole_chunk(s, r, off, (uint32_t)st.len, last, err);
        } else {
            ret = nbd_export_read(s->exp, off, buf, st.len, &ioerr);
            if (ret < 0) {
                return send_error_chunk(s, r, -ret, "reading from file failed", err);
            }
            ret = send_data_chunk(s, r, off, buf, st.len, last, err);
        }
        if (ret < 0) {
            return ret;
        }
        done += st.len;
    }
    return 0;
}

static int read_into(struct nbd_session *s, const struct nbd_request *r, uint8_t *buf,
                     struct error *err)
{
    struct error ioerr = {0};
    int ret;
    if (r->flags & NBD_CMD_FLAG_FUA) {
        ret = nbd_export_flush(s->exp, &ioerr);
        if (ret < 0) {
            return send_generic(s, r, -ret, "flush failed", err);
        }
    }
    if (s->structured_reply && !(r->flags & NBD_CMD_FLAG_DF) && r->len) {
        return sparse_read(s, r, buf, err);
    }
    ret = nbd_export_read(s->exp, r->from, buf, r->len, &ioerr);
    if (ret < 0) {
        return send_generic(s, r, -ret, "reading from file failed", err);
    }
    if (!s->structured_reply) {
        return send_simple(s, r, 0, buf, r->len, err);
    }
    if (r->len) {
        return send_data_chunk(s, r, r->from, buf, r->len, true, err);
    }
    return send_chunk(s, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0, err);
}

static int cmd_read(struct nbd_session *s, const struct nbd_request *r, struct error *err)
{
    uint8_t *buf = malloc(r->len ? r->len : 1);
    if (!buf) {
        return send_generic(s, r, ENOMEM, "No memory", err);
    }
    int ret = read_into(s, r, buf, err);
    free(buf);
    return ret;
}

struct extents {
    uint8_t *wire;          /* (length, flags) pairs, big-endian */
    uint32_t count;
    uint32_t max;
};

/* Adds a run, merging it into the previous one when the flags match.
 * Returns false when the array is full. */
static bool extents_add(struct extents *e, uint64_t len, uint32_t flags)
{
    if (e->count > 0) {
        uint8_t *last = e->wire + (e->count - 1) * 8;
        uint64_t sum = ld_be32(last) + len;
        if (ld_be32(last + 4) == flags && sum <= UINT32_MAX) {
            st_be32(last, (uint32_t)sum);
            return true;
        }
    }
    if (e->count == e->max) {
        return false;
    }
    st_be32(e->wire + e->count * 8, (uint32_t)len);
    st_be32(e->wire + e->count * 8 + 4, flags);
    e->count++;
    return true;
}

static uint32_t context_flags(uint32_t context, const struct nbd_status *st)
{
    if (context == NBD_META_ID_ALLOCATION_DEPTH) {
        return st->depth;
    }
    return (st->data ? 0 : NBD_STATE_HOLE) | (st->zero ? NBD_STATE_ZERO : 0);
}

/* One run of a context's status at off: its length (at most len) and flags. */
static int context_status(struct nbd_session *s, uint32_t context, uint64_t off, uint64_t len,
                          uint64_t *run, uint32_t *flags, struct error *err)
{
    if (context >= NBD_META_ID_DIRTY_BITMAP) {
        bool dirty = false;
        *run = len;
        int ret = nbd_export_bitmap_status(s->exp, (int)(context - NBD_META_ID_DIRTY_BITMAP), off,
                                           run, &dirty, err);
        *flags = dirty ? NBD_STATE_DIRTY : 0;
        return ret;
    }
    struct nbd_status st;
    int ret = nbd_export_status(s->exp, off, len, &st, err);
    *run = st.len;
    *flags = ret < 0 ? 0 : context_flags(context, &st);
    return ret;
}

static int send_block_status(struct nbd_session *s, const struct nbd_request *r, uint32_t context,
                             bool last, struct error *err)
{
    struct extents e = { .max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS };
    uint64_t done = 0;
    int ret = 0;
    e.wire = malloc((size_t)e.max * 8);
    if (!e.wire) {
        return send_error_chunk(s, r, ENOMEM, "can't get block status", err);
    }
    while (done < r->len) {
        uint64_t run;
        uint32_t flags;
        struct error ioerr = {0};
        ret = context_status(s, context, r->from + done, r->len - done, &run, &flags, &ioerr);
        if (ret < 0) {
            break;
        }
        if (!extents_add(&e, run, flags)) {
            break;
        }
        done += run;
    }
    if (ret < 0) {
        ret = send_error_chunk(s, r, -ret, "can't get block status", err);
    } else {
        uint8_t fixed[4];
        st_be32(fixed, context);
        ret = send_chunk(s, r, last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_BLOCK_STATUS, fixed,
                         sizeof(fixed), e.wire, (size_t)e.count * 8, err);
        ret = ret < 0 ? ret : 0;
    }
    free(e.wire);
    return ret;
}

static int cmd_block_status(struct nbd_session *s, const struct nbd_request *r, struct error *err)
{
    if (!r->len) {
        return send_generic(s, r, EINVAL, "need non-zero length", err);
    }
    /* The selected contexts in id order; the last reply chunk says done. */
    uint32_t ids[2 + NBD_MAX_EXPORT_BITMAPS];
    int n = 0;
    if (s->meta_base_allocation) {
        ids[n++] = NBD_META_ID_BASE_ALLOCATION;
    }
    if (s->meta_allocation_depth) {
        ids[n++] = NBD_META_ID_ALLOCATION_DEPTH;
    }
    for (int i = 0; i < s->exp->n_bitmaps; i++) {
        if (s->meta_bitmaps & (1u << i)) {
            ids[n++] = NBD_META_ID_DIRTY_BITMAP + (uint32_t)i;
        }
    }
    if (n == 0) {
        return send_generic(s, r, EINVAL, "CMD_BLOCK_STATUS not negotiated", err);
    }
    int ret = 0;
    for (int i = 0; i < n && ret == 0; i++) {
        ret = send_block_status(s, r, ids[i], i == n - 1, err);
    }
    return ret;
}

/* Commands whose only answer is success or an error. */
static int cmd_generic(struct nbd_session *s, const struct nbd_request *r, struct error *err)
{
    struct error ioerr = {0};
    bool fua = r->flags & NBD_CMD_FLAG_FUA;
    const char *what;
    int ret;
    switch (r->type) {
    case NBD_CMD_WRITE:
        ret = nbd_export_write(s->exp, r->from, r->data, r->len, fua, &ioerr);
        what = "writing to file failed";
        break;
    case NBD_CMD_WRITE_ZEROES:
        ret = nbd_export_write_zeroes(s->exp, r->from, r->len, r->flags, &ioerr);
        what = "writing to file failed";
        break;
    case NBD_CMD_FLUSH:
        ret = nbd_export_flush(s->exp, &ioerr);
        what = "flush failed";
        break;
    case NBD_CMD_TRIM:
        ret = nbd_export_trim(s->exp, r->from, r->len, fua, &ioerr);
        what = "discard failed";
        break;
    case NBD_CMD_CACHE:
        ret = nbd_export_cache(s->exp, r->from, r->len, &ioerr);
        what = "caching data failed";
        break;
    default: {
        char msg[64];
        snprintf(msg, sizeof(msg), "invalid request type (%u) received", r->type);
        return send_generic(s, r, EINVAL, msg, err);
    }
    }
    return send_generic(s, r, ret < 0 ? -ret : 0, what, err);
}

int nbd_send_error(struct nbd_session *s, const struct nbd_request *r, int errnum,
                   const char *msg, struct error *err)
{
    return send_generic(s, r, errnum, msg, err);
}

int nbd_serve_request(struct nbd_session *s, const struct nbd_request *r, struct error *err)
{
    int ret;
    if (r->type == NBD_CMD_READ) {
        ret = cmd_read(s, r, err);
    } else if (r->type == NBD_CMD_BLOCK_STATUS) {
        ret = cmd_block_status(s, r, err);
    } else {
        ret = cmd_generic(s, r, err);
    }
    return ret < 0 ? ret : 0;
}
