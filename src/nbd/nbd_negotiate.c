/* The fixed newstyle handshake: the server's greeting, then the client's
 * options until NBD_OPT_EXPORT_NAME or NBD_OPT_GO picks the export. Replies
 * and their error texts follow qemu-nbd, so clients see the same server.
 * Helpers return -errno to drop the connection, 0 when an option is done
 * (possibly with an error reply) and, for reads, 1 to go on. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd_proto.h"
#include "nbd/nbd_session.h"
#include "nbd/nbd_wire.h"
#include "util/bswap.h"

#define OPT_REPLY_HEADER 20
#define MAX_ERROR_TEXT 256

static int send_rep(struct nbd_session *s, uint32_t type, const void *payload, uint32_t len,
                    struct error *err)
{
    uint8_t hdr[OPT_REPLY_HEADER];
    st_be64(hdr, NBD_REP_MAGIC);
    st_be32(hdr + 8, s->opt);
    st_be32(hdr + 12, type);
    st_be32(hdr + 16, len);
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)payload, .iov_len = len },
    };
    return nbd_writev_full(s->fd, iov, len ? 2 : 1, err);
}

static int send_rep_verr(struct nbd_session *s, uint32_t type, struct error *err,
                         const char *fmt, va_list ap)
{
    char msg[MAX_ERROR_TEXT];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return send_rep(s, type, msg, (uint32_t)strlen(msg), err);
}

static int __attribute__((format(printf, 4, 5)))
send_rep_err(struct nbd_session *s, uint32_t type, struct error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = send_rep_verr(s, type, err, fmt, ap);
    va_end(ap);
    return ret;
}

/* Drops the rest of the option's payload, then replies with an error. */
static int __attribute__((format(printf, 4, 5)))
opt_drop(struct nbd_session *s, uint32_t type, struct error *err, const char *fmt, ...)
{
    int ret = nbd_drop(s->fd, s->optlen, err);
    s->optlen = 0;
    if (ret < 0) {
        return ret;
    }
    va_list ap;
    va_start(ap, fmt);
    ret = send_rep_verr(s, type, err, fmt, ap);
    va_end(ap);
    return ret;
}

/* Reads size bytes of the option's payload; a payload too short for them
 * gets NBD_REP_ERR_INVALID. Returns 1 when read, 0 when refused, -errno. */
static int opt_read(struct nbd_session *s, void *buf, size_t size, bool check_nul,
                    struct error *err)
{
    if (size > s->optlen) {
        return opt_drop(s, NBD_REP_ERR_INVALID, err, "Inconsistent lengths in option %s",
                        nbd_opt_name(s->opt));
    }
    s->optlen -= (uint32_t)size;
    int ret = nbd_read_full(s->fd, buf, size, "option payload", err);
    if (ret < 0) {
        return ret;
    }
    if (check_nul && memchr(buf, 0, size)) {
        return opt_drop(s, NBD_REP_ERR_INVALID, err, "Unexpected embedded NUL in option %s",
                        nbd_opt_name(s->opt));
    }
    return 1;
}

/* A length-prefixed string (export name, query). *out is malloc'd. */
static int opt_read_string(struct nbd_session *s, char **out, uint32_t *out_len,
                           struct error *err)
{
    uint8_t be[4];
    *out = NULL;
    int ret = opt_read(s, be, 4, false, err);
    if (ret <= 0) {
        return ret;
    }
    uint32_t len = ld_be32(be);
    if (len > NBD_MAX_STRING_SIZE) {
        return opt_drop(s, NBD_REP_ERR_INVALID, err, "Invalid name length: %u", len);
    }
    char *str = malloc(len + 1);
    if (!str) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    ret = opt_read(s, str, len, true, err);
    if (ret <= 0) {
        free(str);
        return ret;
    }
    str[len] = '\0';
    *out = str;
    if (out_len) {
        *out_len = len;
    }
    return 1;
}

static int reject_length(struct nbd_session *s, struct error *err)
{
    return opt_drop(s, NBD_REP_ERR_INVALID, err, "option '%s' has unexpected length",
                    nbd_opt_name(s->opt));
}

static bool is_export(const struct nbd_session *s, const char *name)
{
    return strcmp(name, s->exp->name) == 0;
}

/* Names in error replies are cut like QEMU's, to keep replies short. */
static void sane_name(const char *name, char *out, size_t size)
{
    if (strnlen(name, 80) < 80) {
        snprintf(out, size, "%s", name);
    } else {
        snprintf(out, size, "%.80s...", name);
    }
}

static uint16_t client_flags(const struct nbd_session *s)
{
    uint16_t flags = s->exp->flags;
    if (s->structured_reply) {
        flags |= NBD_FLAG_SEND_DF;
    }
    return flags;
}

