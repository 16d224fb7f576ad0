/* Image locking in QEMU's layout, so that cowvisor's programs and QEMU's
 * exclude each other: an open file description holds a shared OFD lock on
 * byte 100 + i while it uses permission i, and on byte 200 + i while it does
 * not let others have permission i. A new user tests the opposite bytes.
 *
 * OFD locks of one open file description never conflict with each other, but
 * two descriptions in the same process do. So each process keeps one lock
 * descriptor per inode, holding the union of what its users need, and checks
 * its own users itself: a second open of an image this process uses conflicts
 * as it would in another process (convert onto its own source), unless the
 * caller says it reopens the image (commit writes the base its chain reads:
 * QEMU reopens one node there). */
#include "block/hostfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200
#define PERM_COUNT       4

static const char *const perm_names[PERM_COUNT] = {
    "consistent read", "write", "write unchanged", "resize",
};

struct hostfile_lock_user {
    struct hostfile_lock_user *next;
    const struct hostfile *file;
    unsigned perm;
    unsigned unshared;
};

struct hostfile_lock_inode {
    struct hostfile_lock_inode *next;
    dev_t dev;
    ino_t ino;
    int fd;
    unsigned locked_perm;       /* bytes 100 + i this process holds */
    unsigned locked_unshared;   /* bytes 200 + i */
    struct hostfile_lock_user *users;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hostfile_lock_inode *registry;

static int set_byte_lock(int fd, int type, unsigned byte)
{
    struct flock fl = { .l_type = (short)type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Whether another open file description holds a lock on the byte. */
static int byte_taken_elsewhere(int fd, unsigned byte)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

/* Makes the bytes held match want, for one base; fails only when a byte is
 * write-locked by someone (QEMU never does that, but a hostile process may). */
static int apply_bytes(int fd, unsigned base, unsigned *held, unsigned want)
{
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        if ((want & bit) && !(*held & bit)) {
            int ret = set_byte_lock(fd, F_RDLCK, base + i);
            if (ret < 0) {
                return ret;
            }
            *held |= bit;
        } else if (!(want & bit) && (*held & bit)) {
            set_byte_lock(fd, F_UNLCK, base + i);
            *held &= ~bit;
        }
    }
    return 0;
}

static void union_of_users(const struct hostfile_lock_inode *n, unsigned *perm, unsigned *unshared)
{
    *perm = *unshared = 0;
    for (const struct hostfile_lock_user *u = n->users; u; u = u->next) {
        *perm |= u->perm;
        *unshared |= u->unshared;
    }
}

static int sync_locks(struct hostfile_lock_inode *n, unsigned extra_perm, unsigned extra_unshared)
{
    unsigned perm, unshared;
    union_of_users(n, &perm, &unshared);
    int ret = apply_bytes(n->fd, LOCK_PERM_BASE, &n->locked_perm, perm | extra_perm);
    if (ret == 0) {
        ret = apply_bytes(n->fd, LOCK_SHARED_BASE, &n->locked_unshared, unshared | extra_unshared);
    }
    return ret;
}

/* QEMU's words, so scripts that match them keep working. */
static int check_conflicts(int fd, unsigned perm, unsigned unshared, const char *filename,
                           struct error *err)
{
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        int taken = 0;
        const char *shared_word = "";
        if (perm & bit) {
            taken = byte_taken_elsewhere(fd, LOCK_SHARED_BASE + i);
        }
        if (taken == 0 && (unshared & bit)) {
            taken = byte_taken_elsewhere(fd, LOCK_PERM_BASE + i);
            shared_word = "shared ";
        }
        if (taken < 0) {
            return error_set_errno(err, taken, "Failed to check the locks of '%s'", filename);
        }
        if (taken) {
            return error_set(err, -EAGAIN, "Failed to get %s\"%s\" lock\n"
                             "Is another process using the image [%s]?", shared_word,
                             perm_names[i], filename);
        }
    }
    return 0;
}

/* The users of this process, as another process would see them. */
static int check_own_users(const struct hostfile_lock_inode *n, unsigned perm, unsigned unshared,
                           const char *filename, struct error *err)
{
    unsigned own_perm, own_unshared;
    union_of_users(n, &own_perm, &own_unshared);
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        if ((perm & own_unshared & bit) || (unshared & own_perm & bit)) {
            return error_set(err, -EAGAIN, "Failed to get %s\"%s\" lock\n"
                             "Is another process using the image [%s]?",
                             (perm & own_unshared & bit) ? "" : "shared ", perm_names[i], filename);
        }
    }
    return 0;
}

