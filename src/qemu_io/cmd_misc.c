/* qemu-io's commands about the image rather than its data: flush, truncate,
 * length, info, discard, alloc, map, and the process controls sigraise,
 * abort and sleep. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/blkdebug.h"
#include "block/blockdev.h"
#include "qemu_io/qemu_io.h"
#include "qemu_io/info_dump.h"

static int flush_f(struct cowio *io, int argc, char **argv)
{
    return io->open.no_flush ? 0 : blockdev_flush(io->bd, NULL);
}

static const struct cowio_cmd flush_cmd = {
    .name = "flush", .altname = "f", .func = flush_f,
    .oneline = "flush all in-core file state to disk",
};

/* Requests complete as they are issued; aio_flush prints their reports. */
static int aio_flush_f(struct cowio *io, int argc, char **argv)
{
    cowio_drain(io);
    return 0;
}

static const struct cowio_cmd aio_flush_cmd = {
    .name = "aio_flush", .func = aio_flush_f,
    .oneline = "completes all outstanding aio requests",
};

static int truncate_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd truncate_cmd = {
    .name = "truncate", .altname = "t", .func = truncate_f, .argmin = 1, .argmax = 3,
    .wants_write = true, .args = "[-m prealloc_mode] off",
    .oneline = "truncates the current file at the given offset",
};

static int truncate_f(struct cowio *io, int argc, char **argv)
{
    enum blockdev_prealloc prealloc = PREALLOC_OFF;
    int c;
    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            if (blockdev_prealloc_parse(optarg, &prealloc) < 0) {
                cowio_error("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&truncate_cmd);
            return -EINVAL;
        }
    }
    if (optind >= argc) {
        cowio_usage_of(&truncate_cmd);
        return -EINVAL;
    }
    int64_t size = cowio_cvtnum(argv[optind]);
    if (size < 0) {
        /* qemu-io names argv[1] here, even when it is the -m option */
        cowio_print_cvtnum_err(size, argv[1]);
        return (int)size;
    }
    struct error err = { 0 };
    int ret = blockdev_truncate(io->bd, (uint64_t)size, true, prealloc, &err);
    if (ret < 0) {
        cowio_error("%s", err.msg);
    }
    return ret;
}

static int length_f(struct cowio *io, int argc, char **argv)
{
    char s[64];
    cowio_cvtstr((double)blockdev_size(io->bd), s, sizeof(s));
    printf("%s\n", s);
    return 0;
}

static const struct cowio_cmd length_cmd = {
    .name = "length", .altname = "l", .func = length_f, .no_drain = true,
    .oneline = "gets the length of the current file",
};

/* Where a qcow2 image's VM state starts: just past the guest-visible range
 * that the L1 table covers (one L1 entry maps cluster_size * entries-per-L2). */
static uint64_t vm_state_offset(struct blockdev *bd, bool extended_l2)
{
    if (!blockdev_cluster_size(bd) || !blockdev_has_vmstate(bd)) {
        return 0;
    }
    uint64_t per_l1 = (uint64_t)blockdev_cluster_size(bd) * (blockdev_cluster_size(bd) / (extended_l2 ? 16 : 8));
    return (blockdev_size(bd) + per_l1 - 1) / per_l1 * per_l1;
}

static int info_f(struct cowio *io, int argc, char **argv)
{
    struct blockdev *bd = io->bd;
    printf("format name: %s\n", blockdev_format(bd));
    if (blockdev_is_protocol_node(bd)) {
        /* qemu-io names a protocol node by its format and its protocol name, the
         * same for QEMU's protocol drivers, and has no more to say about it. */
        printf("format name: %s\n", blockdev_format(bd));
        return -ENOTSUP;    /* no driver information: qemu-io's exit status says so */
    }
    char *json = blockdev_format_specific_json(bd);
    bool extended = json && (strstr(json, "\"extended-l2\": true") ||
                             strstr(json, "\"extended-l2\":true"));
    char s1[64], s2[64];
    cowio_cvtstr(blockdev_cluster_size(bd), s1, sizeof(s1));
    cowio_cvtstr((double)vm_state_offset(bd, extended), s2, sizeof(s2));
    printf("cluster size: %s\n", s1);
    printf("vm state offset: %s\n", s2);
    if (json && strcmp(json, "{}") != 0) {
        printf("Format specific information:\n");
        info_dump_json_tree(io->monitor ? io->monitor : stdout, json, 1);
    }
    free(json);
    return 0;
}

static const struct cowio_cmd info_cmd = {
    .name = "info", .altname = "i", .func = info_f, .no_drain = true,
    .oneline = "prints information about the current file",
};

