/* cownbd's command line: qemu-nbd 7.2's options, messages and exit codes. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cownbd.h"
#include "block/object_secret.h"
#include "nbd/nbd_proto.h"
#include "util/log.h"
#include "util/sandbox.h"
#include "util/socket_activation.h"
#include "util/warning.h"

static const char *progname = "cownbd";

void cownbd_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void usage(void)
{
    printf("Usage: %s [OPTIONS] FILE\n"
           "cowvisor Network Block Device server (qemu-nbd compatible)\n"
           "\n"
           "  -h, --help                display this help and exit\n"
           "  -V, --version             output version information and exit\n"
           "\n"
           "Connection properties:\n"
           "  -p, --port=PORT           port to listen on (default `%d')\n"
           "  -b, --bind=IFACE          interface to bind to (default `0.0.0.0')\n"
           "  -k, --socket=PATH         path to the unix socket\n"
           "  -e, --shared=NUM          device can be shared by NUM clients (default '1')\n"
           "  -t, --persistent          don't exit on the last connection\n"
           "  -v, --verbose             display extra debugging information\n"
           "  -x, --export-name=NAME    expose export by name (default is empty string)\n"
           "  -D, --description=TEXT    export a human-readable description\n"
           "\n"
           "Exposing part of the image:\n"
           "  -A, --allocation-depth    expose the allocation depth\n"
           "  -B, --bitmap=NAME         expose a persistent dirty bitmap\n"
           "\n"
           "General purpose options:\n"
           "  -T, --trace [...]         accepted and ignored (no trace points)\n"
           "  --fork                    fork off the server process and exit the parent\n"
           "                            once the server is running\n"
           "  --pid-file=PATH           store the server's process ID in the given file\n"
           "\n"
           "Block device options:\n"
           "  -f, --format=FORMAT       set image format (raw, qcow2)\n"
           "  -r, --read-only           export read-only\n"
           "  -s, --snapshot            use FILE as an external snapshot, create a temporary\n"
           "                            file with backing_file=FILE, redirect the write to\n"
           "                            the temporary one\n"
           "  -n, --nocache             disable host cache\n"
           "      --cache=MODE          set cache mode used to access the disk image, the\n"
           "                            valid options are: 'none', 'writeback' (default),\n"
           "                            'writethrough', 'directsync' and 'unsafe'\n"
           "      --aio=MODE            accepted (native, io_uring or threads); ignored\n"
           "      --discard=MODE        set discard mode (ignore, unmap)\n"
           "      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)\n"
           "      --sandbox=on|off      seccomp filter on the server threads (default on)\n"
           "\n"
           "Not supported here: -c/--connect and -d/--disconnect (kernel NBD client),\n"
           "-L/--list (use qemu-nbd --list), -o, -l, --object other than secret, TLS.\n",
           progname, NBD_DEFAULT_PORT);
}

static void version(void)
{
    printf("%s 7.2.0 (cowvisor 0.1.0)\n"
           "Speaks qemu-nbd 7.2's command line and the NBD protocol.\n",
           progname);
}

enum {
    OPT_CACHE = 256, OPT_AIO, OPT_DISCARD, OPT_DETECT_ZEROES, OPT_OBJECT, OPT_TLSCREDS,
    OPT_IMAGE_OPTS, OPT_FORK, OPT_TLSAUTHZ, OPT_PID_FILE, OPT_SELINUX_LABEL, OPT_TLSHOSTNAME,
    OPT_SANDBOX,
};

static const struct option long_options[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "bind", required_argument, NULL, 'b' },
    { "port", required_argument, NULL, 'p' },
    { "socket", required_argument, NULL, 'k' },
    { "offset", required_argument, NULL, 'o' },
    { "read-only", no_argument, NULL, 'r' },
    { "allocation-depth", no_argument, NULL, 'A' },
    { "bitmap", required_argument, NULL, 'B' },
    { "connect", required_argument, NULL, 'c' },
    { "disconnect", no_argument, NULL, 'd' },
    { "list", no_argument, NULL, 'L' },
    { "snapshot", no_argument, NULL, 's' },
    { "load-snapshot", required_argument, NULL, 'l' },
    { "nocache", no_argument, NULL, 'n' },
    { "cache", required_argument, NULL, OPT_CACHE },
    { "aio", required_argument, NULL, OPT_AIO },
    { "discard", required_argument, NULL, OPT_DISCARD },
    { "detect-zeroes", required_argument, NULL, OPT_DETECT_ZEROES },
    { "shared", required_argument, NULL, 'e' },
    { "format", required_argument, NULL, 'f' },
    { "persistent", no_argument, NULL, 't' },
    { "verbose", no_argument, NULL, 'v' },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "export-name", required_argument, NULL, 'x' },
    { "description", required_argument, NULL, 'D' },
    { "tls-creds", required_argument, NULL, OPT_TLSCREDS },
    { "tls-hostname", required_argument, NULL, OPT_TLSHOSTNAME },
    { "tls-authz", required_argument, NULL, OPT_TLSAUTHZ },
    { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
    { "trace", required_argument, NULL, 'T' },
    { "fork", no_argument, NULL, OPT_FORK },
    { "pid-file", required_argument, NULL, OPT_PID_FILE },
    { "selinux-label", required_argument, NULL, OPT_SELINUX_LABEL },
    { "sandbox", required_argument, NULL, OPT_SANDBOX },
    { NULL, 0, NULL, 0 },
};

/* What the command line asked for beyond struct cownbd_opts. */
struct cmdline {
    bool seen_cache, seen_discard, seen_aio;
    bool kernel_client;             /* -c or -d */
    const char *unsupported;        /* first option cownbd does not implement */
};

