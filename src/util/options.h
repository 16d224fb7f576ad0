/* QEMU-style option strings: "key=value,key2=value2", where ",," inside a
 * value stands for a literal comma (so file names may contain commas). */
#ifndef UTIL_OPTIONS_H
#define UTIL_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

#define OPTIONS_MAX 32

struct option_pair {
    char *key;
    char *value;    /* NULL for a bare "key" */
    bool used;      /* set by options_get, so leftovers can be reported */
};

struct options {
    int count;
    struct option_pair items[OPTIONS_MAX];
};

/* Appends the pairs of text to o (qemu-img create takes -o several times).
 * implied_key names the option a leading bare value belongs to (e.g.
 * "file" for "--disk disk.img,format=raw"); NULL when none is implied. */
int options_parse(struct options *o, const char *text, const char *implied_key, struct error *err);
void options_free(struct options *o);
const char *options_get(struct options *o, const char *key);
int options_get_bool(struct options *o, const char *key, bool *out, struct error *err);
int options_get_size(struct options *o, const char *key, uint64_t *out, struct error *err);
/* Returns -EINVAL naming the first option nobody asked for. */
int options_check_unused(struct options *o, const char *what, struct error *err);

#endif