static int handle_list(struct nbd_session *s, struct error *err)
{
    if (s->optlen) {
        return reject_length(s, err);
    }
    const char *name = s->exp->name;
    const char *desc = s->exp->description ? s->exp->description : "";
    size_t nlen = strlen(name), dlen = strlen(desc);
    uint8_t *p = malloc(4 + nlen + dlen);
    if (!p) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    st_be32(p, (uint32_t)nlen);
    memcpy(p + 4, name, nlen);
    memcpy(p + 4 + nlen, desc, dlen);
    int ret = send_rep(s, NBD_REP_SERVER, p, (uint32_t)(4 + nlen + dlen), err);
    free(p);
    return ret < 0 ? ret : send_rep(s, NBD_REP_ACK, NULL, 0, err);
}

/* NBD_OPT_EXPORT_NAME has no error reply: a wrong name drops the client. */
static int handle_export_name(struct nbd_session *s, bool no_zeroes, struct error *err)
{
    if (s->optlen > NBD_MAX_STRING_SIZE) {
        return error_set(err, -EINVAL, "Bad length received");
    }
    char name[NBD_MAX_STRING_SIZE + 1];
    int ret = nbd_read_full(s->fd, name, s->optlen, "export name", err);
    if (ret < 0) {
        return ret;
    }
    name[s->optlen] = '\0';
    s->optlen = 0;
    if (!is_export(s, name)) {
        return error_set(err, -EINVAL, "export not found");
    }
    uint8_t reply[8 + 2 + 124] = {0};
    st_be64(reply, s->exp->size);
    st_be16(reply + 8, client_flags(s));
    return nbd_write_full(s->fd, reply, no_zeroes ? 10 : sizeof(reply), err);
}

static int send_info(struct nbd_session *s, uint16_t type, const void *data, uint32_t len,
                     struct error *err)
{
    uint8_t buf[2 + NBD_MAX_STRING_SIZE];
    st_be16(buf, type);
    memcpy(buf + 2, data, len);
    return send_rep(s, NBD_REP_INFO, buf, 2 + len, err);
}

/* NBD_OPT_INFO and NBD_OPT_GO. Returns 1 when GO succeeded. */
static int handle_info(struct nbd_session *s, struct error *err)
{
    char *name;
    uint32_t namelen = 0;
    int ret = opt_read_string(s, &name, &namelen, err);
    if (ret <= 0) {
        return ret;
    }
    uint8_t be[2];
    ret = opt_read(s, be, 2, false, err);
    bool send_name = false;
    for (uint16_t n = ret > 0 ? ld_be16(be) : 0; ret > 0 && n > 0; n--) {
        ret = opt_read(s, be, 2, false, err);
        if (ret > 0 && ld_be16(be) == NBD_INFO_NAME) {
            send_name = true;
        }
        /* The block size items are sent whether asked for or not. */
    }
    if (ret > 0 && s->optlen) {
        ret = reject_length(s, err);
    } else if (ret > 0 && !is_export(s, name)) {
        char sane[96];
        sane_name(name, sane, sizeof(sane));
        ret = send_rep_err(s, NBD_REP_ERR_UNKNOWN, err, "export '%s' not present", sane);
    } else if (ret > 0) {
        ret = send_name ? send_info(s, NBD_INFO_NAME, name, namelen, err) : 0;
        if (ret == 0 && s->exp->description) {
            ret = send_info(s, NBD_INFO_DESCRIPTION, s->exp->description,
                            (uint32_t)strlen(s->exp->description), err);
        }
        if (ret == 0) {
            /* Any alignment works (blockdev is byte-granular); 4 KiB is
             * preferred and 32 MiB the largest request, like qemu-nbd. */
            uint8_t sizes[12];
            st_be32(sizes, 1);
            st_be32(sizes + 4, 4096);
            st_be32(sizes + 8, NBD_MAX_PAYLOAD);
            ret = send_info(s, NBD_INFO_BLOCK_SIZE, sizes, sizeof(sizes), err);
        }
        if (ret == 0) {
            uint8_t info[10];
            st_be64(info, s->exp->size);
            st_be16(info + 8, client_flags(s));
            ret = send_info(s, NBD_INFO_EXPORT, info, sizeof(info), err);
        }
        if (ret == 0) {
            ret = send_rep(s, NBD_REP_ACK, NULL, 0, err);
        }
        if (ret == 0 && s->opt == NBD_OPT_GO) {
            ret = 1;
        }
    }
    free(name);
    return ret;
}

/* Selected contexts of a LIST or SET_META_CONTEXT. */
struct meta_choice {
    bool base_allocation;
    bool allocation_depth;
    uint32_t bitmaps;
};