static int parse_cache_mode(const char *mode, struct cownbd_opts *o)
{
    o->open_flags &= ~BDEV_NO_CACHE;
    o->exp.writethrough = false;
    o->exp.no_flush = false;
    if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
        o->open_flags |= BDEV_NO_CACHE;
    } else if (!strcmp(mode, "directsync")) {
        o->open_flags |= BDEV_NO_CACHE;
        o->exp.writethrough = true;
    } else if (!strcmp(mode, "writethrough")) {
        o->exp.writethrough = true;
    } else if (!strcmp(mode, "unsafe")) {
        o->exp.no_flush = true;
    } else if (strcmp(mode, "writeback") != 0) {
        return -EINVAL;
    }
    return 0;
}

/* qemu_strtoi with base 0: the whole string must be a number. */
static bool parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end || v < INT_MIN || v > INT_MAX) {
        return false;
    }
    *out = (int)v;
    return true;
}

static bool check_once(bool *seen, const char *msg)
{
    if (*seen) {
        cownbd_error("%s", msg);
        return false;
    }
    *seen = true;
    return true;
}

/* Returns false after printing why the option is wrong. */
static bool parse_option(int ch, struct cownbd_opts *o, struct cmdline *cl)
{
    switch (ch) {
    case 's': o->snapshot = true; break;
    case 'n':
        optarg = (char *)"none";
        /* fall through */
    case OPT_CACHE:
        if (!check_once(&cl->seen_cache, "-n and --cache can only be specified once")) {
            return false;
        }
        if (parse_cache_mode(optarg, o) < 0) {
            cownbd_error("Invalid cache mode `%s'", optarg);
            return false;
        }
        break;
    case OPT_AIO:
        if (!check_once(&cl->seen_aio, "--aio can only be specified once")) {
            return false;
        }
        if (strcmp(optarg, "native") && strcmp(optarg, "threads") && strcmp(optarg, "io_uring")) {
            cownbd_error("Invalid aio mode '%s'", optarg);
            return false;
        }
        break;
    case OPT_DISCARD:
        if (!check_once(&cl->seen_discard, "--discard can only be specified once")) {
            return false;
        }
        if (!strcmp(optarg, "unmap") || !strcmp(optarg, "on")) {
            o->exp.discard_unmap = true;
        } else if (!strcmp(optarg, "ignore") || !strcmp(optarg, "off")) {
            o->exp.discard_unmap = false;
        } else {
            cownbd_error("Invalid discard mode `%s'", optarg);
            return false;
        }
        break;
    case OPT_DETECT_ZEROES:
        if (!strcmp(optarg, "off")) {
            o->exp.detect_zeroes = NBD_DETECT_ZEROES_OFF;
        } else if (!strcmp(optarg, "on")) {
            o->exp.detect_zeroes = NBD_DETECT_ZEROES_ON;
        } else if (!strcmp(optarg, "unmap")) {
            o->exp.detect_zeroes = NBD_DETECT_ZEROES_UNMAP;
        } else {
            cownbd_error("Failed to parse detect_zeroes mode: invalid parameter value: %s", optarg);
            return false;
        }
        if (o->exp.detect_zeroes == NBD_DETECT_ZEROES_UNMAP && !o->exp.discard_unmap) {
            cownbd_error("setting detect-zeroes to unmap is not allowed without setting discard "
                         "operation to unmap");
            return false;
        }
        break;
    case 'b': o->bind = optarg; break;
    case 'p': o->port = optarg; break;
    case 'r':
        o->exp.read_only = true;
        o->open_flags |= BDEV_READ_ONLY;
        break;
    case 'A': o->exp.allocation_depth = true; break;
    case 'k':
        o->socket_path = optarg;
        if (optarg[0] != '/') {
            cownbd_error("socket path must be absolute");
            return false;
        }
        break;
    case 'c':
    case 'd':
        cl->kernel_client = true;
        break;
    case 'e':
        if (!parse_int(optarg, &o->shared) || o->shared < 0) {
            cownbd_error("Invalid shared device number '%s'", optarg);
            return false;
        }
        break;
    case 'f': o->format = optarg; break;
    case 't': o->persistent = true; break;
    case 'x':
        o->exp.name = optarg;
        if (strlen(optarg) > NBD_MAX_STRING_SIZE) {
            cownbd_error("export name '%s' too long", optarg);
            return false;
        }
        break;
    case 'D':
        o->exp.description = optarg;
        if (strlen(optarg) > NBD_MAX_STRING_SIZE) {
            cownbd_error("export description '%s' too long", optarg);
            return false;
        }
        break;
    case 'v': o->verbose = true; break;
    case 'T': break;    /* tracing: there are no trace points to enable */
    case OPT_FORK: o->fork = true; break;
    case OPT_SANDBOX:
        if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
            cownbd_error("--sandbox takes on or off, not '%s'", optarg);
            return false;
        }
        sandbox_set_enabled(!strcmp(optarg, "on"));
        break;
    case OPT_PID_FILE: o->pid_file = optarg; break;
    case 'o': cl->unsupported = cl->unsupported ? cl->unsupported : "-o/--offset"; break;
    case 'l': cl->unsupported = cl->unsupported ? cl->unsupported : "-l/--load-snapshot"; break;
    case 'B':
        if (o->exp.n_bitmaps == NBD_MAX_EXPORT_BITMAPS) {
            cownbd_error("Too many bitmaps (at most %d)", NBD_MAX_EXPORT_BITMAPS);
            return false;
        }
        /* qemu-nbd prepends each -B: the last one comes first. */
        memmove(&o->bitmaps[1], &o->bitmaps[0], (size_t)o->exp.n_bitmaps * sizeof(o->bitmaps[0]));
        o->bitmaps[0] = optarg;
        o->exp.n_bitmaps++;
        o->exp.bitmaps = o->bitmaps;
        break;
    case 'L': cl->unsupported = cl->unsupported ? cl->unsupported : "-L/--list (use qemu-nbd --list)"; break;
    case OPT_OBJECT: {
        struct error err = { 0 };
        int ret = object_add(optarg, &err);
        if (ret < 0) {
            cownbd_error("%s", err.msg);
            return false;
        }
        if (ret > 0) {
            fputs(object_help_text(), stdout);
            exit(0);
        }
        break;
    }
    case OPT_IMAGE_OPTS: o->image_opts = true; break;
    case OPT_TLSCREDS:
    case OPT_TLSAUTHZ:
    case OPT_TLSHOSTNAME:
        cl->unsupported = cl->unsupported ? cl->unsupported : "TLS (--tls-*)";
        break;
    case OPT_SELINUX_LABEL:
        cownbd_error("SELinux support not enabled in this binary");
        return false;
    default:
        cownbd_error("Try `%s --help' for more information.", progname);
        return false;
    }
    return true;
}

