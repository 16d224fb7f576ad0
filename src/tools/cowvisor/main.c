/* cowvisor: the KVM virtual machine monitor's command line. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "machine/machine.h"
#include "config_file.h"
#include "qmp.h"
#include "qmp_migration.h"
#include "service.h"
#include "util/log.h"
#include "util/options.h"
#include "util/privilege.h"
#include "util/sandbox.h"
#include "util/size.h"
#include "virtio/virtio_blk.h"
#include "util/warning.h"

#define DEFAULT_MEMORY (512ull << 20)
#define DEFAULT_DISK_SIZE (8u << 20)

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: cowvisor [options]\n"
        "  --kernel PATH          Linux bzImage or ELF with a PVH entry note\n"
        "  --initrd PATH          initial ramdisk\n"
        "  --append CMDLINE       kernel command line\n"
        "  --kernel-decompress host|guest\n"
        "                         who unpacks a bzImage: the host (default; fast, no KASLR)\n"
        "                         or the kernel's own decompressor in the guest\n"
        "  --bios PATH            firmware (e.g. /usr/share/seabios/bios.bin)\n"
        "  --cpus N               vCPUs (default 1)\n"
        "  --memory SIZE          guest RAM (default 512M)\n"
        "  --disk file=PATH[,format=qcow2|raw][,readonly=on][,transport=pci|mmio][,serial=ID]\n"
        "         [,compressed-cache-size=SIZE]  qcow2: decompressed clusters kept (0: none;\n"
        "                         default 256M or RAM/64 at most, never more than the disk)\n"
        "         [,num-queues=N]  virtio-blk request queues (default: one per vCPU, at most 8)\n"
        "         [,queue-threads=on]  each queue served by a thread of its own (as QEMU's\n"
        "                         iothread) rather than the main loop\n"
        "         [,poll-max-ns=NS]  queue threads spin on the ring up to NS before sleeping\n"
        "                         (QEMU's iothread poll-max-ns; default 32768; 0: never)\n"
        "         [,discard=ignore|unmap]  guest discards reach the image (default ignore)\n"
        "         [,detect-zeroes=off|on|unmap]  zero writes become write-zeroes (unmap: deallocate,\n"
        "                         with discard=unmap)\n"
        "  --device virtio-rng|virtio-console[,transport=pci|mmio]\n"
        "  --net tap=NAME[,mac=MAC][,transport=pci|mmio]\n"
        "  --console stdio|file:PATH|unix:PATH|tcp:HOST:PORT\n"
        "                         on stdio (a terminal) Ctrl-C goes to the guest; Ctrl-A x quits,\n"
        "                         Ctrl-A c toggles the monitor (HMP), Ctrl-A h lists the escapes;\n"
        "                         sockets are servers (UNIX: mode 0600)\n"
        "  --no-reboot            exit when the guest resets\n"
        "  --sandbox on|off       seccomp filters per thread kind (default on)\n"
        "  --runas USER|UID:GID   drop root for this user once the VM is set up (as QEMU's -runas)\n"
        "  --chroot DIR           and chroot to DIR first (as QEMU's -chroot)\n"
        "  --qmp unix:PATH,server[,nowait][,perm=0600] | tcp:HOST:PORT,server[,nowait]\n"
        "                         QMP monitor (QEMU's protocol); UNIX sockets are mode 0600\n"
        "  --restore DIR          start from a snapshot to files (same configuration)\n"
        "  --name NAME            the VM's name (QMP query-name; the process's name in ps)\n"
        "  --uuid UUID            the VM's UUID (QMP query-uuid)\n"
        "  --daemonize            run in the background once the VM and its monitor are up\n"
        "                         (the console must not be stdio)\n"
        "  --pidfile FILE         write the process id to FILE (locked; removed at exit)\n"
        "  --log FILE|syslog      where messages go (default: stderr)\n"
        "  --config FILE          options from FILE, one per line without the dashes\n"
        "                         (\"disk file=vm.qcow2\"); the command line's come after\n"
        "  --log-level error|warn|info|debug\n"
        "                         how much is logged (default warn; COWVISOR_LOG sets it too)\n"
        "  --loadvm NAME          start from the internal snapshot NAME of the qcow2 disks\n"
        "  --incoming URI         wait for a live migration: tcp:HOST:PORT, unix:PATH or defer\n"
        "  --record FILE          record the run into a replay log (one vCPU, virtio on mmio, no --net)\n"
        "  --replay FILE          re-run a recorded log with the same configuration; no outside input\n"
        "  --replay-break K       with --replay: pause after exit K (QMP query-replay, pmemsave),\n"
        "                         replaying from the last time-travel snapshot before K\n"
        "  --record-snapshots N   with --record: a time-travel snapshot every N exits in FILE.snap\n"
        "                         (default 1000000; 0: none)\n"
        "QMP also takes x-cowvisor-snapshot-files {\"directory\": DIR, \"type\": \"full\"|\"diff\"}:\n"
        "a snapshot of memory and state to DIR (disks are not copied) for --restore.\n"
        "With no arguments, boots the built-in demo guest (installed with cowvisor) on\n"
        "fresh temporary disks; it runs its self-tests and exits 0 when they pass.\n"
        "Exit status: 0 when the guest powers off, (v << 1) | 1 when it writes v to the\n"
        "debug-exit port 0xf4 (the demo: 0 for v = 0), 255 on errors.\n");
}

static int parse_transport(struct options *o, enum transport *t, struct error *err)
{
    const char *v = options_get(o, "transport");
    if (!v || strcmp(v, "pci") == 0) {
        *t = TRANSPORT_PCI;
    } else if (strcmp(v, "mmio") == 0) {
        *t = TRANSPORT_MMIO;
    } else {
        return error_set(err, -EINVAL, "transport must be pci or mmio, not '%s'", v);
    }
    return 0;
}

static int parse_num_queues(struct options *o, int *out, struct error *err)
{
    const char *v = options_get(o, "num-queues");
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    /* Syntax here; the device refuses more queues than it has (virtio_blk_init). */
    if (v && (!*v || *end || n < 1 || n > UINT16_MAX)) {
        return error_set(err, -EINVAL, "--disk num-queues must be a positive number, not '%s'", v);
    }
    *out = (int)n;
    return 0;
}