static uint32_t all_bitmaps(const struct nbd_export *exp)
{
    return exp->n_bitmaps ? (uint32_t)((1ULL << exp->n_bitmaps) - 1) : 0;
}

/* "dirty-bitmap:NAME" (the part after "qemu:"); LIST takes "dirty-bitmap:" for all. */
static void meta_query_bitmap(const struct nbd_session *s, const char *q, bool list,
                              struct meta_choice *c)
{
    if (!*q) {
        c->bitmaps |= list ? all_bitmaps(s->exp) : 0;
        return;
    }
    for (int i = 0; i < s->exp->n_bitmaps; i++) {
        if (strcmp(q, s->exp->bitmaps[i]) == 0) {
            c->bitmaps |= 1u << i;
        }
    }
}

/* One query: "base:allocation", "qemu:allocation-depth",
 * "qemu:dirty-bitmap:NAME", and for LIST the wildcards "base:", "qemu:" and
 * "qemu:dirty-bitmap:". Unknown ones select nothing. */
static void meta_query(const struct nbd_session *s, const char *q, struct meta_choice *c)
{
    bool list = s->opt == NBD_OPT_LIST_META_CONTEXT;
    if (strncmp(q, "base:", 5) == 0) {
        q += 5;
        if ((list && !*q) || strcmp(q, "allocation") == 0) {
            c->base_allocation = true;
        }
    } else if (strncmp(q, "qemu:", 5) == 0) {
        q += 5;
        if ((list && !*q) || strcmp(q, "allocation-depth") == 0) {
            c->allocation_depth |= s->exp->allocation_depth;
        }
        if (list && !*q) {
            c->bitmaps |= all_bitmaps(s->exp);
        } else if (strncmp(q, "dirty-bitmap:", 13) == 0) {
            meta_query_bitmap(s, q + 13, list, c);
        }
    }
}

static int send_meta_context(struct nbd_session *s, const char *name, uint32_t id,
                             struct error *err)
{
    uint8_t buf[4 + 32 + NBD_MAX_STRING_SIZE];
    size_t len = strlen(name);
    /* LIST replies carry id 0: the ids only mean something after SET. */
    st_be32(buf, s->opt == NBD_OPT_LIST_META_CONTEXT ? 0 : id);
    memcpy(buf + 4, name, len);
    return send_rep(s, NBD_REP_META_CONTEXT, buf, (uint32_t)(4 + len), err);
}

