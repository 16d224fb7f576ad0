#include "jsontext.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* A recursive-descent walk that prints while parsing: the input comes from our
 * own writer, so it is small and well-formed; malformed text stops the walk. */
struct walker {
    const char *p;
    FILE *out;
    bool bad;
};

static void skip_ws(struct walker *w)
{
    while (isspace((unsigned char)*w->p)) {
        w->p++;
    }
}

static bool take(struct walker *w, char c)
{
    skip_ws(w);
    if (*w->p == c) {
        w->p++;
        return true;
    }
    return false;
}

/* Copies a JSON string (without quotes, escapes resolved) into buf. */
static void read_string(struct walker *w, char *buf, size_t cap)
{
    size_t n = 0;
    skip_ws(w);
    if (*w->p != '"') {
        w->bad = true;
        return;
    }
    w->p++;
    while (*w->p && *w->p != '"') {
        char c = *w->p++;
        if (c == '\\' && *w->p) {
            char e = *w->p++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' :
                e == 'f' ? '\f' : e;
            if (e == 'u') {
                c = '?';
                for (int i = 0; i < 4 && *w->p; i++) {
                    w->p++;
                }
            }
        }
        if (n + 1 < cap) {
            buf[n++] = c;
        }
    }
    buf[n] = '\0';
    if (*w->p != '"') {
        w->bad = true;
        return;
    }
    w->p++;
}

static void walk_value(struct walker *w, int indent);

static bool next_is_composite(struct walker *w)
{
    skip_ws(w);
    return *w->p == '{' || *w->p == '[';
}

static void walk_object(struct walker *w, int indent)
{
    if (!take(w, '{')) {
        w->bad = true;
        return;
    }
    if (take(w, '}')) {
        return;
    }
    do {
        char key[256];
        read_string(w, key, sizeof(key));
        if (w->bad || !take(w, ':')) {
            w->bad = true;
            return;
        }
        for (char *k = key; *k; k++) {
            if (*k == '-') {
                *k = ' ';
            }
        }
        bool composite = next_is_composite(w);
        fprintf(w->out, "%*s%s:%c", indent * 4, "", key, composite ? '\n' : ' ');
        walk_value(w, indent + 1);
        if (!composite) {
            fputc('\n', w->out);
        }
    } while (!w->bad && take(w, ','));
    if (!take(w, '}')) {
        w->bad = true;
    }
}

static void walk_array(struct walker *w, int indent)
{
    if (!take(w, '[')) {
        w->bad = true;
        return;
    }
    if (take(w, ']')) {
        return;
    }
    int i = 0;
    do {
        bool composite = next_is_composite(w);
        fprintf(w->out, "%*s[%d]:%c", indent * 4, "", i++, composite ? '\n' : ' ');
        walk_value(w, indent + 1);
        if (!composite) {
            fputc('\n', w->out);
        }
    } while (!w->bad && take(w, ','));
    if (!take(w, ']')) {
        w->bad = true;
    }
}

static void walk_value(struct walker *w, int indent)
{
    skip_ws(w);
    char c = *w->p;
    if (c == '{') {
        walk_object(w, indent);
    } else if (c == '[') {
        walk_array(w, indent);
    } else if (c == '"') {
        char buf[4096];
        read_string(w, buf, sizeof(buf));
        fputs(buf, w->out);
    } else {
        /* Numbers, true, false, null print as written. */
        const char *start = w->p;
        while (*w->p && !strchr(",}] \n\t\r", *w->p)) {
            w->p++;
        }
        if (w->p == start) {
            w->bad = true;
            return;
        }
        fwrite(start, 1, (size_t)(w->p - start), w->out);
    }
}

int json_dump_human(FILE *out, const char *text, int indent)
{
    struct walker w = { .p = text, .out = out };
    skip_ws(&w);
    /* The members of the top object print at indent itself. */
    if (*w.p != '{') {
        return -1;
    }
    walk_object(&w, indent);
    return w.bad ? -1 : 0;
}