/* A service manager's listening socket (LISTEN_FDS), as qemu-nbd takes it:
 * only one, and no address of our own. */
static int check_socket_activation(struct cownbd_opts *o)
{
    struct error err = {0};
    int n = socket_activation_fds(&err);
    const char *refused = n <= 0 ? NULL
                        : o->socket_path ? "Unix socket can't be set when using socket activation"
                        : o->bind ? "The interface can't be set when using socket activation"
                        : o->port ? "TCP port number can't be set when using socket activation"
                        : NULL;
    if (n < 0) {
        cownbd_error("%s", err.msg);
    } else if (refused) {
        cownbd_error("%s", refused);
    } else if (n > 1) {
        cownbd_error("%s does not support socket activation with LISTEN_FDS > 1", progname);
    } else {
        o->activated_fd = n ? SOCKET_ACTIVATION_FIRST_FD : -1;
        return 0;
    }
    return -1;
}

static int parse_command_line(int argc, char **argv, struct cownbd_opts *o)
{
    struct cmdline cl = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L", long_options,
                             NULL)) != -1) {
        if (ch == 'h') {
            usage();
            exit(0);
        }
        if (ch == 'V') {
            version();
            exit(0);
        }
        if (!parse_option(ch, o, &cl)) {
            return -EINVAL;
        }
    }
    if (argc - optind != 1) {
        cownbd_error("Invalid number of arguments");
        fprintf(stderr, "Try `%s --help' for more information.\n", progname);
        return -EINVAL;
    }
    if (cl.kernel_client) {
        cownbd_error("Kernel /dev/nbdN support not available: -c/--connect and -d/--disconnect "
                     "are not supported by cownbd");
        return -ENOTSUP;
    }
    if (cl.unsupported) {
        cownbd_error("%s is not supported by cownbd", cl.unsupported);
        return -ENOTSUP;
    }
    o->filename = argv[optind];
    if (check_socket_activation(o) < 0) {
        return -EINVAL;
    }
    if (!o->socket_path && o->activated_fd < 0) {
        o->bind = o->bind ? o->bind : "0.0.0.0";
        o->port = o->port ? o->port : "10809";
    }
    /* Several clients may write at once: tell them writes are coherent. */
    o->exp.multi_conn = o->shared != 1;
    return 0;
}

