/* A small streaming JSON writer for --output=json. Its pretty layout is the
 * one QEMU's tools print (4-space indent, "key": value), so scripts that
 * diff qemu-img output against ours see the same text. */
#ifndef UTIL_JSON_H
#define UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 32

struct json_writer {
    char *buf;
    size_t len, cap;
    bool pretty;
    int depth;
    bool has_items[JSON_MAX_DEPTH];
};

void json_writer_init(struct json_writer *w, bool pretty);
void json_writer_free(struct json_writer *w);
/* The text written so far, NUL-terminated; owned by the writer. */
const char *json_writer_str(struct json_writer *w);

/* key is the member name inside an object and NULL inside an array or at
 * the top level. */
void json_object_begin(struct json_writer *w, const char *key);
void json_object_end(struct json_writer *w);
void json_array_begin(struct json_writer *w, const char *key);
void json_array_end(struct json_writer *w);
void json_write_int(struct json_writer *w, const char *key, int64_t v);
void json_write_uint(struct json_writer *w, const char *key, uint64_t v);
void json_write_bool(struct json_writer *w, const char *key, bool v);
void json_write_string(struct json_writer *w, const char *key, const char *v);
void json_write_null(struct json_writer *w, const char *key);
void json_write_double(struct json_writer *w, const char *key, double v);

#endif
