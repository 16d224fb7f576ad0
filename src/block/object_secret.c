/* --object for QEMU's tools: secrets (crypto/secret.c in QEMU) and QEMU's
 * refusals for everything else. */
#include "block/object_secret.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/options.h"

struct secret {
    struct secret *next;
    char *id;
    char *data;
    size_t len;
    bool base64;
};

static struct secret *secrets;

/* QEMU's ObjectType enum (qapi/qom.json, 7.2): these names parse, and
 * only secret is created; any other word is not a type at all. */
static const char *const qapi_object_types[] = {
    "authz-list", "authz-listfile", "authz-pam", "authz-simple", "can-bus",
    "can-host-socketcan", "colo-compare", "cryptodev-backend", "cryptodev-backend-builtin",
    "cryptodev-backend-lkcf", "cryptodev-vhost-user", "dbus-vmstate", "filter-buffer",
    "filter-dump", "filter-mirror", "filter-redirector", "filter-replay", "filter-rewriter",
    "input-barrier", "input-linux", "iothread", "main-loop", "memory-backend-epc",
    "memory-backend-file", "memory-backend-memfd", "memory-backend-ram", "pef-guest",
    "pr-manager-helper", "qtest", "rng-builtin", "rng-egd", "rng-random", "secret",
    "secret_keyring", "sev-guest", "thread-context", "s390-pv-guest", "throttle-group",
    "tls-creds-anon", "tls-creds-psk", "tls-creds-x509", "tls-cipher-suites",
    "x-remote-object",
};

static bool is_qapi_type(const char *type)
{
    for (size_t i = 0; i < sizeof(qapi_object_types) / sizeof(qapi_object_types[0]); i++) {
        if (strcmp(qapi_object_types[i], type) == 0) {
            return true;
        }
    }
    return false;
}

static struct secret *find(const char *id)
{
    struct secret *s = secrets;
    while (s && strcmp(s->id, id) != 0) {
        s = s->next;
    }
    return s;
}

/* An id as QEMU's id_wellformed wants it: a letter, then letters, digits, '-', '.', '_'. */
static bool id_wellformed(const char *id)
{
    static const char rest[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._";
    return ((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z')) &&
           strspn(id, rest) == strlen(id);
}

static int read_secret_file(const char *path, struct secret *s, struct error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        /* GLib's words, which QEMU passes on. */
        return error_set(err, -errno, "Unable to read %s: Failed to open file \u201c%s\u201d: %s",
                         path, path, strerror(errno));
    }
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
            }
            buf = bigger;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return error_set(err, -EIO, "Unable to read %s", path);
    }
    s->data = buf;
    s->len = len;
    return 0;
}

/* data= or file= (exactly one), format=raw|base64. */
static int load_secret(struct options *o, struct secret *s, struct error *err)
{
    const char *data = options_get(o, "data");
    const char *file = options_get(o, "file");
    const char *format = options_get(o, "format");
    options_get(o, "keyid");    /* kept by QEMU for decrypting data: accepted */
    options_get(o, "iv");
    options_get(o, "loaded");
    if (format && strcmp(format, "raw") != 0 && strcmp(format, "base64") != 0) {
        return error_set(err, -EINVAL, "Parameter 'format' does not accept value '%s'", format);
    }
    s->base64 = format && strcmp(format, "base64") == 0;
    if (data && file) {
        return error_set(err, -EINVAL, "'file' and 'data' are mutually exclusive");
    }
    if (file) {
        return read_secret_file(file, s, err);
    }
    if (!data) {
        return error_set(err, -EINVAL, "Either 'file' or 'data' must be provided");
    }
    s->data = strdup(data);
    s->len = strlen(data);
    return 0;
}

static int add_secret(struct options *o, struct error *err)
{
    const char *id = options_get(o, "id");
    if (!id) {
        return error_set(err, -EINVAL, "Parameter 'id' is missing");
    }
    if (!id_wellformed(id)) {
        return error_set(err, -EINVAL, "Parameter 'id' expects an identifier\nIdentifiers consist of "
                         "letters, digits, '-', '.', '_', starting with a letter.");
    }
    struct secret *s = calloc(1, sizeof(*s));
    int ret = load_secret(o, s, err);
    for (int i = 0; ret == 0 && i < o->count; i++) {
        if (!o->items[i].used) {
            ret = error_set(err, -EINVAL, "Parameter '%s' is unexpected", o->items[i].key);
        }
    }
    if (ret == 0 && find(id)) {
        ret = error_set(err, -EEXIST, "attempt to add duplicate property '%s' to object "
                        "(type 'container')", id);
    }
    if (ret < 0) {
        free(s->data);
        free(s);
        return ret;
    }
    s->id = strdup(id);
    s->next = secrets;
    secrets = s;
    return 0;
}

const char *object_help_text(void)
{
    return "List of user creatable objects:\n  secret\n";
}

int object_add(const char *spec, struct error *err)
{
    if (strcmp(spec, "help") == 0) {
        return 1;
    }
    struct options o = { 0 };
    int ret = options_parse(&o, spec, "qom-type", err);
    const char *type = ret == 0 ? options_get(&o, "qom-type") : NULL;
    if (ret < 0) {
        /* the message is set */
    } else if (!type) {
        ret = error_set(err, -EINVAL, "Parameter 'qom-type' is missing");
    } else if (!is_qapi_type(type)) {
        ret = error_set(err, -EINVAL, "Parameter 'qom-type' does not accept value '%s'", type);
    } else if (strcmp(type, "secret") != 0) {
        ret = error_set(err, -ENOTSUP, "invalid object type: %s", type);
    } else {
        ret = add_secret(&o, err);
    }
    options_free(&o);
    return ret;
}

int object_secret_lookup(const char *id, const char **data, size_t *len, int *base64,
                         struct error *err)
{
    const struct secret *s = find(id);
    if (!s) {
        return error_set(err, -ENOENT, "No secret with id '%s'", id);
    }
    *data = s->data;
    *len = s->len;
    *base64 = s->base64;
    return 0;
}

void object_clear_all(void)
{
    while (secrets) {
        struct secret *s = secrets;
        secrets = s->next;
        free(s->id);
        free(s->data);
        free(s);
    }
}
