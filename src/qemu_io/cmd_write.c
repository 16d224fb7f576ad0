/* write, writev and aio_write. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/qemu_io.h"

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

static int write_parse(int argc, char **argv, struct cowio_io_opts *o)
{
    int ret = cowio_parse_io_opts(argc, argv, &write_cmd, "bcCfnpP:qs:uz", COWIO_OPT_S_FILE, o);
    if (ret != 0) {
        return ret;
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
    } else if (o->zero + o->has_pattern + (o->file != NULL) > 1) {
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
    struct cowio_io_opts o = { .pattern = 0xcd };
    int64_t offset, count;
    int ret = write_parse(argc, argv, &o);
    if (ret < 0) {
        return ret;
    }
    if (!cowio_parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (!cowio_parse_num(argv[optind + 1], &count)) {
        return (int)count;
    }
    if (count > COWIO_MAX_REQUEST && !o.no_fallback) {
        printf("length cannot exceed %" PRIu64 " without -n, given %s\n",
               (uint64_t)COWIO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }
    if ((o.vmstate || o.compressed) && !cowio_sector_aligned(offset, count)) {
        return -EINVAL;
    }
    uint8_t *buf = NULL;
    if (!o.zero) {
        buf = o.file ? buffer_from_file(io, (size_t)count, o.file)
                          : cowio_alloc(io, (size_t)count, o.pattern);
        if (!buf) {
            return -EINVAL;
        }
    }

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (o.vmstate) {
        ret = blockdev_vmstate_write(io->bd, (uint64_t)offset, buf, (size_t)count, NULL);
        if (ret == 0) {
            ret = cowio_after_write(io, false);  /* writethrough flushes it too (blk_save_vmstate) */
        }
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
    struct cowio_io_opts o = { .pattern = 0xcd };
    int parsed = cowio_parse_io_opts(argc, argv, &writev_cmd, "CfqP:", COWIO_OPT_VECTOR, &o);
    if (parsed != 0) {
        return parsed;
    }
    int64_t offset, count;
    if (!cowio_parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    if (cowio_vector_length(argv + optind + 1, argc - optind - 1, &count) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = cowio_alloc(io, (size_t)count, o.pattern);
    if (!buf) {
        return -ENOMEM;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = cowio_do_write(io, (uint64_t)offset, buf, (size_t)count, o.fua);
    struct timespec t = cowio_elapsed(&t0);
    cowio_free(io, buf);
    if (ret < 0) {
        printf("writev failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!o.quiet) {
        cowio_print_report(stdout, "wrote", &t, offset, count, count, 1, o.machine);
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
    .no_drain = true, .aio = true, .args = "[-Cfiquz] [-P pattern] off len [len..]",
    .oneline = "asynchronously writes a number of bytes", .help = aio_write_help,
};

static int aio_write_f(struct cowio *io, int argc, char **argv)
{
    struct cowio_io_opts o = { .pattern = 0xcd };
    int parsed = cowio_parse_io_opts(argc, argv, &aio_write_cmd, "CfiqP:uz", COWIO_OPT_VECTOR, &o);
    if (parsed == 1) {
        printf("injecting invalid write request\n");
        return 0;
    }
    if (parsed < 0) {
        return parsed;
    }
    if (o.zero && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }
    if (o.unmap && !o.zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    int64_t offset, count;
    if (!cowio_parse_num(argv[optind], &offset)) {
        return (int)offset;
    }
    uint8_t *buf = NULL;
    if (o.zero) {
        if (!cowio_parse_num(argv[optind + 1], &count)) {
            return (int)count;
        }
    } else {
        if (cowio_vector_length(argv + optind + 1, argc - optind - 1, &count) < 0) {
            return -EINVAL;
        }
        buf = cowio_alloc(io, (size_t)count, o.pattern);
        if (!buf) {
            return -ENOMEM;
        }
    }
    cowio_aio_begin();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret;
    if (o.zero) {
        ret = blockdev_pwrite_zeroes(io->bd, (uint64_t)offset, (uint64_t)count,
                                     o.unmap ? BDEV_ZERO_MAY_UNMAP : 0, NULL);
        if (ret == 0) {
            ret = cowio_after_write(io, o.fua);
        }
    } else {
        ret = cowio_do_write(io, (uint64_t)offset, buf, (size_t)count, o.fua);
    }
    struct timespec t = cowio_elapsed(&t0);
    cowio_free(io, buf);
    if (ret < 0) {
        cowio_defer(io, "aio_write failed: %s\n", strerror(-ret));
    } else if (!o.quiet) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        cowio_print_report(out, "wrote", &t, offset, count, count, 1, o.machine);
        fclose(out);
        cowio_defer(io, "%s", text);
        free(text);
    }
    return 0;
}

const struct cowio_cmd *const cowio_write_cmds[] = { &write_cmd, &writev_cmd, &aio_write_cmd, NULL };
