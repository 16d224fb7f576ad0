/* cowimg: dispatch of qemu-img style subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowimg.h"
#include "util/warning.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *syntax;
};

static const struct command commands[] = {
    { "amend", cmd_amend, "amend [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename" },
    { "bitmap", cmd_bitmap, "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | "
      "--disable)... [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] "
      "[--image-opts | -f fmt] filename bitmap" },
    { "bench", cmd_bench, "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] "
      "[-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
      "[-t cache] [-w] [-U] filename" },
    { "check", cmd_check, "check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] "
      "[-T src_cache] [-U] filename" },
    { "commit", cmd_commit, "commit [-q] [-f fmt] [-t cache] [-b base] [-d] [-p] filename" },
    { "compare", cmd_compare, "compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] "
      "filename1 filename2" },
    { "convert", cmd_convert, "convert [-U] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] "
      "[-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] "
      "[-S sparse_size] [-m num_coroutines] [-W] filename [filename2 [...]] output_filename" },
    { "create", cmd_create, "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] "
      "[-o options] filename [size]" },
    { "dd", cmd_dd, "dd [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
      "[skip=blocks] if=input of=output" },
    { "info", cmd_info, "info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename" },
    { "map", cmd_map, "map [-f fmt] [--start-offset=offset] [--max-length=len] "
      "[--output=ofmt] [-U] filename" },
    { "measure", cmd_measure, "measure [--output=ofmt] [-O output_fmt] [-o options] "
      "[--size N | [-f fmt] filename]" },
    { "snapshot", cmd_snapshot, "snapshot [-U] [-q] [-l | -a snapshot | -c snapshot | "
      "-d snapshot] filename" },
    { "rebase", cmd_rebase, "rebase [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] "
      "-b backing_file [-F backing_fmt] filename" },
    { "resize", cmd_resize, "resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
      "filename [+ | -]size" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char help_params[] =
"Command parameters:\n"
"  'filename' is a disk image filename\n"
"  'fmt' is the disk image format. It is guessed automatically in most cases\n"
"  'cache' is the cache mode used to write the output disk image, the valid\n"
"    options are: 'none', 'writeback' (default, except for convert), 'writethrough',\n"
"    'directsync' and 'unsafe' (default for convert)\n"
"  'src_cache' is the cache mode used to read input disk images, the valid\n"
"    options are the same as for the 'cache' option\n"
"  'size' is the disk image size in bytes. Optional suffixes\n"
"    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),\n"
"    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)  are\n"
"    supported. 'b' is ignored.\n"
"  'output_filename' is the destination disk image filename\n"
"  'output_fmt' is the destination format\n"
"  'options' is a comma separated list of format specific options in a\n"
"    name=value format. Use -o help for an overview of the options supported by\n"
"    the used format\n"
"  '-c' indicates that target image must be compressed (qcow format only)\n"
"  '-u' allows unsafe backing chains. For rebasing, it is assumed that old and\n"
"       new backing file match exactly. The image doesn't need a working\n"
"       backing file before rebasing in this case (useful for renaming the\n"
"       backing file). For image creation, allow creating without attempting\n"
"       to open the backing file.\n"
"  '-h' with or without a command shows this help and lists the supported formats\n"
"  '-p' show progress of command (only certain commands)\n"
"  '-q' use Quiet mode - do not print any output (except errors)\n"
"  '-S' indicates the consecutive number of bytes (defaults to 4k) that must\n"
"       contain only zeros for the tool to create a sparse image during\n"
"       conversion. If the number of bytes is 0, the source will not be scanned for\n"
"       unallocated or zero sectors, and the destination image will always be\n"
"       fully allocated\n"
"  '--output' takes the format in which the output must be done (human or json)\n"
"  '-n' skips the target volume creation (useful if the volume is created\n"
"       prior to running the tool)\n"
"\n"
"Parameters to check subcommand:\n"
"  '-r' tries to repair any inconsistencies that are found during the check.\n"
"       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all\n"
"       kinds of errors, with a higher risk of choosing the wrong fix or\n"
"       hiding corruption that has already occurred.\n"
"\n"
"Parameters to convert subcommand:\n"
"  '-m' specifies how many workers run in parallel during the convert\n"
"       process (defaults to 8)\n"
"  '-W' allow to write to the target out of order rather than sequential\n"
"\n"
"Parameters to snapshot subcommand:\n"
"  'snapshot' is the name of the snapshot to create, apply or delete\n"
"  '-a' applies a snapshot (revert disk to saved state)\n"
"  '-c' creates a snapshot\n"
"  '-d' deletes a snapshot\n"
"  '-l' lists all snapshots in the given image\n"
"\n"
"Parameters to compare subcommand:\n"
"  '-f' first image format\n"
"  '-F' second image format\n"
"  '-s' run in Strict mode - fail on different image size or sector allocation\n"
"\n"
"Parameters to dd subcommand:\n"
"  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)\n"
"  'count=N' copy only N input blocks\n"
"  'if=FILE' read from FILE\n"
"  'of=FILE' write to FILE\n"
"  'skip=N' skip N bs-sized blocks at the start of input\n";

_Noreturn void print_help(void)
{
    printf("%s version 7.2.0 (cowvisor " "0.1.0" ")\n", progname);
    printf("usage: %s [standard options] command [command options]\n"
           "Disk image utility (qemu-img compatible)\n\n"
           "    '-h', '--help'       display this help and exit\n"
           "    '-V', '--version'    output version information and exit\n\n"
           "Command syntax:\n", progname);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        printf("  %s\n", commands[i].syntax);
    }
    printf("\n%s\nSupported formats: qcow2 raw\n", help_params);
    exit(EXIT_OK);
}

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    progname = slash ? slash + 1 : argv[0];
    warning_set_sink(warning_sink_stderr, NULL);   /* in qemu-img's words, on stderr */

    if (argc < 2) {
        usage_error("Not enough arguments");
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        print_help();
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("%s version 7.2.0 (cowvisor 0.1.0)\n", progname);
        return EXIT_OK;
    }
    if (cmd[0] == '-') {
        usage_error("unrecognized option '%s'", cmd);
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(cmd, commands[i].name) == 0) {
            /* Subcommands parse argv[1..] with getopt: argv[0] is the command. */
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    usage_error("Command not found: %s", cmd);
}
