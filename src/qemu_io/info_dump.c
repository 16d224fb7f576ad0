/* The "Format specific information" block of qemu-io's info command: the
 * driver describes its image as JSON members (the data of qemu-img info
 * --output=json's "format-specific"); qemu prints them as an indented
 * "key: value" tree, dashes in keys shown as spaces, list items as [i].
 * Members print in the order the driver wrote them (jansson keeps it). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/info_dump.h"

static void dump_value(FILE *out, json_t *v, int indent);

/* One member of an object or element of an array, "label:" then its
 * value (nested ones on the lines below). */
static void dump_member(FILE *out, const char *label, json_t *v, int indent)
{
    bool composite = json_is_object(v) || json_is_array(v);
    fprintf(out, "%*s%s:%c", indent * 4, "", label, composite ? '\n' : ' ');
    dump_value(out, v, indent + 1);
    if (!composite) {
        fputc('\n', out);
    }
}

/* A key as qemu shows it: dashes as spaces. */
static void dump_key(FILE *out, const char *key, json_t *v, int indent)
{
    char *label = strdup(key);
    if (!label) {
        return;
    }
    for (char *c = label; *c; c++) {
        *c = *c == '-' ? ' ' : *c;
    }
    dump_member(out, label, v, indent);
    free(label);
}

static void dump_value(FILE *out, json_t *v, int indent)
{
    const char *key;
    json_t *member;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, key, member) {
            dump_key(out, key, member, indent);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, member) {
            char label[24];
            snprintf(label, sizeof(label), "[%zu]", i);
            dump_member(out, label, member, indent);
        }
    } else if (json_is_string(v)) {
        fputs(json_string_value(v), out);
    } else {
        /* numbers, true, false, null: as JSON writes them */
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        fputs(text ? text : "", out);
        free(text);
    }
}

void info_dump_json_tree(FILE *out, const char *json, int indent)
{
    json_t *root = json_loads(json, 0, NULL);
    if (json_is_object(root)) {
        dump_value(out, root, indent);
    }
    json_decref(root);
}
