/* read, readv, write, writev, aio_read, aio_write: qemu-io's data commands. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cowio/cowio.h"

#define SECTOR 512

/* Copy-on-read: whatever the read found below the top layer is written into
 * the top layer, whole clusters at a time, so the next read stays on top. */
static int copy_up(struct cowio *io, uint64_t off, size_t len)
{
    struct blockdev *bd = io->bd;
    uint64_t unit = bd->cluster_size ? bd->cluster_size : SECTOR;
    uint64_t start = off / unit * unit;
    uint64_t end = (off + len + unit - 1) / unit * unit;
    if (end > bd->size) {
        end = bd->size;
    }
    while (start < end) {
        struct block_status st;
        int ret = blockdev_block_status(bd, start, end - start, &st, NULL);
        if (ret < 0) {
            return ret;
        }
        if (st.len == 0) {
            break;
        }
        bool on_top = st.depth == 0 && (st.flags & BDEV_STATUS_ALLOCATED);
        if (!on_top) {
            void *buf = cowio_alloc(io, st.len, 0);
            if (!buf) {
                return -ENOMEM;
            }
            ret = blockdev_pread(bd, start, buf, st.len, NULL);
            if (ret == 0) {
                ret = blockdev_pwrite(bd, start, buf, st.len, NULL);
            }
            cowio_free(io, buf);
            if (ret < 0) {
                return ret;
            }
        }
        start += st.len;
    }
    return 0;
}

int cowio_do_read(struct cowio *io, uint64_t off, void *buf, size_t len)
{
    int ret = blockdev_pread(io->bd, off, buf, len, NULL);
    if (ret == 0 && len && io->open.copy_on_read && io->bd->backing && !io->bd->read_only) {
        ret = copy_up(io, off, len);
    }
    return ret;
}

int cowio_after_write(struct cowio *io, bool fua)
{
    if ((fua || io->open.writethrough) && !io->open.no_flush) {
        return blockdev_flush(io->bd, NULL);
    }
    return 0;
}

/* Through qemu's compress filter every write becomes compressed clusters:
 * partial clusters are completed with what the disk holds (read-modify-write). */
static int write_compressing(struct cowio *io, uint64_t off, const void *buf, size_t len)
{
    struct blockdev *bd = io->bd;
    uint64_t unit = bd->cluster_size;
    if (!unit) {
        return -ENOTSUP;
    }
    if (off > bd->size || len > bd->size - off) {
        return -EIO;
    }
    uint64_t start = off / unit * unit;
    uint64_t end = (off + len + unit - 1) / unit * unit;
    if (end > bd->size) {
        end = bd->size;
    }
    uint8_t *whole = cowio_alloc(io, end - start, 0);
    if (!whole) {
        return -ENOMEM;
    }
    int ret = 0;
    if (start < off || off + len < end) {
        ret = blockdev_pread(bd, start, whole, end - start, NULL);
    }
    memcpy(whole + (off - start), buf, len);
    for (uint64_t pos = start; ret == 0 && pos < end; pos += unit) {
        uint64_t n = end - pos < unit ? end - pos : unit;
        ret = blockdev_pwrite_compressed(bd, pos, whole + (pos - start), n, NULL);
    }
    cowio_free(io, whole);
    return ret;
}

int cowio_do_write(struct cowio *io, uint64_t off, const void *buf, size_t len, bool fua)
{
    int ret = io->open.compress ? write_compressing(io, off, buf, len)
                                : blockdev_pwrite(io->bd, off, buf, len, NULL);
    return ret < 0 ? ret : cowio_after_write(io, fua);
}

static bool sector_aligned(int64_t offset, int64_t count)
{
    if (offset % SECTOR) {
        printf("%" PRId64 " is not a sector-aligned value for 'offset'\n", offset);
        return false;
    }
    if (count % SECTOR) {
        printf("%" PRId64 " is not a sector-aligned value for 'count'\n", count);
        return false;
    }
    return true;
}

/* Parses an offset or length argument, printing qemu-io's complaint. */
static bool parse_num(const char *arg, int64_t *out)
{
    *out = cowio_cvtnum(arg);
    if (*out < 0) {
        cowio_print_cvtnum_err(*out, arg);
        return false;
    }
    return true;
}

