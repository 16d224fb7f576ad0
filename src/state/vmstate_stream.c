#include "state/vmstate_stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "util/bswap.h"
#include "util/io.h"

#define BUF_SIZE (1u << 20)

static uint32_t crc_update(uint32_t crc, const void *p, size_t len)
{
    /* zlib's crc32 takes uInt lengths: feed big buffers in pieces. */
    const uint8_t *b = p;
    while (len) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, b, n);
        b += n;
        len -= n;
    }
    return crc;
}

static int fd_write(void *opaque, uint64_t pos, const void *buf, size_t len, struct error *err)
{
    int ret = io_pwrite_full(*(int *)opaque, buf, len, (off_t)pos);
    return ret < 0 ? error_set_errno(err, ret, "writing VM state") : 0;
}

static int fd_read(void *opaque, uint64_t pos, void *buf, size_t len, struct error *err)
{
    ssize_t n = io_pread_full(*(int *)opaque, buf, len, (off_t)pos);
    if (n < 0) {
        return error_set_errno(err, (int)n, "reading VM state");
    }
    if ((size_t)n < len) {
        return error_set(err, -EINVAL, "VM state is truncated at byte %llu", (unsigned long long)(pos + (uint64_t)n));
    }
    return 0;
}

struct vmstate_io vmstate_fd_io(int *fd)
{
    return (struct vmstate_io){ fd_write, fd_read, fd, false };
}

static int pipe_write(void *opaque, uint64_t pos, const void *buf, size_t len, struct error *err)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(*(int *)opaque, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return error_set_errno(err, n < 0 ? -errno : -EIO, "writing VM state");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pipe_read(void *opaque, uint64_t pos, void *buf, size_t len, struct error *err)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(*(int *)opaque, p + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return error_set_errno(err, -errno, "reading VM state");
        }
        if (n == 0) {
            return error_set(err, -EINVAL, "VM state ends early, at byte %llu", (unsigned long long)(pos + done));
        }
        done += (size_t)n;
    }
    return 0;
}

struct vmstate_io vmstate_pipe_io(int *fd)
{
    return (struct vmstate_io){ pipe_write, pipe_read, fd, true };
}

/* ---- writer ---- */

static int flush_buf(struct vmstate_writer *w, struct error *err)
{
    if (w->failed) {
        return w->failed;
    }
    if (w->buf_len) {
        int ret = w->io.write(w->io.opaque, w->pos, w->buf, w->buf_len, err);
        if (ret < 0) {
            return w->failed = ret;
        }
        w->pos += w->buf_len;
        w->buf_len = 0;
    }
    return 0;
}

int vmstate_writer_flush(struct vmstate_writer *w, struct error *err)
{
    return flush_buf(w, err);
}

static int put(struct vmstate_writer *w, const void *data, size_t len, struct error *err)
{
    const uint8_t *p = data;
    while (len) {
        if (w->buf_len == w->buf_cap) {
            int ret = flush_buf(w, err);
            if (ret < 0) {
                return ret;
            }
        }
        size_t n = w->buf_cap - w->buf_len < len ? w->buf_cap - w->buf_len : len;
        memcpy(w->buf + w->buf_len, p, n);
        w->buf_len += n;
        p += n;
        len -= n;
    }
    return w->failed;
}

int vmstate_writer_begin(struct vmstate_writer *w, struct vmstate_io io, struct error *err)
{
    memset(w, 0, sizeof(*w));
    w->io = io;
    w->buf_cap = BUF_SIZE;
    w->buf = malloc(w->buf_cap);
    if (!w->buf) {
        return w->failed = error_set(err, -ENOMEM, "out of memory");
    }
    uint8_t h[VMSTATE_HEADER_SIZE];
    memcpy(h, VMSTATE_MAGIC, 8);
    st_le32(h + 8, VMSTATE_VERSION);
    st_le32(h + 12, crc_update(0, h, 12));
    return put(w, h, sizeof(h), err);
}

int vmstate_section_begin(struct vmstate_writer *w, const char *name, uint32_t version, uint64_t len,
                          struct error *err)
{
    if (w->failed) {
        return w->failed;
    }
    if (w->in_section || strlen(name) > VMSTATE_NAME_LEN) {
        return w->failed = error_set(err, -EINVAL, "VM state section '%s' cannot start here", name);
    }
    uint8_t h[VMSTATE_SECTION_HEADER_SIZE] = { 0 };
    memcpy(h, name, strlen(name));
    st_le32(h + 32, version);
    st_le64(h + 36, len);
    st_le32(h + 44, crc_update(0, h, 44));
    snprintf(w->section, sizeof(w->section), "%s", name);
    w->in_section = true;
    w->section_left = len;
    w->crc = 0;
    return put(w, h, sizeof(h), err);
}