static int parse_poll_max_ns(struct options *o, struct disk_config *d, struct error *err)
{
    const char *v = options_get(o, "poll-max-ns");
    char *end;
    errno = 0;
    unsigned long long n = v ? strtoull(v, &end, 10) : VIRTIO_BLK_POLL_MAX_NS_DEFAULT;
    if (v && (!*v || *end || *v == '-' || errno || n > 1000000000ull)) {
        return error_set(err, -EINVAL, "--disk poll-max-ns must be a number of nanoseconds up to "
                         "1000000000, not '%s'", v);
    }
    if (v && !d->queue_threads) {
        return error_set(err, -EINVAL, "--disk poll-max-ns needs queue-threads=on (only queue threads poll)");
    }
    d->poll_max_ns = n;
    return 0;
}

/* -drive's discard= and detect-zeroes= with QEMU's values and words. */
static int parse_disk_writes(struct options *o, struct disk_config *d, struct error *err)
{
    const char *discard = options_get(o, "discard");
    const char *zeroes = options_get(o, "detect-zeroes");
    d->discard_unmap = discard && (!strcmp(discard, "unmap") || !strcmp(discard, "on"));
    if (discard && !d->discard_unmap && strcmp(discard, "ignore") && strcmp(discard, "off")) {
        return error_set(err, -EINVAL, "--disk: Invalid discard option '%s' (ignore, off, unmap or on)", discard);
    }
    if (!zeroes || !strcmp(zeroes, "off")) {
        d->detect_zeroes = BDEV_DETECT_ZEROES_OFF;
    } else if (!strcmp(zeroes, "on")) {
        d->detect_zeroes = BDEV_DETECT_ZEROES_ON;
    } else if (!strcmp(zeroes, "unmap")) {
        /* Without discard=unmap QEMU's -drive takes it and never unmaps. */
        d->detect_zeroes = BDEV_DETECT_ZEROES_UNMAP;
    } else {
        return error_set(err, -EINVAL, "--disk detect-zeroes: invalid parameter value: %s (off, on or unmap)", zeroes);
    }
    return 0;
}