static int open_export(const struct cownbd_opts *o, struct blockdev **bd, struct nbd_export *exp)
{
    struct error err = {0};
    if (cownbd_open_image(o, bd, &err) < 0) {
        cownbd_error("Failed to blk_new_open '%s': %s", o->filename, err.msg);
        return -1;
    }
    if (nbd_export_init(exp, *bd, &o->exp, &err) < 0) {
        cownbd_error("%s", err.msg);
        blockdev_close(*bd);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    progname = slash ? slash + 1 : argv[0];
    argv[0] = (char *)progname;     /* getopt's messages name the program alike */
    warning_set_sink(warning_sink_stderr, NULL);   /* in qemu-nbd's words, on stderr */
    struct cownbd_opts o = { .shared = 1, .activated_fd = -1 };
    if (parse_command_line(argc, argv, &o) < 0) {
        return 1;
    }
    if (o.verbose && log_get_level() < LOG_INFO) {
        log_set_level(LOG_INFO);
    }
    signal(SIGPIPE, SIG_IGN);
    struct error err = {0};
    if (o.fork && cownbd_daemonize(&err) < 0) {
        cownbd_error("%s", err.msg);
        return 1;
    }
    int backlog = (o.persistent || o.shared == 0) ? SOMAXCONN
                  : (o.shared < SOMAXCONN ? o.shared : SOMAXCONN);
    int listen_fd = o.activated_fd >= 0 ? o.activated_fd : cownbd_listen(&o, backlog, &err);
    if (listen_fd < 0) {
        cownbd_error("%s", err.msg);
        return 1;
    }
    struct blockdev *bd;
    struct nbd_export exp;
    if (open_export(&o, &bd, &exp) < 0) {
        close(listen_fd);
        if (o.socket_path) {
            unlink(o.socket_path);
        }
        return 1;
    }
    int rc = 0;
    if (o.pid_file && cownbd_write_pid_file(o.pid_file, &err) < 0) {
        cownbd_error("%s", err.msg);
        rc = 1;
    } else if (chdir("/") < 0) {
        /* Like qemu-nbd: do not keep a file system busy. */
        cownbd_error("Could not chdir to root directory: %s", strerror(errno));
        rc = 1;
    }
    if (rc == 0) {
        if (o.fork) {
            cownbd_daemon_ready();
        }
        /* From here on only clients' requests: the threads serving them inherit it. */
        if (sandbox_enter(SANDBOX_NBD, &err) < 0) {
            cownbd_error("%s", err.msg);
            rc = 1;
        }
    }
    if (rc == 0) {
        rc = cownbd_serve(listen_fd, &exp, &o);
    }
    close(listen_fd);
    nbd_export_destroy(&exp);
    blockdev_close(bd);
    if (o.socket_path) {
        unlink(o.socket_path);
    }
    return rc;
}
