/* Running cowvisor as a service, as QEMU's -daemonize, -pidfile and -name
 * do: the parent of a daemon waits until the VMM is ready (or failed, and
 * then prints why) before it exits, so `cowvisor --daemonize` returning 0
 * means the VM and its monitor are up. */
#ifndef COWVISOR_SERVICE_H
#define COWVISOR_SERVICE_H

#include <limits.h>
#include <stdbool.h>

#include "util/error.h"

struct service {
    int ready_fd;           /* daemon: the pipe to the waiting parent, or -1 */
    int pidfile_fd;         /* locked while we run, or -1 */
    char pidfile[PATH_MAX];
};

void service_init(struct service *sv);
/* Forks. In the parent returns 1 with *status the daemon's outcome (0: it
 * is ready); in the daemon returns 0 (a new session, stdio kept until
 * service_ready); <0 when the fork failed. */
int service_daemonize(struct service *sv, int *status, struct error *err);
/* The daemon is ready: the parent exits 0; stdio goes to /dev/null
 * (stderr stays if it is a log file). */
void service_ready(struct service *sv, bool keep_stderr);
/* The daemon failed before it was ready: the parent prints msg and exits
 * with status. */
void service_failed(struct service *sv, int status, const char *msg);
/* Creates and locks the pid file, writes our pid; refuses a file another
 * running process holds. */
int service_pidfile(struct service *sv, const char *path, struct error *err);
/* Removes the pid file (at exit). */
void service_end(struct service *sv);
/* --log FILE (appended; stderr goes there) or syslog. */
int service_log(const char *target, struct error *err);
/* The process's (and so its threads') name in ps and top. */
void service_set_name(const char *name);

#endif