/* Values point into o, which the caller keeps for the program's lifetime. */
static int parse_disk(struct machine_config *cfg, struct options *o, const char *text, struct error *err)
{
    if (cfg->ndisks == MACHINE_MAX_DISKS) {
        return error_set(err, -E2BIG, "at most %d disks", MACHINE_MAX_DISKS);
    }
    struct disk_config *d = &cfg->disks[cfg->ndisks];
    int ret = options_parse(o, text, "file", err);
    if (ret < 0) {
        return ret;
    }
    d->file = options_get(o, "file");
    d->format = options_get(o, "format");
    d->serial = options_get(o, "serial");
    if (!d->file || !*d->file) {
        return error_set(err, -EINVAL, "--disk needs file=PATH");
    }
    d->compressed_cache_set = options_get(o, "compressed-cache-size") != NULL;
    if ((ret = options_get_size(o, "compressed-cache-size", &d->compressed_cache_size, err)) < 0 ||
        (ret = options_get_bool(o, "readonly", &d->read_only, err)) < 0 ||
        (ret = parse_transport(o, &d->transport, err)) < 0 ||
        (ret = parse_num_queues(o, &d->num_queues, err)) < 0 ||
        (ret = options_get_bool(o, "queue-threads", &d->queue_threads, err)) < 0 ||
        (ret = parse_poll_max_ns(o, d, err)) < 0 ||
        (ret = parse_disk_writes(o, d, err)) < 0 ||
        (ret = options_check_unused(o, "--disk", err)) < 0) {
        return ret;
    }
    if (d->serial && strlen(d->serial) > 20) {
        return error_set(err, -EINVAL, "--disk serial is at most 20 characters");
    }
    cfg->ndisks++;
    return 0;
}

static int parse_device(struct machine_config *cfg, struct options *o, const char *text, struct error *err)
{
    int ret = options_parse(o, text, "driver", err);
    if (ret < 0) {
        return ret;
    }
    const char *driver = options_get(o, "driver");
    enum transport t = TRANSPORT_PCI;
    if ((ret = parse_transport(o, &t, err)) < 0 || (ret = options_check_unused(o, "--device", err)) < 0) {
        return ret;
    }
    if (driver && strcmp(driver, "virtio-rng") == 0 && cfg->nrng < 4) {
        cfg->rng[cfg->nrng++] = t;
    } else if (driver && strcmp(driver, "virtio-console") == 0 && cfg->nvconsole < 4) {
        cfg->vconsole[cfg->nvconsole++] = t;
    } else {
        return error_set(err, -EINVAL, "--device: unknown or too many '%s' (virtio-rng, virtio-console)",
                         driver ? driver : "");
    }
    return 0;
}

static int parse_net(struct machine_config *cfg, struct options *o, const char *text, struct error *err)
{
    int ret = options_parse(o, text, "tap", err);
    if (ret < 0) {
        return ret;
    }
    cfg->net_tap = options_get(o, "tap");
    cfg->net_mac = options_get(o, "mac");
    if (!cfg->net_tap) {
        return error_set(err, -EINVAL, "--net needs tap=NAME");
    }
    if ((ret = parse_transport(o, &cfg->net_transport, err)) < 0) {
        return ret;
    }
    return options_check_unused(o, "--net", err);
}

/* The demo guest: installed beside the program (COWVISOR_DATA_REL from the
 * binary's directory), else the build tree's, for a build run in place. */
static int demo_guest_path(const char **out, struct error *err)
{
    static char path[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        *slash = 0;
        int len = COWVISOR_DATA_REL[0] == '/' ? snprintf(path, sizeof(path), "%s/guest.elf", COWVISOR_DATA_REL)
                  : snprintf(path, sizeof(path), "%.3000s/%s/guest.elf", exe, COWVISOR_DATA_REL);
        static char resolved[PATH_MAX];
        if (len < (int)sizeof(path) && access(path, R_OK) == 0) {
            *out = realpath(path, resolved) ? resolved : path;
            return 0;
        }
    }
    if (access(COWVISOR_TEST_GUEST, R_OK) == 0) {
        *out = COWVISOR_TEST_GUEST;
        return 0;
    }
    return error_set(err, -ENOENT, "the demo guest is not installed (looked for '%s')", path);
}

/* With no arguments: the test guest on two fresh disks (one per transport)
 * plus rng and console on both transports. */
