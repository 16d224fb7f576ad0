/* The transmission phase: requests served in order, each answered with a
 * simple reply or, once negotiated, structured reply chunks. A request the
 * server can parse but not honour gets an error reply; only a broken stream
 * (bad magic, truncated message, a write payload we could not take) drops
 * the connection. Checks and messages follow qemu-nbd 7.2. */
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

struct request {
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t from;
    uint32_t len;
};

static int send_simple(struct nbd_session *s, const struct request *r, int errnum,
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
    return nbd_writev_full(s->fd, iov, len ? 2 : 1, err);
}

/* A structured chunk: header, a fixed part, then a variable payload. */
static int send_chunk(struct nbd_session *s, const struct request *r, uint16_t flags,
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
    return nbd_writev_full(s->fd, iov, 3, err);
}

static int send_error_chunk(struct nbd_session *s, const struct request *r, int errnum,
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
static int send_generic(struct nbd_session *s, const struct request *r, int errnum,
                        const char *msg, struct error *err)
{
    if (s->structured_reply && errnum) {
        return send_error_chunk(s, r, errnum, msg, err);
    }
    return send_simple(s, r, errnum, NULL, 0, err);
}

static int send_data_chunk(struct nbd_session *s, const struct request *r, uint64_t off,
                           const void *data, size_t len, bool done, struct error *err)
{
    uint8_t fixed[8];
    st_be64(fixed, off);
    return send_chunk(s, r, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, fixed,
                      sizeof(fixed), data, len, err);
}

static int send_hole_chunk(struct nbd_session *s, const struct request *r, uint64_t off,
                           uint32_t len, bool done, struct error *err)
{
    uint8_t fixed[12];
    st_be64(fixed, off);
    st_be32(fixed + 8, len);
    return send_chunk(s, r, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_HOLE, fixed,
                      sizeof(fixed), NULL, 0, err);
}

static int ensure_buffer(struct nbd_session *s, size_t len, struct error *err)
{
    if (len <= s->buf_size) {
        return 0;
    }
    uint8_t *p = realloc(s->buf, len);
    if (!p) {
        return error_set(err, -ENOMEM, "No memory");
    }
    s->buf = p;
    s->buf_size = len;
    return 0;
}

/* Holes go out as OFFSET_HOLE chunks, data as OFFSET_DATA chunks. */
static int sparse_read(struct nbd_session *s, const struct request *r, struct error *err)
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
            ret = nbd_export_read(s->exp, off, s->buf, st.len, &ioerr);
            if (ret < 0) {
                return send_error_chunk(s, r, -ret, "reading from file failed", err);
            }
            ret = send_data_chunk(s, r, off, s->buf, st.len, last, err);
        }
        if (ret < 0) {
            return ret;
        }
        done += st.len;
    }
    return 0;
}

