/* The command dispatcher: splits a line at spaces, finds the command, checks
 * its argument count and that an image is open, then runs it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/qemu_io.h"

#define MAX_TABLES 8
#define MAX_COMMANDS 64

static const struct cowio_cmd *const *tables[MAX_TABLES] = {
    cowio_core_cmds, cowio_read_cmds, cowio_write_cmds, cowio_misc_cmds,
};
static size_t n_tables = 4;

void cowio_add_commands(const struct cowio_cmd *const *table)
{
    if (n_tables < MAX_TABLES) {
        tables[n_tables++] = table;
    }
}

/* All commands sorted by name, as help lists them. */
static int sorted_commands(const struct cowio_cmd **out)
{
    int n = 0;
    for (size_t t = 0; t < n_tables; t++) {
        for (const struct cowio_cmd *const *c = tables[t]; *c && n < MAX_COMMANDS; c++) {
            int i = n++;
            while (i > 0 && strcmp(out[i - 1]->name, (*c)->name) > 0) {
                out[i] = out[i - 1];
                i--;
            }
            out[i] = *c;
        }
    }
    return n;
}

/* Straight through the tables, unsorted: names and altnames are unique, and
 * a trace of 20000 commands spent 5% of its CPU sorting for every one. */
const struct cowio_cmd *cowio_find_command(const char *name)
{
    for (size_t t = 0; t < n_tables; t++) {
        for (const struct cowio_cmd *const *c = tables[t]; *c; c++) {
            if (strcmp((*c)->name, name) == 0 ||
                ((*c)->altname && strcmp((*c)->altname, name) == 0)) {
                return *c;
            }
        }
    }
    return NULL;
}

void cowio_usage_of(const struct cowio_cmd *cmd)
{
    printf("%s %s -- %s\n", cmd->name, cmd->args ? cmd->args : "", cmd->oneline);
}

static bool argc_ok(const struct cowio_cmd *ct, const char *name, int nargs)
{
    if (nargs >= ct->argmin && (ct->argmax == -1 || nargs <= ct->argmax)) {
        return true;
    }
    if (ct->argmax == -1) {
        fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n",
                nargs, name, ct->argmin);
    } else if (ct->argmin == ct->argmax) {
        fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n",
                nargs, name, ct->argmin);
    } else {
        fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n",
                nargs, name, ct->argmin, ct->argmax);
    }
    return false;
}

/* Words separated by single spaces; empty words (runs of spaces) vanish. */
static int split_words(char *line, char ***out)
{
    int n = 0, cap = 8;
    char **v = malloc(sizeof(*v) * (size_t)(cap + 1));
    char *p = line;
    while (p) {
        char *word = p;
        p = strchr(p, ' ');
        if (p) {
            *p++ = '\0';
        }
        if (!*word) {
            continue;
        }
        if (n == cap) {
            cap *= 2;
            v = realloc(v, sizeof(*v) * (size_t)(cap + 1));
        }
        v[n++] = word;
    }
    v[n] = NULL;
    *out = v;
    return n;
}

static int run(struct cowio *io, const struct cowio_cmd *ct, int argc, char **argv)
{
    if (!ct->global && !io->bd) {
        fprintf(stderr, "no file open, try 'help open'\n");
        return -EINVAL;
    }
    if (!argc_ok(ct, argv[0], argc - 1)) {
        return -EINVAL;
    }
    if (ct->wants_write && io->bd && blockdev_is_read_only(io->bd)) {
        cowio_error("Block node is read-only");
        return -EPERM;
    }
    if (!ct->no_drain) {
        cowio_drain(io);
    }
    optind = 0;     /* glibc: restart getopt for this command's argv */
    if (ct->aio && cowio_aio_wanted(io)) {
        return cowio_aio_spawn(io, ct, argc, argv);
    }
    return ct->func(io, argc, argv);
}

int cowio_run_command(struct cowio *io, const char *line)
{
    char *copy = strdup(line);
    char **argv;
    int argc = split_words(copy, &argv);
    int ret = 0;
    if (argc > 0) {
        const struct cowio_cmd *ct = cowio_find_command(argv[0]);
        if (ct) {
            ret = run(io, ct, argc, argv);
        } else {
            fprintf(stderr, "command \"%s\" not found\n", argv[0]);
            ret = -EINVAL;
        }
    }
    free(argv);
    free(copy);
    return ret;
}

static void help_line(const char *name, const struct cowio_cmd *ct)
{
    printf("%s ", name);
    if (ct->args) {
        printf("%s ", ct->args);
    }
    printf("-- %s\n", ct->oneline);
}

static int help_f(struct cowio *io, int argc, char **argv)
{
    if (argc < 2) {
        const struct cowio_cmd *all[MAX_COMMANDS];
        int n = sorted_commands(all);
        for (int i = 0; i < n; i++) {
            help_line(all[i]->name, all[i]);
        }
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    const struct cowio_cmd *ct = cowio_find_command(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    help_line(argv[1], ct);
    if (ct->help) {
        ct->help();
    }
    return 0;
}

static const struct cowio_cmd help_cmd = {
    .name = "help", .altname = "?", .func = help_f, .argmin = 0, .argmax = 1,
    .global = true, .no_drain = true, .args = "[command]",
    .oneline = "help for one or all commands",
};

const struct cowio_cmd *const cowio_core_cmds[] = { &help_cmd, NULL };