static int default_config(struct machine_config *cfg, char paths[2][64], struct error *err)
{
    int ret = demo_guest_path(&cfg->kernel, err);
    if (ret < 0) {
        return ret;
    }
    log_info("demo guest: %s", cfg->kernel);
    for (int i = 0; i < 2; i++) {
        snprintf(paths[i], 64, "/tmp/cowvisor-disk-XXXXXX");
        int fd = mkstemp(paths[i]);
        if (fd < 0 || ftruncate(fd, DEFAULT_DISK_SIZE) < 0) {
            return error_set_errno(err, -errno, "creating a temporary disk");
        }
        close(fd);
        cfg->disks[i] = (struct disk_config){ .file = paths[i], .format = "raw",
                                              .transport = i ? TRANSPORT_PCI : TRANSPORT_MMIO };
        cfg->rng[i] = cfg->vconsole[i] = i ? TRANSPORT_PCI : TRANSPORT_MMIO;
    }
    cfg->ndisks = cfg->nrng = cfg->nvconsole = 2;
    return 0;
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_APPEND, OPT_BIOS, OPT_CPUS, OPT_MEMORY, OPT_DISK, OPT_DEVICE,
       OPT_NET, OPT_CONSOLE, OPT_NO_REBOOT, OPT_KERNEL_DECOMPRESS, OPT_HELP, OPT_VERSION, OPT_QMP, OPT_RESTORE, OPT_LOADVM,
       OPT_SANDBOX, OPT_INCOMING, OPT_NAME, OPT_UUID, OPT_DAEMONIZE, OPT_PIDFILE, OPT_LOG, OPT_LOG_LEVEL,
       OPT_RUNAS, OPT_CHROOT, OPT_RECORD, OPT_REPLAY, OPT_REPLAY_BREAK,
       OPT_RECORD_SNAPSHOTS };