static void discard_help(void)
{
    printf("\n"
           " discards a range of bytes from the given offset\n"
           "\n"
           " Example:\n"
           " 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n"
           "\n"
           " Discards a segment of the currently open file.\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           "\n");
}

static int discard_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd discard_cmd = {
    .name = "discard", .altname = "d", .func = discard_f, .argmin = 2, .argmax = -1,
    .wants_write = true, .args = "[-Cq] off len",
    .oneline = "discards a number of bytes at a specified offset", .help = discard_help,
};

static int discard_f(struct cowio *io, int argc, char **argv)
{
    bool machine = false, quiet = false;
    int c;
    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C': machine = true; break;
        case 'q': quiet = true; break;
        default:
            cowio_usage_of(&discard_cmd);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        cowio_usage_of(&discard_cmd);
        return -EINVAL;
    }
    int64_t offset = cowio_cvtnum(argv[optind]);
    if (offset < 0) {
        cowio_print_cvtnum_err(offset, argv[optind]);
        return (int)offset;
    }
    int64_t bytes = cowio_cvtnum(argv[optind + 1]);
    if (bytes < 0) {
        cowio_print_cvtnum_err(bytes, argv[optind + 1]);
        return (int)bytes;
    }
    if (bytes > COWIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRIu64 ", given %s\n", (uint64_t)COWIO_MAX_REQUEST,
               argv[optind + 1]);
        return -EINVAL;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = blockdev_discard(io->bd, (uint64_t)offset, (uint64_t)bytes, NULL);
    struct timespec t = cowio_elapsed(&t0);
    if (ret < 0) {
        printf("discard failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!quiet) {
        cowio_print_report(stdout, "discard", &t, offset, bytes, bytes, 1, machine);
    }
    return 0;
}

/* Whether [off, off + len) starts allocated in the top layer (qemu's
 * bdrv_is_allocated), and for how many bytes; *num is 0 past the end. */
static int top_allocated(struct blockdev *bd, uint64_t off, uint64_t len, uint64_t *num)
{
    if (off >= blockdev_size(bd) || len == 0) {
        *num = 0;
        return 0;
    }
    if (len > blockdev_size(bd) - off) {
        len = blockdev_size(bd) - off;
    }
    struct block_status st;
    int ret = blockdev_block_status(bd, off, len, &st, NULL);
    if (ret < 0) {
        return ret;
    }
    *num = st.len < len ? st.len : len;
    return st.depth == 0 && (st.flags & BDEV_STATUS_ALLOCATED);
}

static int alloc_f(struct cowio *io, int argc, char **argv)
{
    int64_t offset = cowio_cvtnum(argv[1]);
    if (offset < 0) {
        cowio_print_cvtnum_err(offset, argv[1]);
        return (int)offset;
    }
    int64_t count = 512;
    if (argc == 3) {
        count = cowio_cvtnum(argv[2]);
        if (count < 0) {
            cowio_print_cvtnum_err(count, argv[2]);
            return (int)count;
        }
    }
    uint64_t pos = (uint64_t)offset, remaining = (uint64_t)count, allocated = 0;
    while (remaining) {
        uint64_t num;
        int ret = top_allocated(io->bd, pos, remaining, &num);
        if (ret < 0) {
            printf("is_allocated failed: %s\n", strerror(-ret));
            return ret;
        }
        if (num == 0) {
            count -= (int64_t)remaining;
            break;
        }
        if (ret) {
            allocated += num;
        }
        pos += num;
        remaining -= num;
    }
    char s[64];
    cowio_cvtstr((double)offset, s, sizeof(s));
    printf("%" PRIu64 "/%" PRId64 " bytes allocated at offset %s\n", allocated, count, s);
    return 0;
}

static const struct cowio_cmd alloc_cmd = {
    .name = "alloc", .altname = "a", .func = alloc_f, .argmin = 1, .argmax = 2,
    .args = "offset [count]", .oneline = "checks if offset is allocated in the file",
};

static int map_f(struct cowio *io, int argc, char **argv)
{
    uint64_t offset = 0, left = blockdev_size(io->bd);
    while (left) {
        uint64_t run, num;
        int first = top_allocated(io->bd, offset, left, &run);
        if (first < 0) {
            cowio_error("Failed to get allocation status: %s", strerror(-first));
            return first;
        }
        if (run == 0) {
            cowio_error("Unexpected end of image");
            return -EIO;
        }
        /* Adjacent runs with the same answer print as one line. */
        while (run < left) {
            int ret = top_allocated(io->bd, offset + run, left - run, &num);
            if (ret != first || num == 0) {
                break;
            }
            run += num;
        }
        char s1[64], s2[64];
        cowio_cvtstr((double)run, s1, sizeof(s1));
        cowio_cvtstr((double)offset, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", s1, run,
               first ? "    allocated" : "not allocated", s2, offset);
        offset += run;
        left -= run;
    }
    return 0;
}

static const struct cowio_cmd map_cmd = {
    .name = "map", .func = map_f, .argmin = 0, .argmax = 0, .args = "",
    .oneline = "prints the allocated areas of a file",
};

static void sigraise_help(void)
{
    printf("\n"
           " raises the given signal\n"
           "\n"
           " Example:\n"
           " 'sigraise %i' - raises SIGTERM\n"
           "\n"
           " Invokes raise(signal), where \"signal\" is the mandatory integer argument\n"
           " given to sigraise.\n"
           "\n", SIGTERM);
}

static int sigraise_f(struct cowio *io, int argc, char **argv)
{
    int64_t sig = cowio_cvtnum(argv[1]);
    if (sig < 0) {
        cowio_print_cvtnum_err(sig, argv[1]);
        return (int)sig;
    }
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n", argv[1]);
        return -EINVAL;
    }
    /* raise() may end the process without flushing stdio */
    fflush(stdout);
    fflush(stderr);
    raise((int)sig);
    return 0;
}

