/* The "Format specific information" block of qemu-io's info command: the
 * driver describes its image as JSON members (the data of qemu-img info
 * --output=json's "format-specific"); qemu prints them as an indented
 * "key: value" tree, dashes in keys shown as spaces, list items as [i]. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "qemu_io/info_dump.h"

static void skip_space(const char **p)
{
    while (isspace((unsigned char)**p)) {
        (*p)++;
    }
}

/* Copies a JSON string (at its opening quote) to out, unescaped. */
static void read_string(const char **p, char *out, size_t cap, bool dash_to_space)
{
    size_t n = 0;
    (*p)++;
    while (**p && **p != '"') {
        char c = **p;
        if (c == '\\' && (*p)[1]) {
            (*p)++;
            switch (**p) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': c = '?'; *p += 4; break;
            default: c = **p; break;
            }
        }
        if (dash_to_space && c == '-') {
            c = ' ';
        }
        if (n + 1 < cap) {
            out[n++] = c;
        }
        (*p)++;
    }
    if (**p == '"') {
        (*p)++;
    }
    out[n] = '\0';
}

static bool is_composite(const char *p)
{
    return *p == '{' || *p == '[';
}

static void dump_value(FILE *out, const char **p, int indent);

/* One member of an object or element of an array, "label:" then its
 * value (nested ones on the lines below), and the comma after it. */
static void dump_member(FILE *out, const char **p, int indent, const char *label)
{
    bool composite = is_composite(*p);
    fprintf(out, "%*s%s:%c", indent * 4, "", label, composite ? '\n' : ' ');
    dump_value(out, p, indent + 1);
    if (!composite) {
        fputc('\n', out);
    }
    skip_space(p);
    if (**p == ',') {
        (*p)++;
        skip_space(p);
    }
}

static void dump_object(FILE *out, const char **p, int indent)
{
    (*p)++;
    skip_space(p);
    while (**p == '"') {
        char key[256];
        read_string(p, key, sizeof(key), true);
        skip_space(p);
        if (**p == ':') {
            (*p)++;
        }
        skip_space(p);
        dump_member(out, p, indent, key);
    }
    if (**p == '}') {
        (*p)++;
    }
}

static void dump_array(FILE *out, const char **p, int indent)
{
    (*p)++;
    skip_space(p);
    for (int i = 0; **p && **p != ']'; i++) {
        char label[16];
        snprintf(label, sizeof(label), "[%d]", i);
        dump_member(out, p, indent, label);
    }
    if (**p == ']') {
        (*p)++;
    }
}

static void dump_value(FILE *out, const char **p, int indent)
{
    skip_space(p);
    if (**p == '{') {
        dump_object(out, p, indent);
    } else if (**p == '[') {
        dump_array(out, p, indent);
    } else if (**p == '"') {
        char s[1024];
        read_string(p, s, sizeof(s), false);
        fputs(s, out);
    } else {
        /* numbers, true, false, null: printed as they are written */
        while (**p && **p != ',' && **p != '}' && **p != ']' && !isspace((unsigned char)**p)) {
            fputc(**p, out);
            (*p)++;
        }
    }
}

void info_dump_json_tree(FILE *out, const char *json, int indent)
{
    const char *p = json;
    skip_space(&p);
    if (*p == '{') {
        dump_object(out, &p, indent);
    }
}
