/* --config FILE: every command-line option in a file, one per line, as
 * Firecracker's --config-file gives a whole VM in one file. A line is an
 * option's long name without the dashes and its value, if it takes one:
 *
 *     # vm1
 *     kernel /boot/vmlinuz
 *     append console=ttyS0 root=/dev/vda
 *     disk file=/var/lib/cowvisor/vm1.qcow2,format=qcow2
 *     memory 1G
 *     daemonize
 *
 * Options on the command line come after the file's, so they add to it
 * (--disk) or override it (--memory). */
#ifndef COWVISOR_CONFIG_FILE_H
#define COWVISOR_CONFIG_FILE_H

#include "util/error.h"

struct config_argv {
    int argc;
    char **argv;            /* argv[0], the file's options, the command line's */
    char **owned;           /* strings this made (freed by config_argv_free) */
    int nowned;
};

/* Builds the argument vector main parses: argv unchanged when it has no
 * --config. */
int config_argv_build(struct config_argv *out, int argc, char **argv, struct error *err);
void config_argv_free(struct config_argv *c);

#endif
