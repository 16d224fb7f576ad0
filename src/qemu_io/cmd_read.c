/* read, readv and aio_read. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/qemu_io.h"

/* ---- read ---- */

static void read_help(void)
{
    printf("\n"
           " reads a range of bytes from the given offset\n"
           "\n"
           " Example:\n"
           " 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file\n"
           "\n"
           " Reads a segment of the currently open file, optionally dumping it to the\n"
           " standard output stream (with -v option) for subsequent inspection.\n"
           " -b, -- read from the VM state rather than the virtual disk\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -l, -- length for pattern verification (only with -P)\n"
           " -p, -- ignored for backwards compatibility\n"
           " -P, -- use a pattern to verify read data\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           " -s, -- start offset for pattern verification (only with -P)\n"
           " -v, -- dump buffer to standard output\n"
           "\n");
}

static int read_f(struct cowio *io, int argc, char **argv);

static const struct cowio_cmd read_cmd = {
    .name = "read", .altname = "r", .func = read_f, .argmin = 2, .argmax = -1,
    .args = "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    .oneline = "reads a number of bytes at a specified offset", .help = read_help,
};

static int read_f(struct cowio *io, int argc, char **argv)
{
    struct cowio_io_opts o = { 0 };
    int64_t offset, count;
    int ret = cowio_parse_io_opts(argc, argv, &read_cmd, "bCl:pP:qs:v", 0, &o);
    if (ret != 0) {
        return ret;
    }
    if (!cowio_parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (!cowio_parse_num(argv[optind + 1], &count)) {
        return (int)count;
    }
    if (count > COWIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRIu64 ", given %s\n", (uint64_t)COWIO_MAX_REQUEST,
               argv[optind + 1]);
        return -EINVAL;
    }
    if (!o.has_pattern && (o.has_len || o.has_start)) {
        cowio_usage_of(&read_cmd);
        return -EINVAL;
    }
    if (!o.has_len) {
        o.pat_len = count - o.pat_start;
    }
    if (o.pat_len < 0 || o.pat_len + o.pat_start > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (o.vmstate && !cowio_sector_aligned(offset, count)) {
        return -EINVAL;
    }

    uint8_t *buf = cowio_alloc(io, (size_t)count, 0xab);
    if (!buf) {
        printf("read failed: %s\n", strerror(ENOMEM));
        return -ENOMEM;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (o.vmstate) {
        ret = blockdev_vmstate_read(io->bd, (uint64_t)offset, buf, (size_t)count, NULL);
    } else {
        ret = cowio_do_read(io, (uint64_t)offset, buf, (size_t)count);
    }
    struct timespec t = cowio_elapsed(&t0);
    if (ret < 0) {
        printf("read failed: %s\n", strerror(-ret));
        goto out;
    }
    if (o.has_pattern && !cowio_pattern_ok(buf + o.pat_start, o.pat_len, o.pattern)) {
        printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
               offset + o.pat_start, o.pat_len);
        ret = -EINVAL;
    }
    if (!o.quiet) {
        if (o.dump) {
            cowio_dump_buffer(stdout, buf, offset, count);
        }
        cowio_print_report(stdout, "read", &t, offset, count, count, 1, o.machine);
    }
out:
    cowio_free(io, buf);
    return ret;
}

static void readv_help(void)
{
    printf("\n"
           " reads a range of bytes from the given offset into multiple buffers\n"
           "\n"
           " Example:\n"
           " 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
           "\n"
           " Reads a segment of the currently open file, optionally dumping it to the\n"
           " standard output stream (with -v option) for subsequent inspection.\n"
           " Uses multiple iovec buffers if more than one byte range is specified.\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -P, -- use a pattern to verify read data\n"
           " -v, -- dump buffer to standard output\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           "\n");
}

static int readv_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd readv_cmd = {
    .name = "readv", .func = readv_f, .argmin = 2, .argmax = -1,
    .args = "[-Cqv] [-P pattern] off len [len..]",
    .oneline = "reads a number of bytes at a specified offset", .help = readv_help,
};

/* readv and aio_read: parses the options (aio_read also takes -i), runs the
 * read and reports it, now (readv) or when the event loop next runs
 * (aio_read). */
static int vector_read(struct cowio *io, const struct cowio_cmd *cmd, int argc, char **argv, bool async)
{
    struct cowio_io_opts o = { 0 };
    int parsed = cowio_parse_io_opts(argc, argv, cmd, async ? "CP:iqv" : "CP:qv", COWIO_OPT_VECTOR, &o);
    if (parsed == 1) {
        printf("injecting invalid read request\n");
        return 0;
    }
    if (parsed < 0) {
        return parsed;
    }
    int64_t offset, count;
    if (!cowio_parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (cowio_vector_length(argv + optind + 1, argc - optind - 1, &count) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = cowio_alloc(io, (size_t)count, 0xab);
    if (!buf) {
        return -ENOMEM;
    }
    cowio_aio_begin();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = cowio_do_read(io, (uint64_t)offset, buf, (size_t)count);
    struct timespec t = cowio_elapsed(&t0);
    char *text = NULL;
    size_t text_len = 0;
    FILE *out = async ? open_memstream(&text, &text_len) : stdout;
    if (ret < 0) {
        fprintf(out, "readv failed: %s\n", strerror(-ret));
        goto out;
    }
    if (o.has_pattern && !cowio_pattern_ok(buf, count, o.pattern)) {
        fprintf(out, "Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                offset, count);
        ret = -EINVAL;
    }
    if (!o.quiet) {
        if (o.dump) {
            cowio_dump_buffer(out, buf, offset, count);
        }
        cowio_print_report(out, "read", &t, offset, count, count, 1, o.machine);
    }
out:
    cowio_free(io, buf);
    if (async) {
        fclose(out);
        cowio_defer(io, "%s", text);
        free(text);
        return 0;   /* aio requests succeed once submitted */
    }
    return ret;
}

static int readv_f(struct cowio *io, int argc, char **argv)
{
    return vector_read(io, &readv_cmd, argc, argv, false);
}

static void aio_read_help(void)
{
    printf("\n"
           " asynchronously reads a range of bytes from the given offset\n"
           "\n"
           " Example:\n"
           " 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
           "\n"
           " Reads a segment of the currently open file, optionally dumping it to the\n"
           " standard output stream (with -v option) for subsequent inspection.\n"
           " The read is performed asynchronously and the aio_flush command must be\n"
           " used to ensure all outstanding aio requests have been completed.\n"
           " Note that due to its asynchronous nature, this command will be\n"
           " considered successful once the request is submitted, independently\n"
           " of potential I/O errors or pattern mismatches.\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -P, -- use a pattern to verify read data\n"
           " -i, -- treat request as invalid, for exercising stats\n"
           " -v, -- dump buffer to standard output\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           "\n");
}

static int aio_read_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd aio_read_cmd = {
    .name = "aio_read", .func = aio_read_f, .argmin = 2, .argmax = -1, .no_drain = true,
    .aio = true,
    .args = "[-Ciqv] [-P pattern] off len [len..]",
    .oneline = "asynchronously reads a number of bytes", .help = aio_read_help,
};

static int aio_read_f(struct cowio *io, int argc, char **argv)
{
    return vector_read(io, &aio_read_cmd, argc, argv, true);
}

const struct cowio_cmd *const cowio_read_cmds[] = { &read_cmd, &readv_cmd, &aio_read_cmd, NULL };