static int cmd_read(struct nbd_session *s, const struct request *r, struct error *err)
{
    struct error ioerr = {0};
    int ret = ensure_buffer(s, r->len, err);
    if (ret < 0) {
        return send_generic(s, r, ENOMEM, "No memory", err);
    }
    if (r->flags & NBD_CMD_FLAG_FUA) {
        ret = nbd_export_flush(s->exp, &ioerr);
        if (ret < 0) {
            return send_generic(s, r, -ret, "flush failed", err);
        }
    }
    if (s->structured_reply && !(r->flags & NBD_CMD_FLAG_DF) && r->len) {
        return sparse_read(s, r, err);
    }
    ret = nbd_export_read(s->exp, r->from, s->buf, r->len, &ioerr);
    if (ret < 0) {
        return send_generic(s, r, -ret, "reading from file failed", err);
    }
    if (!s->structured_reply) {
        return send_simple(s, r, 0, s->buf, r->len, err);
    }
    if (r->len) {
        return send_data_chunk(s, r, r->from, s->buf, r->len, true, err);
    }
    return send_chunk(s, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0, err);
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

static int send_block_status(struct nbd_session *s, const struct request *r, uint32_t context,
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
        struct nbd_status st;
        struct error ioerr = {0};
        ret = nbd_export_status(s->exp, r->from + done, r->len - done, &st, &ioerr);
        if (ret < 0) {
            break;
        }
        if (!extents_add(&e, st.len, context_flags(context, &st))) {
            break;
        }
        done += st.len;
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

static int cmd_block_status(struct nbd_session *s, const struct request *r, struct error *err)
{
    if (!r->len) {
        return send_generic(s, r, EINVAL, "need non-zero length", err);
    }
    if (!s->meta_base_allocation && !s->meta_allocation_depth) {
        return send_generic(s, r, EINVAL, "CMD_BLOCK_STATUS not negotiated", err);
    }
    int ret = 0;
    if (s->meta_base_allocation) {
        ret = send_block_status(s, r, NBD_META_ID_BASE_ALLOCATION, !s->meta_allocation_depth, err);
    }
    if (ret == 0 && s->meta_allocation_depth) {
        ret = send_block_status(s, r, NBD_META_ID_ALLOCATION_DEPTH, true, err);
    }
    return ret;
}

/* Commands whose only answer is success or an error. */
static int cmd_generic(struct nbd_session *s, const struct request *r, struct error *err)
{
    struct error ioerr = {0};
    bool fua = r->flags & NBD_CMD_FLAG_FUA;
    const char *what;
    int ret;
    switch (r->type) {
    case NBD_CMD_WRITE:
        ret = nbd_export_write(s->exp, r->from, s->buf, r->len, fua, &ioerr);
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

static uint16_t valid_flags(const struct nbd_session *s, uint16_t type)
{
    uint16_t valid = NBD_CMD_FLAG_FUA;
    if (type == NBD_CMD_READ && s->structured_reply) {
        valid |= NBD_CMD_FLAG_DF;
    } else if (type == NBD_CMD_WRITE_ZEROES) {
        valid |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    } else if (type == NBD_CMD_BLOCK_STATUS) {
        valid |= NBD_CMD_FLAG_REQ_ONE;
    }
    return valid;
}

/* Checks a request the way qemu-nbd does; fills msg and returns a positive
 * errno for the error reply, or 0. */
static int check_request(const struct nbd_session *s, const struct request *r, char *msg,
                         size_t size)
{
    const struct nbd_export *exp = s->exp;
    bool writes = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ||
                  r->type == NBD_CMD_TRIM;
    if ((exp->flags & NBD_FLAG_READ_ONLY) && writes) {
        snprintf(msg, size, "Export is read-only");
        return EROFS;
    }
    if (r->from > exp->size || r->len > exp->size - r->from) {
        snprintf(msg, size, "operation past EOF; From: %" PRIu64 ", Len: %u, Size: %" PRIu64,
                 r->from, r->len, exp->size);
        return (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES) ? ENOSPC : EINVAL;
    }
    if (r->flags & ~valid_flags(s, r->type)) {
        snprintf(msg, size, "unsupported flags for command %s (got 0x%x)", nbd_cmd_name(r->type),
                 r->flags);
        return EINVAL;
    }
    return 0;
}

static bool has_payload_limit(uint16_t type)
{
    return type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_CACHE;
}

/* Returns 1 to go on, 0 when the client disconnected, -errno to drop it. */
static int serve_one(struct nbd_session *s, struct error *err)
{
    uint8_t hdr[NBD_REQUEST_SIZE];
    int ret = nbd_read_eof(s->fd, hdr, sizeof(hdr), "request", err);
    if (ret <= 0) {
        return ret;
    }
    uint32_t magic = ld_be32(hdr);
    if (magic != NBD_REQUEST_MAGIC) {
        return error_set(err, -EINVAL, "invalid magic (got 0x%x)", magic);
    }
    struct request r = {
        .flags = ld_be16(hdr + 4),
        .type = ld_be16(hdr + 6),
        .handle = ld_be64(hdr + 8),
        .from = ld_be64(hdr + 16),
        .len = ld_be32(hdr + 24),
    };
    if (r.type == NBD_CMD_DISC) {
        return 0;
    }
    char msg[160];
    int bad = 0;
    if (has_payload_limit(r.type) && r.len > NBD_MAX_PAYLOAD) {
        snprintf(msg, sizeof(msg), "len (%u) is larger than max len (%u)", r.len, NBD_MAX_PAYLOAD);
        bad = EINVAL;
    } else if (r.type == NBD_CMD_WRITE) {
        if (ensure_buffer(s, r.len, err) < 0) {
            return -ENOMEM;
        }
        ret = nbd_read_full(s->fd, s->buf, r.len, "CMD_WRITE data", err);
        if (ret < 0) {
            return ret;
        }
    }
    if (!bad) {
        bad = check_request(s, &r, msg, sizeof(msg));
    }
    if (bad) {
        ret = send_generic(s, &r, bad, msg, err);
        if (ret == 0 && r.type == NBD_CMD_WRITE && r.len > NBD_MAX_PAYLOAD) {
            /* Its payload is still in the stream: nothing after it parses. */
            return error_set(err, -EINVAL, "%s", msg);
        }
        return ret < 0 ? ret : 1;
    }
    if (r.type == NBD_CMD_READ) {
        ret = cmd_read(s, &r, err);
    } else if (r.type == NBD_CMD_BLOCK_STATUS) {
        ret = cmd_block_status(s, &r, err);
    } else {
        ret = cmd_generic(s, &r, err);
    }
    return ret < 0 ? ret : 1;
}

int nbd_transmit(struct nbd_session *s, struct error *err)
{
    int ret;
    while ((ret = serve_one(s, err)) > 0) {
    }
    return ret;
}
