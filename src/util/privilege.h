/* QEMU's -runas USER|UID:GID and -chroot DIR (see privilege.c). prepare
 * checks the options at start-up (the user exists, the directory is one;
 * privilege_drop_free frees what it found, also after a failure);
 * apply chroots, then drops to the user's ids and groups, in every thread
 * of the process. A sandbox must let threads that already run take part
 * (sandbox_allow_credential_change). */
#ifndef UTIL_PRIVILEGE_H
#define UTIL_PRIVILEGE_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "util/error.h"

struct privilege_drop {
    bool drop_user;
    uid_t uid;
    gid_t gid;
    gid_t *groups;                  /* the user's supplementary groups */
    int ngroups;
    char chroot_dir[PATH_MAX];      /* "": none */
};

int privilege_drop_prepare(struct privilege_drop *p, const char *user, const char *chroot_dir, struct error *err);
bool privilege_drop_wanted(const struct privilege_drop *p);
int privilege_drop_apply(const struct privilege_drop *p, struct error *err);
void privilege_drop_free(struct privilege_drop *p);

#endif