int vmstate_section_write(struct vmstate_writer *w, const void *data, size_t len, struct error *err)
{
    if (w->failed) {
        return w->failed;
    }
    if (!w->in_section || len > w->section_left) {
        return w->failed = error_set(err, -EINVAL, "VM state section '%s' is longer than announced", w->section);
    }
    w->section_left -= len;
    w->crc = crc_update(w->crc, data, len);
    return put(w, data, len, err);
}

int vmstate_section_end(struct vmstate_writer *w, struct error *err)
{
    if (w->failed) {
        return w->failed;
    }
    if (!w->in_section || w->section_left) {
        return w->failed = error_set(err, -EINVAL, "VM state section '%s' is shorter than announced", w->section);
    }
    uint8_t c[4];
    st_le32(c, w->crc);
    w->in_section = false;
    return put(w, c, 4, err);
}

int vmstate_write_section(struct vmstate_writer *w, const char *name, uint32_t version, const void *data,
                          size_t len, struct error *err)
{
    int ret;
    if ((ret = vmstate_section_begin(w, name, version, len, err)) < 0 ||
        (ret = vmstate_section_write(w, data, len, err)) < 0) {
        return ret;
    }
    return vmstate_section_end(w, err);
}

int64_t vmstate_writer_finish(struct vmstate_writer *w, struct error *err)
{
    int ret = vmstate_write_section(w, "end", 1, NULL, 0, err);
    if (ret == 0) {
        ret = flush_buf(w, err);
    }
    return ret < 0 ? ret : (int64_t)w->pos;
}

void vmstate_writer_free(struct vmstate_writer *w)
{
    free(w->buf);
    w->buf = NULL;
}

/* ---- reader ---- */

/* Raw bytes at r->pos through the read buffer. */
static int get(struct vmstate_reader *r, void *data, size_t len, struct error *err)
{
    uint8_t *p = data;
    if (r->limit != UINT64_MAX && (r->pos > r->limit || len > r->limit - r->pos)) {
        return error_set(err, -EINVAL, "VM state is truncated (%llu bytes, needs more than %llu)",
                         (unsigned long long)r->limit, (unsigned long long)r->pos);
    }
    while (len) {
        if (r->pos >= r->buf_pos && r->pos < r->buf_pos + r->buf_len) {
            size_t off = (size_t)(r->pos - r->buf_pos);
            size_t n = r->buf_len - off < len ? r->buf_len - off : len;
            memcpy(p, r->buf + off, n);
            p += n;
            len -= n;
            r->pos += n;
            continue;
        }
        if (len >= r->buf_cap) {    /* big reads go straight through */
            int ret = r->io.read(r->io.opaque, r->pos, p, len, err);
            if (ret < 0) {
                return ret;
            }
            r->pos += len;
            return 0;
        }
        size_t want = r->buf_cap;
        if (r->io.sequential && len < want) {
            want = len;     /* a socket may hold nothing beyond the stream */
        }
        if (r->limit != UINT64_MAX && r->limit - r->pos < want) {
            want = (size_t)(r->limit - r->pos);
        }
        int ret = r->io.read(r->io.opaque, r->pos, r->buf, want, err);
        if (ret < 0) {
            return ret;
        }
        r->buf_pos = r->pos;
        r->buf_len = want;
    }
    return 0;
}