static int read_queries(struct nbd_session *s, uint32_t count, struct meta_choice *c,
                        struct error *err)
{
    for (uint32_t i = 0; i < count; i++) {
        uint8_t be[4];
        int ret = opt_read(s, be, 4, false, err);
        if (ret <= 0) {
            return ret;
        }
        uint32_t len = ld_be32(be);
        if (len > NBD_MAX_STRING_SIZE) {
            /* Too long to be one of ours: skip it. */
            if (len > s->optlen) {
                return opt_drop(s, NBD_REP_ERR_INVALID, err, "Inconsistent lengths in option %s",
                                nbd_opt_name(s->opt));
            }
            s->optlen -= len;
            ret = nbd_drop(s->fd, len, err);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        char query[NBD_MAX_STRING_SIZE + 1];
        ret = opt_read(s, query, len, true, err);
        if (ret <= 0) {
            return ret;
        }
        query[len] = '\0';
        meta_query(s, query, c);
    }
    return 1;
}

static int handle_meta_context(struct nbd_session *s, struct error *err)
{
    bool set = s->opt == NBD_OPT_SET_META_CONTEXT;
    if (set && !s->structured_reply) {
        return opt_drop(s, NBD_REP_ERR_INVALID, err,
                        "request option '%s' when structured reply is not negotiated",
                        nbd_opt_name(s->opt));
    }
    if (set) {
        /* A SET replaces the previous choice, even when it fails. */
        s->meta_base_allocation = s->meta_allocation_depth = false;
        s->meta_bitmaps = 0;
    }
    char *name;
    int ret = opt_read_string(s, &name, NULL, err);
    if (ret <= 0) {
        return ret;
    }
    bool known = is_export(s, name);
    char sane[96];
    sane_name(name, sane, sizeof(sane));
    free(name);
    if (!known) {
        return opt_drop(s, NBD_REP_ERR_UNKNOWN, err, "export '%s' not present", sane);
    }
    uint8_t be[4];
    ret = opt_read(s, be, 4, false, err);
    if (ret <= 0) {
        return ret;
    }
    uint32_t count = ld_be32(be);
    struct meta_choice c = {0};
    if (!set && count == 0) {
        c.base_allocation = true;
        c.allocation_depth = s->exp->allocation_depth;
        c.bitmaps = all_bitmaps(s->exp);
    } else {
        ret = read_queries(s, count, &c, err);
        if (ret <= 0) {
            return ret;
        }
    }
    if (s->optlen) {
        return reject_length(s, err);
    }
    if (c.base_allocation) {
        ret = send_meta_context(s, "base:allocation", NBD_META_ID_BASE_ALLOCATION, err);
    }
    if (ret >= 0 && c.allocation_depth) {
        ret = send_meta_context(s, "qemu:allocation-depth", NBD_META_ID_ALLOCATION_DEPTH, err);
    }
    for (int i = 0; ret >= 0 && i < s->exp->n_bitmaps; i++) {
        if (c.bitmaps & (1u << i)) {
            char context[32 + NBD_MAX_STRING_SIZE];
            snprintf(context, sizeof(context), "qemu:dirty-bitmap:%s", s->exp->bitmaps[i]);
            ret = send_meta_context(s, context, NBD_META_ID_DIRTY_BITMAP + (uint32_t)i, err);
        }
    }
    if (ret >= 0) {
        ret = send_rep(s, NBD_REP_ACK, NULL, 0, err);
    }
    if (ret >= 0 && set) {
        s->meta_base_allocation = c.base_allocation;
        s->meta_allocation_depth = c.allocation_depth;
        s->meta_bitmaps = c.bitmaps;
    }
    return ret < 0 ? ret : 0;
}

static int handle_simple_option(struct nbd_session *s, struct error *err)
{
    switch (s->opt) {
    case NBD_OPT_LIST:
        return handle_list(s, err);
    case NBD_OPT_STARTTLS:
        if (s->optlen) {
            return reject_length(s, err);
        }
        return send_rep_err(s, NBD_REP_ERR_POLICY, err, "TLS not configured");
    case NBD_OPT_STRUCTURED_REPLY:
        if (s->optlen) {
            return reject_length(s, err);
        }
        if (s->structured_reply) {
            return send_rep_err(s, NBD_REP_ERR_INVALID, err, "structured reply already negotiated");
        }
        s->structured_reply = true;
        return send_rep(s, NBD_REP_ACK, NULL, 0, err);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return handle_meta_context(s, err);
    default:
        return opt_drop(s, NBD_REP_ERR_UNSUP, err, "Unsupported option %u (%s)", s->opt,
                        nbd_opt_name(s->opt));
    }
}

static int read_option_header(struct nbd_session *s, struct error *err)
{
    uint8_t hdr[16];
    int ret = nbd_read_full(s->fd, hdr, sizeof(hdr), "option header", err);
    if (ret < 0) {
        return ret;
    }
    if (ld_be64(hdr) != NBD_OPTS_MAGIC) {
        return error_set(err, -EINVAL, "Bad magic received");
    }
    s->opt = ld_be32(hdr + 8);
    s->optlen = ld_be32(hdr + 12);
    if (s->optlen > NBD_MAX_PAYLOAD) {
        return error_set(err, -EINVAL, "len (%u) is larger than max len (%u)", s->optlen,
                         NBD_MAX_PAYLOAD);
    }
    return 0;
}

int nbd_negotiate(struct nbd_session *s, struct error *err)
{
    uint8_t greeting[18];
    st_be64(greeting, NBD_INIT_MAGIC);
    st_be64(greeting + 8, NBD_OPTS_MAGIC);
    st_be16(greeting + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    int ret = nbd_write_full(s->fd, greeting, sizeof(greeting), err);
    if (ret < 0) {
        return ret;
    }
    uint8_t be[4];
    ret = nbd_read_full(s->fd, be, 4, "client flags", err);
    if (ret < 0) {
        return ret;
    }
    uint32_t flags = ld_be32(be);
    bool fixed = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
    bool no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    flags &= ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    if (flags) {
        return error_set(err, -EINVAL, "Unknown client flags 0x%x received", flags);
    }
    for (;;) {
        ret = read_option_header(s, err);
        if (ret < 0) {
            return ret;
        }
        if (s->opt == NBD_OPT_EXPORT_NAME) {
            return handle_export_name(s, no_zeroes, err);
        }
        if (!fixed) {
            /* Plain newstyle clients can only name an export. */
            return error_set(err, -EINVAL, "Unsupported option %u (%s)", s->opt,
                             nbd_opt_name(s->opt));
        }
        if (s->opt == NBD_OPT_ABORT) {
            /* Reply if we can; the client may already be gone. */
            send_rep(s, NBD_REP_ACK, NULL, 0, NULL);
            return 1;
        }
        if (s->opt == NBD_OPT_INFO || s->opt == NBD_OPT_GO) {
            ret = handle_info(s, err);
            if (ret == 1) {
                return 0;
            }
        } else {
            ret = handle_simple_option(s, err);
        }
        if (ret < 0) {
            return ret;
        }
    }
}
