#include "util/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_writer_init(struct json_writer *w, bool pretty)
{
    memset(w, 0, sizeof(*w));
    w->pretty = pretty;
}

void json_writer_free(struct json_writer *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

static void put_bytes(struct json_writer *w, const char *s, size_t n)
{
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) {
            cap *= 2;
        }
        char *nb = realloc(w->buf, cap);
        if (!nb) {
            abort(); /* out of memory while formatting output */
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void put(struct json_writer *w, const char *s)
{
    put_bytes(w, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void putf(struct json_writer *w, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put_bytes(w, tmp, (size_t)n);
}

const char *json_writer_str(struct json_writer *w)
{
    if (!w->buf) {
        put(w, "");
    }
    return w->buf;
}

static void newline_indent(struct json_writer *w)
{
    if (w->pretty) {
        put(w, "\n");
        for (int i = 0; i < w->depth; i++) {
            put(w, "    ");
        }
    }
}

static void put_quoted(struct json_writer *w, const char *s)
{
    put(w, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  put(w, "\\\""); break;
        case '\\': put(w, "\\\\"); break;
        case '\n': put(w, "\\n"); break;
        case '\r': put(w, "\\r"); break;
        case '\t': put(w, "\\t"); break;
        case '\b': put(w, "\\b"); break;
        case '\f': put(w, "\\f"); break;
        default:
            if (*p < 0x20) {
                putf(w, "\\u%04x", *p);
            } else {
                put_bytes(w, (const char *)p, 1);
            }
        }
    }
    put(w, "\"");
}

/* Separator, indentation and "key": before every value. */
static void begin_value(struct json_writer *w, const char *key)
{
    if (w->depth > 0) {
        if (w->has_items[w->depth]) {
            put(w, w->pretty ? "," : ", ");
        }
        w->has_items[w->depth] = true;
        newline_indent(w);
    }
    if (key) {
        put_quoted(w, key);
        put(w, ": ");
    }
}

static void open_container(struct json_writer *w, const char *key, const char *bracket)
{
    begin_value(w, key);
    put(w, bracket);
    if (w->depth + 1 < JSON_MAX_DEPTH) {
        w->depth++;
    }
    w->has_items[w->depth] = false;
}

static void close_container(struct json_writer *w, const char *bracket)
{
    w->depth--;
    newline_indent(w);
    put(w, bracket);
}

void json_object_begin(struct json_writer *w, const char *key) { open_container(w, key, "{"); }
void json_object_end(struct json_writer *w) { close_container(w, "}"); }
void json_array_begin(struct json_writer *w, const char *key) { open_container(w, key, "["); }
void json_array_end(struct json_writer *w) { close_container(w, "]"); }

void json_write_int(struct json_writer *w, const char *key, int64_t v)
{
    begin_value(w, key);
    putf(w, "%lld", (long long)v);
}

void json_write_uint(struct json_writer *w, const char *key, uint64_t v)
{
    begin_value(w, key);
    putf(w, "%llu", (unsigned long long)v);
}

void json_write_bool(struct json_writer *w, const char *key, bool v)
{
    begin_value(w, key);
    put(w, v ? "true" : "false");
}

void json_write_string(struct json_writer *w, const char *key, const char *v)
{
    begin_value(w, key);
    put_quoted(w, v);
}

void json_write_null(struct json_writer *w, const char *key)
{
    begin_value(w, key);
    put(w, "null");
}

void json_write_double(struct json_writer *w, const char *key, double v)
{
    begin_value(w, key);
    putf(w, "%.17g", v);
}
