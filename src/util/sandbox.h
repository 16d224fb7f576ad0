/* seccomp sandbox per kind of thread (see sandbox.c). On by default; a
 * program's --sandbox off turns it off before any thread enters it. */
#ifndef UTIL_SANDBOX_H
#define UTIL_SANDBOX_H

#include <stdbool.h>

#include "util/error.h"

enum sandbox_kind {
    SANDBOX_VMM_MAIN,       /* cowvisor's main loop (QMP, devices, snapshots) */
    SANDBOX_VCPU,           /* a vCPU thread: KVM_RUN and the exits it serves */
    SANDBOX_IO_WORKER,      /* block I/O workers */
    SANDBOX_NBD,            /* cownbd's server threads */
};

void sandbox_set_enabled(bool on);
bool sandbox_is_enabled(void);
/* Before any thread enters: the allowlists let threads take part in a
 * privilege drop (-runas), which glibc carries out in every thread. */
void sandbox_allow_credential_change(void);
/* Installs the calling thread's filter (threads it creates inherit it). */
int sandbox_enter(enum sandbox_kind kind, struct error *err);

#endif
