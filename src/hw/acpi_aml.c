#include "hw/acpi_aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PKGLEN_RESERVED 4
#define DUAL_NAME_PREFIX 0x2e
#define MULTI_NAME_PREFIX 0x2f
#define MAX_SEGMENTS 16

static void fail(struct aml *a, int code, const char *what)
{
    if (!a->error) {
        a->error = code;
        a->what = what;
    }
}

void aml_init(struct aml *a)
{
    memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
    free(a->data);
    memset(a, 0, sizeof(*a));
}

int aml_finish(struct aml *a, struct error *err)
{
    if (!a->error && a->depth) {
        fail(a, -EINVAL, "an AML object left open");
    }
    return a->error ? error_set(err, a->error, "building AML: %s", a->what) : 0;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
    if (a->error) {
        return;
    }
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + n) {
            cap *= 2;
        }
        uint8_t *d = realloc(a->data, cap);
        if (!d) {
            fail(a, -ENOMEM, "out of memory");
            return;
        }
        a->data = d;
        a->cap = cap;
    }
    memcpy(a->data + a->len, p, n);
    a->len += n;
}

static void byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

static void le(struct aml *a, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        byte(a, (uint8_t)(v >> (8 * i)));
    }
}

void aml_op(struct aml *a, enum aml_op op)
{
    if (op > 0xff) {
        byte(a, (uint8_t)(op >> 8));
    }
    byte(a, (uint8_t)op);
}

void aml_int(struct aml *a, uint64_t v)
{
    if (v == 0 || v == 1) {
        byte(a, (uint8_t)v);    /* ZeroOp, OneOp */
    } else if (v == UINT64_MAX) {
        byte(a, AML_ONES);
    } else if (v <= 0xff) {
        byte(a, 0x0a);
        le(a, v, 1);
    } else if (v <= 0xffff) {
        byte(a, 0x0b);
        le(a, v, 2);
    } else if (v <= 0xffffffff) {
        byte(a, 0x0c);
        le(a, v, 4);
    } else {
        byte(a, 0x0e);
        le(a, v, 8);
    }
}

void aml_string(struct aml *a, const char *s)
{
    byte(a, AML_STRING);
    aml_bytes(a, s, strlen(s) + 1);
}

static bool name_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* One segment of up to four characters, padded with '_'. */
static const char *segment(const char *p, char out[4], bool *ok)
{
    int n = 0;
    memset(out, '_', 4);
    for (; *p && *p != '.'; p++, n++) {
        if (n == 4 || !name_char(*p, n == 0)) {
            *ok = false;
            return p;
        }
        out[n] = *p;
    }
    *ok = n > 0;
    return *p == '.' ? p + 1 : p;
}

void aml_name(struct aml *a, const char *path)
{
    const char *p = path;
    if (*p == '\\') {
        byte(a, '\\');
        p++;
    }
    while (*p == '^') {
        byte(a, '^');
        p++;
    }
    char segs[MAX_SEGMENTS][4];
    int n = 0;
    bool ok = true;
    while (*p && ok) {
        if (n == MAX_SEGMENTS) {
            ok = false;
            break;
        }
        p = segment(p, segs[n++], &ok);
    }
    if (!ok) {
        fail(a, -EINVAL, "bad AML name");
        return;
    }
    if (n == 0) {
        byte(a, 0x00);      /* NullName */
        return;
    }
    if (n == 2) {
        byte(a, DUAL_NAME_PREFIX);
    } else if (n > 2) {
        byte(a, MULTI_NAME_PREFIX);
        byte(a, (uint8_t)n);
    }
    aml_bytes(a, segs, 4 * (size_t)n);
}

/* Three letters of five bits each, then four hex digits, big-endian. */
void aml_eisaid(struct aml *a, const char *id)
{
    if (strlen(id) != 7) {
        fail(a, -EINVAL, "bad EISA id");
        return;
    }
    uint32_t v = (uint32_t)((id[0] - '@') & 0x1f) << 26 | (uint32_t)((id[1] - '@') & 0x1f) << 21 |
                 (uint32_t)((id[2] - '@') & 0x1f) << 16 | (uint32_t)strtoul(id + 3, NULL, 16);
    aml_int(a, __builtin_bswap32(v));
}

void aml_open(struct aml *a, enum aml_op op)
{
    if (a->depth == AML_MAX_DEPTH) {
        fail(a, -EINVAL, "AML nested too deeply");
        return;
    }
    aml_op(a, op);
    a->open[a->depth++] = a->len;
    le(a, 0, PKGLEN_RESERVED);
}

/* PkgLength counts itself: one byte up to 63, else a lead byte with the
 * low nibble and the byte count, then the rest 8 bits at a time. */
static int pkglen_bytes(size_t content)
{
    if (content + 1 <= 0x3f) {
        return 1;
    }
    return content + 2 < (1u << 12) ? 2 : content + 3 < (1u << 20) ? 3 : 4;
}

void aml_close(struct aml *a)
{
    if (a->error) {
        return;
    }
    if (a->depth == 0) {
        fail(a, -EINVAL, "AML close without open");
        return;
    }
    size_t at = a->open[--a->depth];
    size_t content = a->len - at - PKGLEN_RESERVED;
    int n = pkglen_bytes(content);
    size_t total = content + (size_t)n;
    if (total >= (1u << 28)) {
        fail(a, -E2BIG, "AML object too long");
        return;
    }
    uint8_t *p = a->data + at;
    if (n == 1) {
        p[0] = (uint8_t)total;
    } else {
        p[0] = (uint8_t)((n - 1) << 6 | (total & 0xf));
        for (int i = 1; i < n; i++) {
            p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
        }
    }
    memmove(p + n, p + PKGLEN_RESERVED, content);
    a->len -= (size_t)(PKGLEN_RESERVED - n);
}

void aml_buffer(struct aml *a, const void *p, size_t n)
{
    aml_open(a, AML_BUFFER);
    aml_int(a, n);
    aml_bytes(a, p, n);
    aml_close(a);
}

void aml_scope(struct aml *a, const char *name)
{
    aml_open(a, AML_SCOPE);
    aml_name(a, name);
}

void aml_device(struct aml *a, const char *name)
{
    aml_open(a, AML_DEVICE);
    aml_name(a, name);
}

void aml_method(struct aml *a, const char *name, int nargs, bool serialized)
{
    aml_open(a, AML_METHOD);
    aml_name(a, name);
    byte(a, (uint8_t)((nargs & 7) | (serialized ? 8 : 0)));
}

void aml_package(struct aml *a, unsigned n)
{
    if (n > 0xff) {
        fail(a, -E2BIG, "AML package of more than 255 elements");
    }
    aml_open(a, AML_PACKAGE);
    byte(a, (uint8_t)n);
}

void aml_name_decl(struct aml *a, const char *name)
{
    aml_op(a, AML_NAME);
    aml_name(a, name);
}
