/* cowio: a drop-in qemu-io. Opens the image named on the command line, runs
 * the -c commands (or reads commands from stdin after a "qemu-io> " prompt)
 * and exits 1 when the last failing command failed, like qemu-io. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/object_secret.h"
#include "tools/cowio/cowio.h"
#include "util/warning.h"

#define MAX_LINE 1024

static void usage(const char *name)
{
    printf("Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
           "QEMU Disk exerciser (cowio)\n"
           "\n"
           "  --image-opts         treat file as option string\n"
           "  -c, --cmd STRING     execute command with its arguments\n"
           "                       from the given string\n"
           "  -f, --format FMT     specifies the block driver to use\n"
           "  -r, --read-only      export read-only\n"
           "  -s, --snapshot       use snapshot file\n"
           "  -n, --nocache        disable host cache, short for -t none\n"
           "  -C, --copy-on-read   enable copy-on-read\n"
           "  -m, --misalign       misalign allocations for O_DIRECT\n"
           "  -k, --native-aio     use kernel AIO implementation (accepted)\n"
           "  -i, --aio=MODE       use AIO mode (threads, native or io_uring; accepted)\n"
           "  -t, --cache=MODE     use the given cache mode for the image\n"
           "  -d, --discard=MODE   use the given discard mode for the image\n"
           "  -T, --trace ...      accepted and ignored\n"
           "  -U, --force-share    force shared permissions\n"
           "  -h, --help           display this help and exit\n"
           "  -V, --version        output version information and exit\n"
           "\n"
           "See '%s -c help' for information on available commands.\n",
           name, name);
}

static bool one_of(const char *s, const char *const *choices)
{
    for (; *choices; choices++) {
        if (!strcmp(s, *choices)) {
            return true;
        }
    }
    return false;
}

struct cmdline {
    struct cowio_open open;
    const char *format;
    char **commands;
    int ncommands;
    bool image_opts;
    bool misalign;
};

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };

/* Returns the index of the first non-option argument, or -1 to exit(1). */
static int parse_args(int argc, char **argv, struct cmdline *cl, const char *name)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "discard", required_argument, NULL, 'd' },
        { "cache", required_argument, NULL, 't' },
        { "trace", required_argument, NULL, 'T' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const aio_modes[] = { "threads", "native", "io_uring", NULL };
    static const char *const discard_modes[] = { "ignore", "off", "unmap", "on", NULL };
    int c;
    while ((c = getopt_long(argc, argv, "hVc:d:f:rsnCmki:t:T:U", longopts, NULL)) != -1) {
        switch (c) {
        case 's': cl->open.snapshot = true; break;
        case 'k': case 'T':
            break;
        case 'n':
            cl->open.flags |= BDEV_NO_CACHE;
            cl->open.writethrough = false;
            break;
        case 'C': cl->open.copy_on_read = true; break;
        case 'r': cl->open.flags |= BDEV_READ_ONLY; break;
        case 'U': cl->open.flags |= BDEV_FORCE_SHARE; break;
        case 'm': cl->misalign = true; break;
        case 'f': cl->format = optarg; break;
        case OPT_IMAGE_OPTS: cl->image_opts = true; break;
        case 'c':
            cl->commands = realloc(cl->commands, sizeof(char *) * (size_t)(cl->ncommands + 1));
            cl->commands[cl->ncommands++] = optarg;
            break;
        case 'd':
            if (!one_of(optarg, discard_modes)) {
                cowio_error("Invalid discard option: %s", optarg);
                return -1;
            }
            break;
        case 'i':
            if (!one_of(optarg, aio_modes)) {
                cowio_error("Invalid aio option: %s", optarg);
                return -1;
            }
            break;
        case 't':
            if (cowio_parse_cache_mode(optarg, &cl->open) < 0) {
                cowio_error("Invalid cache option: %s", optarg);
                return -1;
            }
            break;
        case 'V':
            printf("%s version 0.1.0 (speaks qemu-io 7.2's command language)\n", name);
            exit(0);
        case 'h':
            usage(name);
            exit(0);
        case OPT_OBJECT: {
            struct error err = { 0 };
            int ret = object_add(optarg, &err);
            if (ret < 0) {
                cowio_error("%s", err.msg);
            } else if (ret > 0) {
                fputs(object_help_text(), stdout);
            }
            if (ret != 0) {     /* an error, or --object help */
                exit(ret < 0);
            }
            break;
        }
        default:
            usage(name);
            return -1;
        }
    }
    if (argc - optind > 1) {
        usage(name);
        return -1;
    }
    if (cl->format && cl->image_opts) {
        cowio_error("--image-opts and -f are mutually exclusive");
        return -1;
    }
    return optind;
}

static int quit_f(struct cowio *io, int argc, char **argv)
{
    io->quit = true;
    return 0;
}

static const struct cowio_cmd quit_cmd = {
    .name = "quit", .altname = "q", .func = quit_f, .argmin = -1, .argmax = -1,
    .global = true, .no_drain = true, .oneline = "exit the program",
};

static const struct cowio_cmd *const program_cmds[] = { &quit_cmd, NULL };

/* Reads commands after a prompt until quit or end of input. */
static int interactive(struct cowio *io)
{
    char line[MAX_LINE];
    int last_error = 0;
    while (!io->quit) {
        printf("%s> ", cowio_progname);
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin)) {
            break;
        }
        line[strcspn(line, "\n")] = '\0';
        int ret = cowio_run_command(io, line);
        if (ret < 0) {
            last_error = ret;
        }
    }
    return last_error;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    warning_set_sink(warning_sink_stderr, NULL);   /* in qemu-io's words, on stderr */
    const char *name = basename(argv[0]);
    struct cmdline cl = { .open.writethrough = true };
    struct cowio io = { 0 };
    cowio_add_commands(program_cmds);
    cowio_add_commands(cowio_file_cmds);

    int first = parse_args(argc, argv, &cl, name);
    if (first < 0) {
        free(cl.commands);
        return 1;
    }
    io.image_opts = cl.image_opts;
    io.misalign = cl.misalign;
    cl.open.format = cl.format;
    if (first < argc) {
        const char *arg = argv[first];
        int failed = cl.image_opts ? cowio_open_image(&io, NULL, &cl.open, arg)
                                   : cowio_open_image(&io, arg, &cl.open, NULL);
        if (failed) {
            free(cl.commands);
            return 1;
        }
    }

    int last_error = 0;
    if (cl.ncommands) {
        for (int i = 0; i < cl.ncommands && !io.quit; i++) {
            int ret = cowio_run_command(&io, cl.commands[i]);
            if (ret < 0) {
                last_error = ret;
            }
        }
    } else {
        last_error = interactive(&io);
    }
    cowio_aio_join(&io, true);
    cowio_drain(&io);
    if (io.bd) {
        cowio_close_image(&io);
    }
    cowio_free_spare();
    free(cl.commands);
    return last_error < 0 ? 1 : 0;
}
