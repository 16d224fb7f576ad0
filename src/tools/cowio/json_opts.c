/* "json:{...}" file names: qemu accepts a JSON object (with single or double
 * quotes) in place of a file name. We flatten it into the dotted option
 * string --image-opts takes: {"file": {"filename": "a"}} -> file.filename=a. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cowio/json_opts.h"

struct flat {
    FILE *out;
    bool first;
    const char *p;
};

static void skip_space(struct flat *f)
{
    while (isspace((unsigned char)*f->p)) {
        f->p++;
    }
}

/* A quoted string (either quote character); commas doubled for the option syntax. */
static int read_string(struct flat *f, FILE *to, bool escape_commas)
{
    char quote = *f->p;
    if (quote != '"' && quote != '\'') {
        return -EINVAL;
    }
    f->p++;
    while (*f->p && *f->p != quote) {
        char c = *f->p++;
        if (c == '\\' && *f->p) {
            c = *f->p++;
            if (c == 'n') {
                c = '\n';
            } else if (c == 't') {
                c = '\t';
            }
        }
        if (escape_commas && c == ',') {
            fputc(',', to);
        }
        fputc(c, to);
    }
    if (*f->p != quote) {
        return -EINVAL;
    }
    f->p++;
    return 0;
}

static int flatten_value(struct flat *f, const char *prefix);

static int flatten_object(struct flat *f, const char *prefix)
{
    f->p++;     /* '{' */
    skip_space(f);
    while (*f->p && *f->p != '}') {
        char *key = NULL;
        size_t len = 0;
        FILE *k = open_memstream(&key, &len);
        fputs(prefix, k);
        int ret = read_string(f, k, false);
        fclose(k);
        if (ret < 0) {
            free(key);
            return ret;
        }
        skip_space(f);
        if (*f->p != ':') {
            free(key);
            return -EINVAL;
        }
        f->p++;
        skip_space(f);
        if (*f->p == '{') {
            size_t n = strlen(key) + 2;
            char *nested = malloc(n);
            snprintf(nested, n, "%s.", key);
            ret = flatten_object(f, nested);
            free(nested);
        } else {
            ret = flatten_value(f, key);
        }
        free(key);
        if (ret < 0) {
            return ret;
        }
        skip_space(f);
        if (*f->p == ',') {
            f->p++;
            skip_space(f);
        } else if (*f->p != '}') {
            return -EINVAL;
        }
    }
    if (*f->p != '}') {
        return -EINVAL;
    }
    f->p++;
    return 0;
}

static int flatten_value(struct flat *f, const char *key)
{
    fprintf(f->out, "%s%s=", f->first ? "" : ",", key);
    f->first = false;
    if (*f->p == '"' || *f->p == '\'') {
        return read_string(f, f->out, true);
    }
    if (*f->p == '[') {
        return -ENOTSUP;
    }
    /* numbers, true/false (as on/off), null */
    const char *start = f->p;
    while (*f->p && (isalnum((unsigned char)*f->p) || *f->p == '.' || *f->p == '-')) {
        f->p++;
    }
    size_t n = (size_t)(f->p - start);
    if (n == 4 && !strncmp(start, "true", 4)) {
        fputs("on", f->out);
    } else if (n == 5 && !strncmp(start, "false", 5)) {
        fputs("off", f->out);
    } else if (n == 0) {
        return -EINVAL;
    } else {
        fwrite(start, 1, n, f->out);
    }
    return 0;
}

int json_to_options(const char *json, char **out, struct error *err)
{
    char *text = NULL;
    size_t len = 0;
    struct flat f = { .out = open_memstream(&text, &len), .first = true, .p = json };
    skip_space(&f);
    int ret = *f.p == '{' ? flatten_object(&f, "") : -EINVAL;
    if (ret == 0) {
        skip_space(&f);
        if (*f.p) {
            ret = -EINVAL;
        }
    }
    fclose(f.out);
    if (ret < 0) {
        free(text);
        return error_set(err, ret, ret == -ENOTSUP ? "JSON arrays are not supported in '%s'"
                                                   : "Could not parse the JSON options: %s", json);
    }
    *out = text;
    return 0;
}
