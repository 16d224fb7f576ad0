/* --config FILE (see config_file.h). */
#include "config_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_ARGS 256

static int add(struct config_argv *c, char *s, bool owned, struct error *err)
{
    if (!s) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    if (c->argc == CONFIG_MAX_ARGS) {
        if (owned) {
            free(s);
        }
        return error_set(err, -E2BIG, "--config: more than %d options", CONFIG_MAX_ARGS);
    }
    c->argv[c->argc++] = s;
    if (owned) {
        c->owned[c->nowned++] = s;
    }
    c->argv[c->argc] = NULL;
    return 0;
}

/* One line: "name [value]" becomes "--name" [value]. */
static int add_line(struct config_argv *c, char *line, const char *path, int lineno, struct error *err)
{
    line[strcspn(line, "\r\n")] = 0;
    char *p = line;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (!*p || *p == '#') {
        return 0;
    }
    char *name = p;
    while (*p && !isspace((unsigned char)*p)) {
        p++;
    }
    char *value = NULL;
    if (*p) {
        *p++ = 0;
        while (isspace((unsigned char)*p)) {
            p++;
        }
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) {
            *--end = 0;
        }
        value = *p ? p : NULL;
    }
    if (name[0] == '-' || strcmp(name, "config") == 0) {
        return error_set(err, -EINVAL, "%s:%d: '%s': write option names without dashes, and no nested config",
                         path, lineno, name);
    }
    char *opt = malloc(strlen(name) + 3);
    if (opt) {
        sprintf(opt, "--%s", name);
    }
    int ret = add(c, opt, true, err);
    if (ret == 0 && value) {
        ret = add(c, strdup(value), true, err);
    }
    return ret;
}

static int read_file(struct config_argv *c, const char *path, struct error *err)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        return error_set_errno(err, -errno, "--config: cannot open '%s'", path);
    }
    char line[4096];
    int ret = 0;
    for (int lineno = 1; ret == 0 && fgets(line, sizeof(line), f); lineno++) {
        ret = add_line(c, line, path, lineno, err);
    }
    fclose(f);
    return ret;
}

int config_argv_build(struct config_argv *out, int argc, char **argv, struct error *err)
{
    memset(out, 0, sizeof(*out));
    out->argv = calloc(CONFIG_MAX_ARGS + 1, sizeof(char *));
    out->owned = calloc(CONFIG_MAX_ARGS + 1, sizeof(char *));
    if (!out->argv || !out->owned) {
        config_argv_free(out);
        return error_set(err, -ENOMEM, "out of memory");
    }
    int ret = add(out, argv[0], false, err);
    /* The files first, in order; then the rest of the command line. */
    for (int i = 1; ret == 0 && i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 == argc) {
                return error_set(err, -EINVAL, "--config needs a file");
            }
            ret = read_file(out, argv[++i], err);
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            ret = read_file(out, argv[i] + 9, err);
        } else if (strcmp(argv[i], "--") == 0) {
            break;
        }
    }
    for (int i = 1; ret == 0 && i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            i++;
        } else if (strncmp(argv[i], "--config=", 9) != 0) {
            ret = add(out, argv[i], false, err);
        }
    }
    return ret;
}

void config_argv_free(struct config_argv *c)
{
    for (int i = 0; i < c->nowned; i++) {
        free(c->owned[i]);
    }
    free(c->owned);
    free(c->argv);
    memset(c, 0, sizeof(*c));
}
