#include "util/options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/size.h"

/* Copies one token up to an unescaped delimiter; ",," becomes ",". */
static char *take_token(const char **pp, const char *delims)
{
    const char *p = *pp;
    char *out = malloc(strlen(p) + 1);
    size_t n = 0;
    while (*p) {
        if (*p == ',' && p[1] == ',') {
            out[n++] = ',';
            p += 2;
            continue;
        }
        if (strchr(delims, *p)) {
            break;
        }
        out[n++] = *p++;
    }
    out[n] = '\0';
    *pp = p;
    return out;
}

int options_parse(struct options *o, const char *text, const char *implied_key, struct error *err)
{
    const char *p = text;
    bool first = true;
    while (*p) {
        if (o->count == OPTIONS_MAX) {
            return error_set(err, -E2BIG, "Too many options in '%s'", text);
        }
        char *key = take_token(&p, "=,");
        char *value = NULL;
        if (*p == '=') {
            p++;
            value = take_token(&p, ",");
        } else if (first && implied_key) {
            value = key;
            key = strdup(implied_key);
        }
        if (*key == '\0') {
            free(key);
            free(value);
            return error_set(err, -EINVAL, "Invalid option list '%s': empty option name", text);
        }
        o->items[o->count++] = (struct option_pair){ .key = key, .value = value };
        if (*p == ',') {
            p++;
        }
        first = false;
    }
    return 0;
}

void options_free(struct options *o)
{
    for (int i = 0; i < o->count; i++) {
        free(o->items[i].key);
        free(o->items[i].value);
    }
    o->count = 0;
}

const char *options_get(struct options *o, const char *key)
{
    /* The last occurrence wins, as with QEMU's -o. */
    for (int i = o->count - 1; i >= 0; i--) {
        if (strcmp(o->items[i].key, key) == 0) {
            for (int j = 0; j < o->count; j++) {
                if (strcmp(o->items[j].key, key) == 0) {
                    o->items[j].used = true;
                }
            }
            return o->items[i].value ? o->items[i].value : "";
        }
    }
    return NULL;
}

int options_get_bool(struct options *o, const char *key, bool *out, struct error *err)
{
    const char *v = options_get(o, key);
    if (!v) {
        return 0;
    }
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "")) {
        *out = true;
    } else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false")) {
        *out = false;
    } else {
        return error_set(err, -EINVAL, "Parameter '%s' expects 'on' or 'off'", key);
    }
    return 0;
}

int options_get_size(struct options *o, const char *key, uint64_t *out, struct error *err)
{
    const char *v = options_get(o, key);
    if (!v) {
        return 0;
    }
    if (size_parse(v, out) < 0) {
        return error_set(err, -EINVAL, "Parameter '%s' expects a non-negative number below 2^64\n"
                         "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                         "and exabytes, respectively.", key);
    }
    return 0;
}

int options_check_unused(struct options *o, const char *what, struct error *err)
{
    for (int i = 0; i < o->count; i++) {
        if (!o->items[i].used) {
            return error_set(err, -EINVAL, "Invalid parameter '%s'%s%s", o->items[i].key,
                             what ? " for " : "", what ? what : "");
        }
    }
    return 0;
}