static struct hostfile_lock_inode *find_inode(const struct hostfile *f)
{
    for (struct hostfile_lock_inode *n = registry; n; n = n->next) {
        if (n->dev == f->dev && n->ino == f->ino) {
            return n;
        }
    }
    return NULL;
}

static int new_inode(struct hostfile *f, struct hostfile_lock_inode **out, struct error *err)
{
    /* A description of our own that no user closes: reopened through /proc,
     * so it is the same inode even if the name was replaced meanwhile. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", f->fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        /* No /proc (a chroot): by name, if it is still the same file. */
        fd = open(f->filename, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino)) {
            close(fd);
            fd = -1;
            errno = ESTALE;
        }
    }
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not open '%s' for locking", f->filename);
    }
    struct hostfile_lock_inode *n = calloc(1, sizeof(*n));
    n->dev = f->dev;
    n->ino = f->ino;
    n->fd = fd;
    n->next = registry;
    registry = n;
    *out = n;
    return 0;
}

static void free_inode_if_unused(struct hostfile_lock_inode *n)
{
    if (n->users) {
        return;
    }
    for (struct hostfile_lock_inode **p = &registry; *p; p = &(*p)->next) {
        if (*p == n) {
            *p = n->next;
            break;
        }
    }
    close(n->fd);      /* drops every lock of the description */
    free(n);
}

static bool lock_unsupported(int ret)
{
    return ret == -EINVAL || ret == -ENOLCK || ret == -EOPNOTSUPP || ret == -ENOSYS;
}

int hostfile_lock(struct hostfile *f, unsigned perm, unsigned shared, bool share_own,
                  struct error *err)
{
    if (f->proto) {
        return 0;   /* image locks belong to the file protocol */
    }
    unsigned unshared = ~shared & HOSTFILE_PERM_ALL;
    pthread_mutex_lock(&registry_lock);
    struct hostfile_lock_inode *n = find_inode(f);
    int ret = n && !share_own ? check_own_users(n, perm, unshared, f->filename, err) : 0;
    if (ret < 0) {
        pthread_mutex_unlock(&registry_lock);
        return ret;
    }
    ret = n ? 0 : new_inode(f, &n, err);
    if (ret < 0) {
        pthread_mutex_unlock(&registry_lock);
        return ret;
    }
    /* Take first, then test: two processes racing both see each other. */
    ret = sync_locks(n, perm, unshared);
    if (lock_unsupported(ret)) {
        /* A file system without locks: go on unlocked, as QEMU's locking=auto. */
        sync_locks(n, 0, 0);
        free_inode_if_unused(n);
        pthread_mutex_unlock(&registry_lock);
        return 0;
    }
    if (ret < 0) {
        ret = error_set(err, -EAGAIN, "Failed to lock '%s'\nIs another process using the "
                        "image [%s]?", f->filename, f->filename);
    } else {
        ret = check_conflicts(n->fd, perm, unshared, f->filename, err);
    }
    if (ret < 0) {
        sync_locks(n, 0, 0);
        free_inode_if_unused(n);
    } else {
        struct hostfile_lock_user *u = calloc(1, sizeof(*u));
        *u = (struct hostfile_lock_user){ n->users, f, perm, unshared };
        n->users = u;
        f->locked = true;
    }
    pthread_mutex_unlock(&registry_lock);
    return ret;
}

void hostfile_unlock(struct hostfile *f)
{
    if (!f->locked) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    struct hostfile_lock_inode *n = find_inode(f);
    for (struct hostfile_lock_user **p = n ? &n->users : NULL; p && *p; p = &(*p)->next) {
        if ((*p)->file == f) {
            struct hostfile_lock_user *u = *p;
            *p = u->next;
            free(u);
            break;
        }
    }
    if (n) {
        sync_locks(n, 0, 0);
        free_inode_if_unused(n);
    }
    f->locked = false;
    pthread_mutex_unlock(&registry_lock);
}
