/* Dropping root after start-up, as QEMU's -runas and -chroot: the VMM
 * opens /dev/kvm, its images and sockets as root, then runs the guest as
 * an ordinary user inside a directory. The user is resolved while the
 * password database is still reachable (before the chroot). */
#include "util/privilege.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "UID:GID", QEMU's numeric form; true when s is one. */
static bool parse_ids(const char *s, uid_t *uid, gid_t *gid)
{
    char *end;
    errno = 0;
    unsigned long u = strtoul(s, &end, 10);
    if (errno || end == s || *end != ':' || u >= (uid_t)-1) {
        return false;
    }
    const char *g_str = end + 1;
    unsigned long g = strtoul(g_str, &end, 10);
    if (errno || end == g_str || *end || g >= (gid_t)-1) {
        return false;
    }
    *uid = (uid_t)u;
    *gid = (gid_t)g;
    return true;
}

static int resolve_user(struct privilege_drop *p, const char *user, struct error *err)
{
    struct passwd *pw = getpwnam(user);
    if (pw) {
        p->uid = pw->pw_uid;
        p->gid = pw->pw_gid;
        /* getgrouplist says how many when the array is too small. */
        for (int n = 16;; n = p->ngroups) {
            gid_t *groups = realloc(p->groups, (size_t)n * sizeof(gid_t));
            if (!groups) {
                return error_set(err, -ENOMEM, "out of memory");
            }
            p->groups = groups;
            p->ngroups = n;
            if (getgrouplist(user, p->gid, p->groups, &p->ngroups) >= 0) {
                break;
            }
        }
    } else if (parse_ids(user, &p->uid, &p->gid)) {
        p->groups = malloc(sizeof(gid_t));
        if (!p->groups) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        p->groups[0] = p->gid;
        p->ngroups = 1;
    } else {
        return error_set(err, -ENOENT, "User \"%s\" doesn't exist", user);
    }
    if (p->uid == 0) {
        return error_set(err, -EINVAL, "--runas %s: the user is root, nothing would be dropped", user);
    }
    p->drop_user = true;
    return 0;
}

int privilege_drop_prepare(struct privilege_drop *p, const char *user, const char *chroot_dir, struct error *err)
{
    memset(p, 0, sizeof(*p));
    if (chroot_dir) {
        struct stat st;
        if (stat(chroot_dir, &st) < 0) {
            return error_set_errno(err, -errno, "--chroot '%s'", chroot_dir);
        }
        if (!S_ISDIR(st.st_mode)) {
            return error_set(err, -ENOTDIR, "--chroot '%s': not a directory", chroot_dir);
        }
        if ((size_t)snprintf(p->chroot_dir, sizeof(p->chroot_dir), "%s", chroot_dir) >= sizeof(p->chroot_dir)) {
            return error_set(err, -ENAMETOOLONG, "--chroot: directory name too long");
        }
    }
    return user ? resolve_user(p, user, err) : 0;
}

void privilege_drop_free(struct privilege_drop *p)
{
    free(p->groups);
    p->groups = NULL;
    p->ngroups = 0;
}

bool privilege_drop_wanted(const struct privilege_drop *p)
{
    return p->drop_user || p->chroot_dir[0];
}

/* setgid, setgroups and setuid go through glibc, which changes every
 * thread of the process, not only the caller (the kernel's credentials
 * are per thread). */
static int change_ids(const struct privilege_drop *p, struct error *err)
{
    if (setgid(p->gid) < 0) {
        return error_set_errno(err, -errno, "Failed to setgid(%u)", (unsigned)p->gid);
    }
    if (setgroups((size_t)p->ngroups, p->groups) < 0) {
        return error_set_errno(err, -errno, "Failed to set the supplementary groups of uid %u", (unsigned)p->uid);
    }
    if (setuid(p->uid) < 0) {
        return error_set_errno(err, -errno, "Failed to setuid(%u)", (unsigned)p->uid);
    }
    if (setuid(0) != -1) {
        return error_set(err, -EPERM, "Dropping privileges failed: setuid(0) still succeeds");
    }
    return 0;
}

int privilege_drop_apply(const struct privilege_drop *p, struct error *err)
{
    if (p->chroot_dir[0]) {
        if (chroot(p->chroot_dir) < 0) {
            return error_set_errno(err, -errno, "chroot to '%s' failed", p->chroot_dir);
        }
        if (chdir("/") < 0) {
            return error_set_errno(err, -errno, "not able to chdir to / in '%s'", p->chroot_dir);
        }
    }
    return p->drop_user ? change_ids(p, err) : 0;
}