static bool pattern_ok(const uint8_t *buf, int64_t len, int pattern)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != pattern) {
            return false;
        }
    }
    return true;
}

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

struct read_opts {
    bool machine, quiet, dump, vmstate;
    bool check, has_start, has_len;
    int pattern;
    int64_t pat_start, pat_len;
};

static int read_parse(int argc, char **argv, struct read_opts *o)
{
    int c;
    while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
        switch (c) {
        case 'b': o->vmstate = true; break;
        case 'C': o->machine = true; break;
        case 'p': break;    /* accepted for compatibility */
        case 'q': o->quiet = true; break;
        case 'v': o->dump = true; break;
        case 'l':
            o->has_len = true;
            if (!parse_num(optarg, &o->pat_len)) {
                return (int)o->pat_len;
            }
            break;
        case 's':
            o->has_start = true;
            if (!parse_num(optarg, &o->pat_start)) {
                return (int)o->pat_start;
            }
            break;
        case 'P':
            o->check = true;
            o->pattern = cowio_parse_pattern(optarg);
            if (o->pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&read_cmd);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        cowio_usage_of(&read_cmd);
        return -EINVAL;
    }
    return 0;
}

static int read_f(struct cowio *io, int argc, char **argv)
{
    struct read_opts o = { 0 };
    int64_t offset, count;
    int ret = read_parse(argc, argv, &o);
    if (ret < 0) {
        return ret;
    }
    if (!parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (!parse_num(argv[optind + 1], &count)) {
        return (int)count;
    }
    if (count > COWIO_MAX_REQUEST) {
        printf("length cannot exceed %" PRIu64 ", given %s\n", (uint64_t)COWIO_MAX_REQUEST,
               argv[optind + 1]);
        return -EINVAL;
    }
    if (!o.check && (o.has_len || o.has_start)) {
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
    if (o.vmstate && !sector_aligned(offset, count)) {
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
    if (o.check && !pattern_ok(buf + o.pat_start, o.pat_len, o.pattern)) {
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

/* ---- vectors: readv, writev, aio_read, aio_write ---- */

/* Sums the length arguments of a vectored request (the vector itself does
 * not matter to a blockdev: one contiguous buffer holds all the parts). */
static int vector_length(char **args, int n, int64_t *total)
{
    *total = 0;
    for (int i = 0; i < n; i++) {
        int64_t len;
        if (!parse_num(args[i], &len)) {
            return -EINVAL;
        }
        if (len > COWIO_MAX_REQUEST) {
            printf("Argument '%s' exceeds maximum size %" PRIu64 "\n", args[i],
                   (uint64_t)COWIO_MAX_REQUEST);
            return -EINVAL;
        }
        if (*total > COWIO_MAX_REQUEST - len) {
            printf("The total number of bytes exceed the maximum size %" PRIu64 "\n",
                   (uint64_t)COWIO_MAX_REQUEST);
            return -EINVAL;
        }
        *total += len;
    }
    return 0;
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

/* The read commands after their options: runs the read and reports it, now
 * (readv) or when the event loop next runs (aio_read). */
static int vector_read(struct cowio *io, const struct cowio_cmd *cmd, int argc, char **argv,
                       bool machine, bool quiet, bool dump, bool check, int pattern, bool async)
{
    if (optind > argc - 2) {
        cowio_usage_of(cmd);
        return -EINVAL;
    }
    int64_t offset, count;
    if (!parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (vector_length(argv + optind + 1, argc - optind - 1, &count) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = cowio_alloc(io, (size_t)count, 0xab);
    if (!buf) {
        return -ENOMEM;
    }
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
    if (check && !pattern_ok(buf, count, pattern)) {
        fprintf(out, "Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                offset, count);
        ret = -EINVAL;
    }
    if (!quiet) {
        if (dump) {
            cowio_dump_buffer(out, buf, offset, count);
        }
        cowio_print_report(out, "read", &t, offset, count, count, 1, machine);
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
    bool machine = false, quiet = false, dump = false, check = false;
    int pattern = 0, c;
    while ((c = getopt(argc, argv, "CP:qv")) != -1) {
        switch (c) {
        case 'C': machine = true; break;
        case 'q': quiet = true; break;
        case 'v': dump = true; break;
        case 'P':
            check = true;
            pattern = cowio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&readv_cmd);
            return -EINVAL;
        }
    }
    return vector_read(io, &readv_cmd, argc, argv, machine, quiet, dump, check, pattern, false);
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
    .args = "[-Ciqv] [-P pattern] off len [len..]",
    .oneline = "asynchronously reads a number of bytes", .help = aio_read_help,
};

static int aio_read_f(struct cowio *io, int argc, char **argv)
{
    bool machine = false, quiet = false, dump = false, check = false;
    int pattern = 0, c;
    while ((c = getopt(argc, argv, "CP:iqv")) != -1) {
        switch (c) {
        case 'C': machine = true; break;
        case 'q': quiet = true; break;
        case 'v': dump = true; break;
        case 'i':
            printf("injecting invalid read request\n");
            return 0;
        case 'P':
            check = true;
            pattern = cowio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&aio_read_cmd);
            return -EINVAL;
        }
    }
    return vector_read(io, &aio_read_cmd, argc, argv, machine, quiet, dump, check, pattern, true);
}

/* ---- write ---- */

static void write_help(void)
{
    printf("\n"
           " writes a range of bytes from the given offset\n"
           "\n"
           " Example:\n"
           " 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file\n"
           "\n"
           " Writes into a segment of the currently open file, using a buffer\n"
           " filled with a set pattern (0xcdcdcdcd).\n"
           " -b, -- write to the VM state rather than the virtual disk\n"
           " -c, -- write compressed data with blk_write_compressed\n"
           " -f, -- use Force Unit Access semantics\n"
           " -n, -- with -z, don't allow slow fallback\n"
           " -p, -- ignored for backwards compatibility\n"
           " -P, -- use different pattern to fill file\n"
           " -s, -- use a pattern file to fill the write buffer\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           " -u, -- with -z, allow unmapping\n"
           " -z, -- write zeroes using blk_co_pwrite_zeroes\n"
           "\n");
}

static int write_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd write_cmd = {
    .name = "write", .altname = "w", .func = write_f, .argmin = 2, .argmax = -1,
    .wants_write = true,
    .args = "[-bcCfnquz] [-P pattern | -s source_file] off len",
    .oneline = "writes a number of bytes at a specified offset", .help = write_help,
};

struct write_opts {
    bool vmstate, compressed, machine, fua, no_fallback, quiet, unmap, zero;
    bool has_pattern, from_file;
    int pattern;
    const char *file;
};

static int write_parse(int argc, char **argv, struct write_opts *o)
{
    int c;
    while ((c = getopt(argc, argv, "bcCfnpP:qs:uz")) != -1) {
        switch (c) {
        case 'b': o->vmstate = true; break;
        case 'c': o->compressed = true; break;
        case 'C': o->machine = true; break;
        case 'f': o->fua = true; break;
        case 'n': o->no_fallback = true; break;
        case 'p': break;
        case 'q': o->quiet = true; break;
        case 'u': o->unmap = true; break;
        case 'z': o->zero = true; break;
        case 's':
            o->from_file = true;
            o->file = optarg;
            break;
        case 'P':
            o->has_pattern = true;
            o->pattern = cowio_parse_pattern(optarg);
            if (o->pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&write_cmd);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        cowio_usage_of(&write_cmd);
        return -EINVAL;
    }
    const char *conflict = NULL;
    if (o->vmstate && o->zero) {
        conflict = "-b and -z cannot be specified at the same time";
    } else if (o->fua && (o->vmstate || o->compressed)) {
        conflict = "-f and -b or -c cannot be specified at the same time";
    } else if (o->no_fallback && !o->zero) {
        conflict = "-n requires -z to be specified";
    } else if (o->unmap && !o->zero) {
        conflict = "-u requires -z to be specified";
    } else if (o->zero + o->has_pattern + o->from_file > 1) {
        conflict = "Only one of -z, -P, and -s can be specified at the same time";
    }
    if (conflict) {
        printf("%s\n", conflict);
        return -EINVAL;
    }
    return 0;
}

/* A buffer filled with the file's bytes, repeated as often as needed. */
static uint8_t *buffer_from_file(struct cowio *io, size_t len, const char *name)
{
    FILE *f = fopen(name, "r");
    if (!f) {
        perror(name);
        return NULL;
    }
    uint8_t *buf = cowio_alloc(io, len, 0);
    size_t got = buf ? fread(buf, 1, len, f) : 0;
    if (ferror(f)) {
        perror(name);
        goto fail;
    }
    if (got == 0) {
        fprintf(stderr, "%s: file is empty\n", name);
        goto fail;
    }
    fclose(f);
    for (size_t i = got; i < len; i++) {
        buf[i] = buf[i % got];
    }
    return buf;
fail:
    fclose(f);
    cowio_free(io, buf);
    return NULL;
}

static int write_f(struct cowio *io, int argc, char **argv)
{
    struct write_opts o = { .pattern = 0xcd };
    int64_t offset, count;
    int ret = write_parse(argc, argv, &o);
    if (ret < 0) {
        return ret;
    }
    if (!parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (!parse_num(argv[optind + 1], &count)) {
        return (int)count;
    }
    if (count > COWIO_MAX_REQUEST && !o.no_fallback) {
        printf("length cannot exceed %" PRIu64 " without -n, given %s\n",
               (uint64_t)COWIO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }
    if ((o.vmstate || o.compressed) && !sector_aligned(offset, count)) {
        return -EINVAL;
    }
    uint8_t *buf = NULL;
    if (!o.zero) {
        buf = o.from_file ? buffer_from_file(io, (size_t)count, o.file)
                          : cowio_alloc(io, (size_t)count, o.pattern);
        if (!buf) {
            return -EINVAL;
        }
    }

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (o.vmstate) {
        ret = blockdev_vmstate_write(io->bd, (uint64_t)offset, buf, (size_t)count, NULL);
    } else if (o.zero) {
        ret = blockdev_pwrite_zeroes(io->bd, (uint64_t)offset, (uint64_t)count,
                                     o.unmap ? BDEV_ZERO_MAY_UNMAP : 0, NULL);
        if (ret == 0) {
            ret = cowio_after_write(io, o.fua);
        }
    } else if (o.compressed) {
        ret = blockdev_pwrite_compressed(io->bd, (uint64_t)offset, buf, (size_t)count, NULL);
        if (ret == 0) {
            ret = cowio_after_write(io, false);
        }
    } else {
        ret = cowio_do_write(io, (uint64_t)offset, buf, (size_t)count, o.fua);
    }
    struct timespec t = cowio_elapsed(&t0);
    cowio_free(io, buf);
    if (ret < 0) {
        printf("write failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!o.quiet) {
        cowio_print_report(stdout, "wrote", &t, offset, count, count, 1, o.machine);
    }
    return 0;
}

/* ---- writev, aio_write ---- */

static void writev_help(void)
{
    printf("\n"
           " writes a range of bytes from the given offset source from multiple buffers\n"
           "\n"
           " Example:\n"
           " 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
           "\n"
           " Writes into a segment of the currently open file, using a buffer\n"
           " filled with a set pattern (0xcdcdcdcd).\n"
           " -P, -- use different pattern to fill file\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -f, -- use Force Unit Access semantics\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           "\n");
}

static int writev_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd writev_cmd = {
    .name = "writev", .func = writev_f, .argmin = 2, .argmax = -1, .wants_write = true,
    .args = "[-Cfq] [-P pattern] off len [len..]",
    .oneline = "writes a number of bytes at a specified offset", .help = writev_help,
};

static int writev_f(struct cowio *io, int argc, char **argv)
{
    bool machine = false, quiet = false, fua = false;
    int pattern = 0xcd, c;
    while ((c = getopt(argc, argv, "CfqP:")) != -1) {
        switch (c) {
        case 'C': machine = true; break;
        case 'f': fua = true; break;
        case 'q': quiet = true; break;
        case 'P':
            pattern = cowio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&writev_cmd);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        cowio_usage_of(&writev_cmd);
        return -EINVAL;
    }
    int64_t offset, count;
    if (!parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (vector_length(argv + optind + 1, argc - optind - 1, &count) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = cowio_alloc(io, (size_t)count, pattern);
    if (!buf) {
        return -ENOMEM;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = cowio_do_write(io, (uint64_t)offset, buf, (size_t)count, fua);
    struct timespec t = cowio_elapsed(&t0);
    cowio_free(io, buf);
    if (ret < 0) {
        printf("writev failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!quiet) {
        cowio_print_report(stdout, "wrote", &t, offset, count, count, 1, machine);
    }
    return 0;
}

static void aio_write_help(void)
{
    printf("\n"
           " asynchronously writes a range of bytes from the given offset source\n"
           " from multiple buffers\n"
           "\n"
           " Example:\n"
           " 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
           "\n"
           " Writes into a segment of the currently open file, using a buffer\n"
           " filled with a set pattern (0xcdcdcdcd).\n"
           " The write is performed asynchronously and the aio_flush command must be\n"
           " used to ensure all outstanding aio requests have been completed.\n"
           " Note that due to its asynchronous nature, this command will be\n"
           " considered successful once the request is submitted, independently\n"
           " of potential I/O errors or pattern mismatches.\n"
           " -P, -- use different pattern to fill file\n"
           " -C, -- report statistics in a machine parsable format\n"
           " -f, -- use Force Unit Access semantics\n"
           " -i, -- treat request as invalid, for exercising stats\n"
           " -q, -- quiet mode, do not show I/O statistics\n"
           " -u, -- with -z, allow unmapping\n"
           " -z, -- write zeroes using blk_aio_pwrite_zeroes\n"
           "\n");
}

static int aio_write_f(struct cowio *io, int argc, char **argv);
static const struct cowio_cmd aio_write_cmd = {
    .name = "aio_write", .func = aio_write_f, .argmin = 2, .argmax = -1, .wants_write = true,
    .no_drain = true, .args = "[-Cfiquz] [-P pattern] off len [len..]",
    .oneline = "asynchronously writes a number of bytes", .help = aio_write_help,
};

static int aio_write_f(struct cowio *io, int argc, char **argv)
{
    bool machine = false, quiet = false, fua = false, unmap = false, zero = false;
    int pattern = 0xcd, c;
    while ((c = getopt(argc, argv, "CfiqP:uz")) != -1) {
        switch (c) {
        case 'C': machine = true; break;
        case 'f': fua = true; break;
        case 'q': quiet = true; break;
        case 'u': unmap = true; break;
        case 'z': zero = true; break;
        case 'i':
            printf("injecting invalid write request\n");
            return 0;
        case 'P':
            pattern = cowio_parse_pattern(optarg);
            if (pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            cowio_usage_of(&aio_write_cmd);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        cowio_usage_of(&aio_write_cmd);
        return -EINVAL;
    }
    if (zero && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }
    if (unmap && !zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    int64_t offset, count;
    if (!parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    uint8_t *buf = NULL;
    if (zero) {
        if (!parse_num(argv[optind + 1], &count)) {
            return (int)count;
        }
    } else {
        if (vector_length(argv + optind + 1, argc - optind - 1, &count) < 0) {
            return -EINVAL;
        }
        buf = cowio_alloc(io, (size_t)count, pattern);
        if (!buf) {
            return -ENOMEM;
        }
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret;
    if (zero) {
        ret = blockdev_pwrite_zeroes(io->bd, (uint64_t)offset, (uint64_t)count,
                                     unmap ? BDEV_ZERO_MAY_UNMAP : 0, NULL);
        if (ret == 0) {
            ret = cowio_after_write(io, fua);
        }
    } else {
        ret = cowio_do_write(io, (uint64_t)offset, buf, (size_t)count, fua);
    }
    struct timespec t = cowio_elapsed(&t0);
    cowio_free(io, buf);
    if (ret < 0) {
        cowio_defer(io, "aio_write failed: %s\n", strerror(-ret));
    } else if (!quiet) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        cowio_print_report(out, "wrote", &t, offset, count, count, 1, machine);
        fclose(out);
        cowio_defer(io, "%s", text);
        free(text);
    }
    return 0;
}

const struct cowio_cmd *const cowio_rw_cmds[] = {
    &read_cmd, &readv_cmd, &write_cmd, &writev_cmd, &aio_read_cmd, &aio_write_cmd, NULL
};