int vmstate_reader_begin(struct vmstate_reader *r, struct vmstate_io io, uint64_t limit, struct error *err)
{
    memset(r, 0, sizeof(*r));
    r->io = io;
    r->limit = limit;
    r->buf_cap = BUF_SIZE;
    r->buf = malloc(r->buf_cap);
    if (!r->buf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    uint8_t h[VMSTATE_HEADER_SIZE];
    int ret = get(r, h, sizeof(h), err);
    if (ret < 0) {
        return ret;
    }
    if (memcmp(h, VMSTATE_MAGIC, 8) != 0) {
        return error_set(err, -EINVAL, "not a cowvisor VM state (bad magic)");
    }
    if (ld_le32(h + 12) != crc_update(0, h, 12)) {
        return error_set(err, -EINVAL, "VM state header is corrupted (checksum mismatch)");
    }
    uint32_t version = ld_le32(h + 8);
    if (version == 1) {
        return error_set(err, -ENOTSUP, "VM state version 1 (written before device state had one framing) is not "
                         "supported (this cowvisor reads version %u)", VMSTATE_VERSION);
    }
    if (version != VMSTATE_VERSION) {
        return error_set(err, -ENOTSUP, "VM state version %u is not supported (this cowvisor reads version %u)",
                         version, VMSTATE_VERSION);
    }
    return 0;
}

void vmstate_section_unread(struct vmstate_reader *r, int result)
{
    r->pending = result + 1;
}

int vmstate_next_section(struct vmstate_reader *r, struct error *err)
{
    uint8_t h[VMSTATE_SECTION_HEADER_SIZE];
    if (r->pending) {
        int result = r->pending - 1;
        r->pending = 0;
        return result;
    }
    if (r->section_left) {
        return error_set(err, -EINVAL, "VM state section '%s' was not read to its end", r->section);
    }
    int ret = get(r, h, sizeof(h), err);
    if (ret < 0) {
        return ret;
    }
    if (ld_le32(h + 44) != crc_update(0, h, 44)) {
        return error_set(err, -EINVAL, "VM state is corrupted: section header at byte %llu fails its checksum",
                         (unsigned long long)(r->pos - sizeof(h)));
    }
    if (memchr(h, 0, VMSTATE_NAME_LEN) == NULL) {
        return error_set(err, -EINVAL, "VM state section name is not terminated");
    }
    memcpy(r->section, h, VMSTATE_NAME_LEN);
    r->section[VMSTATE_NAME_LEN] = 0;
    r->section_version = ld_le32(h + 32);
    r->section_left = ld_le64(h + 36);
    r->crc = 0;
    if (r->limit != UINT64_MAX && r->section_left > r->limit - r->pos) {
        return error_set(err, -EINVAL, "VM state is truncated: section '%s' needs %llu bytes", r->section,
                         (unsigned long long)r->section_left);
    }
    if (strcmp(r->section, "end") == 0) {
        ret = vmstate_section_finish(r, err);
        return ret < 0 ? ret : 1;
    }
    return 0;
}

int vmstate_section_read(struct vmstate_reader *r, void *data, size_t len, struct error *err)
{
    if (len > r->section_left) {
        return error_set(err, -EINVAL, "VM state section '%s' is shorter than its contents need", r->section);
    }
    int ret = get(r, data, len, err);
    if (ret == 0) {
        r->section_left -= len;
        r->crc = crc_update(r->crc, data, len);
    }
    return ret;
}

int vmstate_section_finish(struct vmstate_reader *r, struct error *err)
{
    uint8_t tmp[4096];
    while (r->section_left) {
        size_t n = r->section_left < sizeof(tmp) ? (size_t)r->section_left : sizeof(tmp);
        int ret = vmstate_section_read(r, tmp, n, err);
        if (ret < 0) {
            return ret;
        }
    }
    uint8_t c[4];
    int ret = get(r, c, 4, err);
    if (ret < 0) {
        return ret;
    }
    if (ld_le32(c) != r->crc) {
        return error_set(err, -EINVAL, "VM state section '%s' is corrupted (checksum mismatch)", r->section);
    }
    return 0;
}

int vmstate_read_section(struct vmstate_reader *r, const char *name, uint32_t max_version, uint64_t max_len,
                         uint8_t **data, size_t *len, uint32_t *version, struct error *err)
{
    *data = NULL;
    int ret = vmstate_next_section(r, err);
    if (ret < 0) {
        return ret;
    }
    if (ret == 1 || strcmp(r->section, name) != 0) {
        return error_set(err, -EINVAL, "VM state has section '%s' where '%s' was expected",
                         ret == 1 ? "end" : r->section, name);
    }
    if (r->section_version > max_version) {
        return error_set(err, -ENOTSUP, "VM state section '%s' has version %u; this cowvisor reads up to %u",
                         name, r->section_version, max_version);
    }
    if (r->section_left > max_len) {
        return error_set(err, -EINVAL, "VM state section '%s' is too large (%llu bytes)", name,
                         (unsigned long long)r->section_left);
    }
    size_t n = (size_t)r->section_left;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    if ((ret = vmstate_section_read(r, buf, n, err)) < 0 || (ret = vmstate_section_finish(r, err)) < 0) {
        free(buf);
        return ret;
    }
    *data = buf;
    *len = n;
    if (version) {
        *version = r->section_version;
    }
    return 0;
}

void vmstate_reader_free(struct vmstate_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}
