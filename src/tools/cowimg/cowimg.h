/* cowimg: a qemu-img compatible image tool. Each subcommand lives in its own
 * file; this header holds what they share (argument parsing helpers and the
 * error reporting style of qemu-img). */
#ifndef TOOLS_COWIMG_H
#define TOOLS_COWIMG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "block/blockdev.h"
#include "util/error.h"
#include "util/options.h"

/* Exit codes every subcommand shares. */
enum { EXIT_OK = 0, EXIT_ERR = 1 };

/* Long-only option ids, above any short option character. */
enum {
    OPT_OUTPUT = 256, OPT_BACKING_CHAIN, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_SHRINK,
    OPT_PREALLOCATION, OPT_PATTERN, OPT_FLUSH_INTERVAL, OPT_NO_DRAIN, OPT_START_OFFSET,
    OPT_MAX_LENGTH, OPT_SIZE, OPT_TARGET_IS_ZERO, OPT_SALVAGE, OPT_FORCE, OPT_BITMAPS,
    OPT_TARGET_IMAGE_OPTS, OPT_SKIP_BROKEN,
};

enum output_format { OUTPUT_HUMAN, OUTPUT_JSON };

extern const char *progname;

/* "cowimg: message" on stderr, as qemu's error_report. */
void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* report() plus the "Try ... --help" hint, then exit 1 (command line errors). */
_Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* getopt's ':' and '?' results, reported the way qemu-img does. */
_Noreturn void bad_option(int c, char **argv);
/* The options every command shares: -h, and the QEMU ones we do not support
 * (--image-opts); anything else is a usage error. */
int common_option(int c, char **argv);
/* --object: adds the object (block/object_secret.h) or reports and exits 1;
 * "help" lists the types and exits 0. */
void object_option(const char *spec);
/* The full --help text; exits 0. */
_Noreturn void print_help(void);
/* printf unless quiet. */
void qprintf(bool quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a size argument; reports "Invalid <what> specified..." on failure. */
int parse_size_arg(const char *what, const char *value, int64_t min, int64_t max, int64_t *out);
/* --output=human|json; reports and returns -1 on anything else. */
int parse_output_format(const char *s, enum output_format *out);
/* Parses -t/-T cache modes; *no_cache says whether to open with O_DIRECT.
 * -1 for an unknown mode. */
int parse_cache_mode(const char *mode, bool *no_cache);

/* Opens an image like qemu-img's img_open, reporting "Could not open..." */
/* --image-opts: image names are option strings (driver=...,file.filename=...). */
extern bool image_opts;
struct blockdev *image_open(const char *filename, const char *fmt, unsigned flags);
/* Same for a file that must exist but whose format is checked by the caller. */
bool format_known(const char *fmt);

/* Whether a buffer is all zeros. */

/* Image creation shared by create and convert. size 0 with a backing file
 * means: take the backing file's size. Prints the "Formatting ..." line
 * unless quiet. Returns 0 or -1 after reporting. */
struct create_request {
    const char *filename;
    const char *format;
    uint64_t size;
    bool size_given;
    bool size_wins;             /* convert: size beats -o size (qemu-img's), else both refused */
    const char *backing_file;
    const char *backing_format;
    struct options *opts;       /* -o options; may be NULL */
    bool unsafe;                /* -u: do not open the backing file */
    bool quiet;
    const char *error_context;  /* prefix of error messages; NULL: the filename */
    char detected_format[16];   /* filled for the missing backing format hint */
    bool options_invalid;       /* set when -o itself was rejected */
};
int image_create(struct create_request *req);
/* -o help for a format; filename is the image named on the command line, if any. */
int print_create_options_help(const char *format, const char *filename);
int print_amend_options_help(const char *format);
/* One -o argument of create, convert, amend or measure, added to o; reports
 * qemu-img's "Invalid option list" and returns -1 when it is not one. */
int add_option_list(struct options *o, const char *list);

int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_dd(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_amend(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);

/* convert --bitmaps (convert_bitmaps.c): -1 after reporting. */
int convert_check_bitmaps(struct blockdev *src, bool skip_broken);
int convert_copy_bitmaps(struct blockdev *src, struct blockdev *dst, bool skip_broken);

struct blockdev_snapshot_info;
/* "Snapshot list:" and the table, as qemu-img snapshot -l and info print it. */
void print_snapshot_table(const struct blockdev_snapshot_info *list, int count);

#endif