static const struct cowio_cmd sigraise_cmd = {
    .name = "sigraise", .func = sigraise_f, .argmin = 1, .argmax = 1, .global = true,
    .no_drain = true, .args = "signal", .oneline = "raises a signal", .help = sigraise_help,
};

static int abort_f(struct cowio *io, int argc, char **argv)
{
    abort();
}

static const struct cowio_cmd abort_cmd = {
    .name = "abort", .func = abort_f, .global = true, .no_drain = true,
    .oneline = "simulate a program crash using abort(3)",
};

static int sleep_f(struct cowio *io, int argc, char **argv)
{
    char *end;
    long ms = strtol(argv[1], &end, 0);
    if (ms < 0 || *end != '\0') {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    return 0;
}

/* As qemu-io's, a sleep lets requests in flight go on (and stay stopped at
 * a breakpoint): it waits for none of them. */
static const struct cowio_cmd sleep_cmd = {
    .name = "sleep", .func = sleep_f, .argmin = 1, .argmax = 1, .global = true, .no_drain = true,
    .oneline = "waits for the given value in milliseconds",
};

/* Breakpoints belong to qemu's blkdebug driver; on any other image qemu-io
 * reports that they are not supported, and so does cowio. */
/* qemu-io's breakpoint commands, on the image's blkdebug filter: without
 * one they fail as qemu-io's do (ENOTSUP). */
static struct blkdebug *debug_of(struct cowio *io)
{
    return blockdev_blkdebug(io->bd);
}

static int break_f(struct cowio *io, int argc, char **argv)
{
    struct blkdebug *d = debug_of(io);
    int ret = d ? blkdebug_break(d, argv[1], argv[2]) : -ENOTSUP;
    if (ret < 0) {
        printf("Could not set breakpoint: %s\n", strerror(-ret));
    }
    return ret;
}

static int remove_break_f(struct cowio *io, int argc, char **argv)
{
    struct blkdebug *d = debug_of(io);
    int ret = d ? blkdebug_remove_break(d, argv[1]) : -ENOTSUP;
    if (ret < 0) {
        printf("Could not remove breakpoint %s: %s\n", argv[1], strerror(-ret));
    }
    return ret;
}

static int resume_f(struct cowio *io, int argc, char **argv)
{
    struct blkdebug *d = debug_of(io);
    int ret = d ? blkdebug_resume(d, argv[1]) : -ENOTSUP;
    if (ret < 0) {
        printf("Could not resume request: %s\n", strerror(-ret));
    }
    return ret;
}

static int wait_break_f(struct cowio *io, int argc, char **argv)
{
    struct blkdebug *d = debug_of(io);
    /* qemu-io would wait forever for a request that can never stop there. */
    if (!d || !blkdebug_wait_suspended(d, argv[1], cowio_aio_all_done, io)) {
        printf("Could not wait for breakpoint %s: %s\n", argv[1], strerror(d ? ENOENT : ENOTSUP));
        return d ? -ENOENT : -ENOTSUP;
    }
    return 0;
}

static const struct cowio_cmd break_cmd = {
    .name = "break", .func = break_f, .argmin = 2, .argmax = 2, .no_drain = true, .args = "event tag",
    .oneline = "sets a breakpoint on event and tags the stopped request as tag",
};
static const struct cowio_cmd remove_break_cmd = {
    .name = "remove_break", .func = remove_break_f, .argmin = 1, .argmax = 1, .no_drain = true, .args = "tag",
    .oneline = "remove a breakpoint by tag",
};
static const struct cowio_cmd resume_cmd = {
    .name = "resume", .func = resume_f, .argmin = 1, .argmax = 1, .no_drain = true, .args = "tag",
    .oneline = "resumes the request tagged as tag",
};
static const struct cowio_cmd wait_break_cmd = {
    .name = "wait_break", .func = wait_break_f, .argmin = 1, .argmax = 1, .no_drain = true, .args = "tag",
    .oneline = "waits for the suspension of a request",
};

const struct cowio_cmd *const cowio_misc_cmds[] = {
    &break_cmd, &remove_break_cmd, &resume_cmd, &wait_break_cmd,
    &flush_cmd, &aio_flush_cmd, &truncate_cmd, &length_cmd, &info_cmd, &discard_cmd,
    &alloc_cmd, &map_cmd, &sigraise_cmd, &abort_cmd, &sleep_cmd, NULL
};
