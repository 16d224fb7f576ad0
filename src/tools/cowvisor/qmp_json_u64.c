/* See qmp_json_u64.h. The mark is U+0001, "u64:", a per-process random tag
 * and the digits: a client's own strings echoed back cannot carry the tag,
 * so no text of theirs turns into a number. The number is shorter than
 * its marked string: the text is rewritten in place. */
#include "qmp_json_u64.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static char mark_tag[24];       /* "u64:" and 16 hex digits, then ':' */

static const char *tag(void)
{
    if (!mark_tag[0]) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
            r = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&r;
        }
        snprintf(mark_tag, sizeof(mark_tag), "u64:%016" PRIx64 ":", r);
    }
    return mark_tag;
}

json_t *qmp_json_u64(uint64_t v)
{
    if (v <= INT64_MAX) {
        return json_integer((json_int_t)v);
    }
    char s[64];
    snprintf(s, sizeof(s), "\x01%s%" PRIu64, tag(), v);
    return json_string(s);
}

/* A mark inside a longer string (an error message that quotes a value)
 * keeps only its digits: the tag never reaches a client, who could
 * otherwise forge marks. */
static void scrub_embedded_marks(char *text, const char *mark)
{
    size_t mlen = strlen(mark);
    for (char *p = strstr(text, mark); p; p = strstr(p, mark)) {
        memmove(p, p + mlen, strlen(p + mlen) + 1);
    }
}

char *qmp_json_dumps(const json_t *j, size_t flags)
{
    char *text = json_dumps(j, flags);
    if (!text || !mark_tag[0]) {
        return text;
    }
    char open[48];
    int olen = snprintf(open, sizeof(open), "\"\\u0001%s", mark_tag);
    for (char *p = strstr(text, open); p; p = strstr(p, open)) {
        char *digits = p + olen, *end = digits + strspn(digits, "0123456789");
        if (*end != '"') {
            p = end;        /* not one of ours after all */
            continue;
        }
        size_t n = (size_t)(end - digits);
        memmove(p, digits, n);
        memmove(p + n, end + 1, strlen(end + 1) + 1);
        p += n;
    }
    scrub_embedded_marks(text, open + 1);
    return text;
}

/* ---- input ---- */

/* The integer token at text[0..len): -1 when it fits int64 (jansson reads
 * it), 0 when it fits uint64 (the mark), 1 when it is beyond both (a real). */
static int big_integer_kind(const char *text, size_t len)
{
    char digits[32];
    if (len >= sizeof(digits)) {
        return 1;
    }
    memcpy(digits, text, len);
    digits[len] = 0;
    errno = 0;
    (void)strtoll(digits, NULL, 10);
    if (errno != ERANGE) {
        return -1;
    }
    if (digits[0] == '-') {
        return 1;
    }
    errno = 0;
    (void)strtoull(digits, NULL, 10);
    return errno == ERANGE ? 1 : 0;
}

/* Length of the number token at p (JSON's grammar: -?digits[.digits][e[+-]digits]),
 * and whether it is an integer. */
static size_t number_token(const char *p, const char *end, bool *integer)
{
    const char *q = p + (*p == '-');
    q += strspn(q, "0123456789");
    *integer = true;
    while (q < end && strchr(".eE+-0123456789", *q)) {
        *integer = false;
        q++;
    }
    return (size_t)(q - p);
}

struct text_out {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void out_add(struct text_out *o, const char *s, size_t n)
{
    if (o->oom) {
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->len + n + 1) * 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = 0;
}

/* A number past int64 at p: as the marked string or with ".0". */
static void out_big_number(struct text_out *o, const char *p, size_t n, int kind)
{
    if (kind > 0) {
        out_add(o, p, n);
        out_add(o, ".0", 2);
        return;
    }
    out_add(o, "\"\\u0001", 7);
    out_add(o, tag(), strlen(tag()));
    out_add(o, p, n);
    out_add(o, "\"", 1);
}

char *qmp_json_mark_input(const char *text, size_t len, size_t *out_len, bool *oom)
{
    struct text_out o = { 0 };
    const char *end = text + len, *copied = text;
    bool in_string = false, escaped = false;
    *oom = false;
    for (const char *p = text; p < end; p++) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (*p == '\\') {
                escaped = true;
            } else if (*p == '"') {
                in_string = false;
            }
            continue;
        }
        if (*p == '"') {
            in_string = true;
            continue;
        }
        if (*p != '-' && (*p < '0' || *p > '9')) {
            continue;
        }
        bool integer;
        size_t n = number_token(p, end, &integer);
        const char *after = p + n;
        while (after < end && strchr(" \t\r\n", *after)) {
            after++;
        }
        /* A number as an object key is no JSON: left for the parser to refuse. */
        bool key = after < end && *after == ':';
        int kind = integer && !key ? big_integer_kind(p, n) : -1;
        if (kind >= 0) {
            out_add(&o, copied, (size_t)(p - copied));
            out_big_number(&o, p, n, kind);
            copied = p + n;
        }
        p += n - 1;
    }
    if (!o.buf && !o.oom) {
        return NULL;
    }
    out_add(&o, copied, (size_t)(end - copied));
    if (o.oom) {
        free(o.buf);
        *oom = true;
        return NULL;
    }
    *out_len = o.len;
    return o.buf;
}

bool qmp_json_get_u64(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v), *t = tag();
    if (!s || s[0] != '\x01' || strncmp(s + 1, t, strlen(t)) != 0) {
        return false;
    }
    *out = strtoull(s + 1 + strlen(t), NULL, 10);
    return true;
}

/* Marked numbers back to numbers (as doubles) in options checked by their
 * type elsewhere: a mark where a string is wanted must be refused as the
 * number it is, and never named in an error (it holds the tag). */
void qmp_json_unmark_u64(json_t *j)
{
    uint64_t v;
    if (json_is_object(j)) {
        const char *key;
        json_t *m;
        json_object_foreach(j, key, m) {
            if (json_is_string(m) && qmp_json_get_u64(m, &v)) {
                json_object_set_new(j, key, json_real((double)v));
            } else {
                qmp_json_unmark_u64(m);
            }
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *m = json_array_get(j, i);
            if (json_is_string(m) && qmp_json_get_u64(m, &v)) {
                json_array_set_new(j, i, json_real((double)v));
            } else {
                qmp_json_unmark_u64(m);
            }
        }
    }
}