static const struct option long_options[] = {
    { "kernel", required_argument, NULL, OPT_KERNEL },
    { "initrd", required_argument, NULL, OPT_INITRD },
    { "append", required_argument, NULL, OPT_APPEND },
    { "bios", required_argument, NULL, OPT_BIOS },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "disk", required_argument, NULL, OPT_DISK },
    { "device", required_argument, NULL, OPT_DEVICE },
    { "net", required_argument, NULL, OPT_NET },
    { "console", required_argument, NULL, OPT_CONSOLE },
    { "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
    { "sandbox", required_argument, NULL, OPT_SANDBOX },
    { "runas", required_argument, NULL, OPT_RUNAS },
    { "chroot", required_argument, NULL, OPT_CHROOT },
    { "kernel-decompress", required_argument, NULL, OPT_KERNEL_DECOMPRESS },
    { "qmp", required_argument, NULL, OPT_QMP },
    { "restore", required_argument, NULL, OPT_RESTORE },
    { "loadvm", required_argument, NULL, OPT_LOADVM },
    { "incoming", required_argument, NULL, OPT_INCOMING },
    { "name", required_argument, NULL, OPT_NAME },
    { "uuid", required_argument, NULL, OPT_UUID },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { "log", required_argument, NULL, OPT_LOG },
    { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
    { "record", required_argument, NULL, OPT_RECORD },
    { "replay", required_argument, NULL, OPT_REPLAY },
    { "replay-break", required_argument, NULL, OPT_REPLAY_BREAK },
    { "record-snapshots", required_argument, NULL, OPT_RECORD_SNAPSHOTS },
    { "help", no_argument, NULL, OPT_HELP },
    { "version", no_argument, NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
};

static struct options option_lists[MACHINE_MAX_DISKS + 8];
static const char *qmp_spec, *restore_dir, *loadvm_name, *incoming_uri;
/* Record/replay: the log, its mode, the replay's break point (0: none). */
static const char *replay_file;
static enum machine_replay_mode replay_mode;
static uint64_t replay_break;
static uint64_t record_snapshots = MACHINE_REPLAY_SNAPSHOT_EVERY;
static bool record_snapshots_given;
/* Service mode (service.h). */
static const char *pidfile_path, *log_target;
static bool daemonize;
/* --runas and --chroot (privilege.h). */
static const char *runas_user, *chroot_dir;
static struct privilege_drop privileges;
static int noption_lists;

/* parse_args: the command line answered itself (--help, --version). */
#define PARSE_DONE 1

static bool valid_uuid(const char *u)
{
    static const char pattern[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (strlen(u) != sizeof(pattern) - 1) {
        return false;
    }
    for (size_t i = 0; pattern[i]; i++) {
        if (pattern[i] == '-' ? u[i] != '-' : !isxdigit((unsigned char)u[i])) {
            return false;
        }
    }
    return true;
}

static int parse_log_level(const char *v, struct error *err)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++) {
        if (strcmp(v, names[i]) == 0) {
            log_set_level((enum log_level)i);
            return 0;
        }
    }
    return error_set(err, -EINVAL, "--log-level: '%s' is not error, warn, info or debug", v);
}

static int parse_args(int argc, char **argv, struct machine_config *cfg, struct error *err)
{
    int opt;
    while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        struct options *o = noption_lists < (int)(sizeof(option_lists) / sizeof(option_lists[0]))
                                ? &option_lists[noption_lists] : NULL;
        int ret = 0;
        char *end;
        switch (opt) {
        case OPT_KERNEL: cfg->kernel = optarg; break;
        case OPT_INITRD: cfg->initrd = optarg; break;
        case OPT_APPEND: cfg->append = optarg; break;
        case OPT_BIOS: cfg->bios = optarg; break;
        case OPT_CONSOLE: cfg->console = optarg; break;
        case OPT_NO_REBOOT: cfg->no_reboot = true; break;
        case OPT_SANDBOX:
            if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
                return error_set(err, -EINVAL, "--sandbox takes on or off, not '%s'", optarg);
            }
            sandbox_set_enabled(!strcmp(optarg, "on"));
            break;
        case OPT_KERNEL_DECOMPRESS:
            if (strcmp(optarg, "host") != 0 && strcmp(optarg, "guest") != 0) {
                return error_set(err, -EINVAL, "--kernel-decompress: '%s' is neither host nor guest", optarg);
            }
            cfg->kernel_decompress = optarg[0] == 'h' ? BOOT_DECOMPRESS_HOST : BOOT_DECOMPRESS_GUEST;
            break;
        case OPT_QMP: qmp_spec = optarg; break;
        case OPT_RUNAS: runas_user = optarg; break;
        case OPT_CHROOT: chroot_dir = optarg; break;
        case OPT_RESTORE: restore_dir = optarg; break;
        case OPT_LOADVM: loadvm_name = optarg; break;
        case OPT_INCOMING: incoming_uri = optarg; cfg->incoming = true; break;
        case OPT_NAME: cfg->name = optarg; break;
        case OPT_UUID:
            if (!valid_uuid(optarg)) {
                return error_set(err, -EINVAL, "--uuid: '%s' is not a UUID (8-4-4-4-12 hex digits)", optarg);
            }
            cfg->uuid = optarg;
            break;
        case OPT_DAEMONIZE: daemonize = true; break;
        case OPT_PIDFILE: pidfile_path = optarg; break;
        case OPT_LOG: log_target = optarg; break;
        case OPT_LOG_LEVEL:
            if ((ret = parse_log_level(optarg, err)) < 0) {
                return ret;
            }
            break;
        case OPT_RECORD:
        case OPT_REPLAY:
            if (replay_file) {
                return error_set(err, -EINVAL, "give only one of --record and --replay");
            }
            replay_file = optarg;
            replay_mode = opt == OPT_RECORD ? MACHINE_REPLAY_RECORD : MACHINE_REPLAY_PLAY;
            cfg->record_replay = true;
            break;
        case OPT_REPLAY_BREAK:
            errno = 0;
            replay_break = strtoull(optarg, &end, 10);
            if (*end || !*optarg || optarg[0] == '-' || errno || replay_break == 0) {
                return error_set(err, -EINVAL, "--replay-break: '%s' is not an exit number (1 or more)", optarg);
            }
            break;
        case OPT_RECORD_SNAPSHOTS:
            errno = 0;
            record_snapshots = strtoull(optarg, &end, 10);
            if (*end || !*optarg || optarg[0] == '-' || errno) {
                return error_set(err, -EINVAL, "--record-snapshots: '%s' is not a number of exits", optarg);
            }
            record_snapshots_given = true;
            break;
        case OPT_CPUS:
            cfg->cpus = (int)strtol(optarg, &end, 10);
            if (*end || cfg->cpus < 1) {
                return error_set(err, -EINVAL, "--cpus: '%s' is not a positive number", optarg);
            }
            break;
        case OPT_MEMORY:
            /* Like QEMU's -m, a bare number means MiB. */
            if (size_parse(optarg, &cfg->memory) < 0) {
                return error_set(err, -EINVAL, "--memory: invalid size '%s'", optarg);
            }
            if (optarg[strlen(optarg) - 1] >= '0' && optarg[strlen(optarg) - 1] <= '9') {
                cfg->memory <<= 20;
            }
            break;
        case OPT_DISK:
        case OPT_DEVICE:
        case OPT_NET:
            if (!o) {
                return error_set(err, -E2BIG, "too many --disk/--device/--net options");
            }
            noption_lists++;
            ret = opt == OPT_DISK ? parse_disk(cfg, o, optarg, err)
                : opt == OPT_DEVICE ? parse_device(cfg, o, optarg, err) : parse_net(cfg, o, optarg, err);
            if (ret < 0) {
                return ret;
            }
            break;
        case OPT_HELP:
        case 'h':
            usage(stdout);
            return PARSE_DONE;
        case OPT_VERSION:
            printf("cowvisor version 0.1.0\n");
            return PARSE_DONE;
        default:
            return error_set(err, -EINVAL, "invalid option (see --help)");
        }
    }
    if (optind < argc) {
        return error_set(err, -EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
    }
    if (!!cfg->kernel == !!cfg->bios) {
        return error_set(err, -EINVAL, "give exactly one of --kernel and --bios");
    }
    if ((cfg->initrd || cfg->append) && !cfg->kernel) {
        return error_set(err, -EINVAL, "--initrd and --append need --kernel");
    }
    if (replay_break && replay_mode != MACHINE_REPLAY_PLAY) {
        return error_set(err, -EINVAL, "--replay-break needs --replay");
    }
    if (record_snapshots_given && replay_mode != MACHINE_REPLAY_RECORD) {
        return error_set(err, -EINVAL, "--record-snapshots needs --record");
    }
    if (replay_file && incoming_uri) {
        return error_set(err, -EINVAL, "--record/--replay cannot take an --incoming migration");
    }
    if (daemonize && (!cfg->console || strcmp(cfg->console, "stdio") == 0)) {
        return error_set(err, -EINVAL, "--daemonize needs a --console other than stdio (file:, unix: or tcp:)");
    }
    if (daemonize && qmp_spec && !strstr(qmp_spec, "nowait") && !strstr(qmp_spec, "wait=off")) {
        log_info("--daemonize: the daemon is ready once a QMP client has connected (no 'nowait')");
    }
    int ret = privilege_drop_prepare(&privileges, runas_user, chroot_dir, err);
    if (ret < 0) {
        return ret;
    }
    if (privileges.drop_user) {
        sandbox_allow_credential_change();
    }
    return 0;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Ends the log after the run: one line on stderr with the count of events,
 * or the first divergence (which wins over the run's own status). A replay
 * exits with the recorded run's status. */
static int finish_replay(struct machine *m, int ret, struct error *err)
{
    struct error ferr = *err;       /* a failed run's message: record logs it */
    int status = ret;
    int64_t n = machine_replay_finish(m, &status, &ferr);
    if (ret < 0) {
        return ret;     /* the run failed first (a divergence stops it: err says so) */
    }
    if (n < 0) {
        *err = ferr;
        return (int)n;
    }
    fprintf(stderr, "cowvisor: %s %lld events %s '%s'\n", replay_mode == MACHINE_REPLAY_RECORD ? "recorded" : "replayed",
            (long long)n, replay_mode == MACHINE_REPLAY_RECORD ? "into" : "from", replay_file);
    if (status < 0) {
        *err = ferr;
    }
    return status;
}

/* The VM from machine creation to the end of its run. */
static int run_vm(const struct machine_config *cfg, struct service *sv, struct error *err)
{
    struct timespec t_start;
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    struct machine *m = NULL;
    int ret = machine_create(&m, cfg, err);
    struct qmp_server *qmp = NULL;
    if (ret == 0 && restore_dir && loadvm_name) {
        ret = error_set(err, -EINVAL, "give only one of --restore and --loadvm");
    }
    if (ret == 0 && restore_dir && (ret = machine_restore_files(m, restore_dir, err)) < 0) {
        error_prefix(err, "--restore '%s'", restore_dir);
    }
    if (ret == 0 && restore_dir) {
        log_info("--restore: guest ready to run %.2f ms after main()", ms_since(&t_start));
    }
    if (ret == 0 && loadvm_name && (ret = machine_loadvm(m, loadvm_name, NULL, err)) < 0) {
        error_prefix(err, "--loadvm '%s'", loadvm_name);
    }
    if (ret == 0 && replay_file) {
        machine_replay_set_snapshot_interval(m, record_snapshots);
        ret = machine_replay_start(m, replay_mode, replay_file, restore_dir, loadvm_name, replay_break, err);
    }
    if (ret == 0 && incoming_uri && (ret = qmp_migration_incoming(m, incoming_uri, err)) < 0) {
        error_prefix(err, "--incoming '%s'", incoming_uri);
    }
    /* The monitor serves QMP clients and a terminal's Ctrl-A c. */
    if (ret == 0 && (qmp_spec || !cfg->console || strcmp(cfg->console, "stdio") == 0)) {
        ret = qmp_server_start(&qmp, m, qmp_spec, err);
        qmp_migration_attach_monitor(qmp);
    }
    /* Everything is open: from here on the VM runs as the user asked for. */
    if (ret == 0 && privilege_drop_wanted(&privileges)) {
        ret = privilege_drop_apply(&privileges, err);
    }
    if (ret == 0) {
        service_ready(sv, log_target && strcmp(log_target, "syslog") != 0);
        ret = machine_run(m, err);
    }
    if (ret >= 0 && qmp_migration_exit_status(err) < 0) {
        ret = err->code;
    }
    if (replay_file && m) {
        ret = finish_replay(m, ret, err);
    }
    qmp_migration_end();
    qmp_server_stop(qmp);
    machine_destroy(m);
    privilege_drop_free(&privileges);
    return ret;
}

/* Before the VM: the log, the daemon, its pid file and name. Returns 1 in
 * a daemon's parent, with *status what the daemon reported. */
static int start_service(const struct machine_config *cfg, struct service *sv, int *status, struct error *err)
{
    int ret = 0;
    if (log_target && (ret = service_log(log_target, err)) < 0) {
        return ret;
    }
    if (daemonize && (ret = service_daemonize(sv, status, err)) != 0) {
        return ret;
    }
    if (pidfile_path && (ret = service_pidfile(sv, pidfile_path, err)) < 0) {
        return ret;
    }
    if (cfg->name) {
        service_set_name(cfg->name);
    }
    return 0;
}

/* What a replay cannot reproduce on KVM without a PMU, printed with a divergence. */
static const char replay_limits[] =
    "cowvisor: replay on KVM counts exits, not instructions: a guest that reads the TSC with RDTSC or RDTSCP,\n"
    "  or takes RDRAND/RDSEED values, natively (hidden in CPUID, still executable), or spins on memory\n"
    "  a device writes asynchronously, runs differently in replay; the first differing exit is reported.\n";

int main(int argc, char **argv)
{
    struct machine_config cfg = { .cpus = 1, .memory = DEFAULT_MEMORY };
    struct error err = { 0 };
    warning_set_sink(warning_sink_log, NULL);  /* a daemon's stderr may be gone: --log decides */
    char temp_disks[2][64] = { "", "" };
    struct service sv;
    service_init(&sv);
    bool demo = argc == 1;
    struct config_argv args = { 0 };
    int ret = demo ? default_config(&cfg, temp_disks, &err) : config_argv_build(&args, argc, argv, &err);
    if (!demo && ret == 0) {
        ret = parse_args(args.argc, args.argv, &cfg, &err);
    }
    int status = 0;
    if (ret == 0) {
        ret = start_service(&cfg, &sv, &status, &err);
    }
    if (ret == 0) {
        ret = run_vm(&cfg, &sv, &err);
    }
    for (int i = 0; i < 2; i++) {
        if (temp_disks[i][0]) {
            unlink(temp_disks[i]);
        }
    }
    for (int i = 0; i < noption_lists; i++) {
        options_free(&option_lists[i]);
    }
    if (ret == PARSE_DONE) {
        config_argv_free(&args);
        return status;      /* --help, --version, or a daemon's parent */
    }
    if (ret < 0) {
        const char *msg = err.msg[0] ? err.msg : strerror(-ret);
        /* A daemon not yet ready has its parent print it (once). */
        if (sv.ready_fd < 0 || log_target) {
            fprintf(stderr, "cowvisor: %s\n", msg);
        }
        if (strstr(msg, "diverged")) {
            fputs(replay_limits, stderr);
        }
        service_failed(&sv, 255, msg);
        service_end(&sv);
        config_argv_free(&args);
        return 255;
    }
    service_end(&sv);
    config_argv_free(&args);
    /* The demo guest reports its self-tests through debug-exit: v = 0 is
     * (0 << 1) | 1. */
    return demo && ret == 1 ? 0 : ret;
}
