/* The node names of the machine's disks, as QEMU names a -drive's nodes. */
#include "machine/disk_node_names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void name_next(char name[BLOCKDEV_NODE_NAME_MAX], unsigned *counter)
{
    snprintf(name, BLOCKDEV_NODE_NAME_MAX, "#block%03u", (*counter)++);
}

static struct disk_node_name *entry_of(struct disk_node_names *t, int disk, const struct blockdev *bd)
{
    for (int i = 0; i < DISK_NODE_NAMES_MAX; i++) {
        if (t->e[i].used && t->e[i].bd == bd && t->e[i].disk == disk) {
            return &t->e[i];
        }
    }
    return NULL;
}

/* FNV-1a: enough to tell a disk's layers' files apart. */
static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

static bool in_chain(const struct blockdev *bd, struct blockdev *const *chain, int n)
{
    for (int k = 0; k < n; k++) {
        if (chain[k] == bd) {
            return true;
        }
    }
    return false;
}

/* The counter orders the names QEMU makes; the sequence number orders
 * every layer, named by the user or not. */
static unsigned next_seq(const struct disk_node_names *t)
{
    unsigned seq = 0;
    for (int i = 0; i < DISK_NODE_NAMES_MAX; i++) {
        if (t->e[i].used && t->e[i].seq >= seq) {
            seq = t->e[i].seq + 1;
        }
    }
    return seq;
}

int disk_node_names_add(struct disk_node_names *t, int disk, const struct blockdev *bd, const char *file,
                        const char *format, unsigned *counter)
{
    struct disk_node_name *e = NULL;
    for (int i = 0; !e && i < DISK_NODE_NAMES_MAX; i++) {
        e = t->e[i].used ? NULL : &t->e[i];
    }
    if (!e) {
        return -ENOSPC;
    }
    *e = (struct disk_node_name){ .used = true, .bd = bd, .disk = disk, .seq = next_seq(t), .file_hash = hash_of(file) };
    name_next(e->file, counter);
    if (format) {
        snprintf(e->format, sizeof(e->format), "%s", format);
    } else {
        name_next(e->format, counter);
    }
    return 0;
}

/* A layer of disk that left the chain with this file: the image reopened. */
static struct disk_node_name *reopened(struct disk_node_names *t, int disk, struct blockdev *const *chain, int n,
                                       const char *file)
{
    uint64_t h = hash_of(file);
    for (int i = 0; i < DISK_NODE_NAMES_MAX; i++) {
        struct disk_node_name *e = &t->e[i];
        if (e->used && e->disk == disk && e->file_hash == h && !in_chain(e->bd, chain, n)) {
            return e;
        }
    }
    return NULL;
}

void disk_node_names_sync(struct disk_node_names *t, int disk, struct blockdev *const *chain,
                          const char *const *files, int n, unsigned *counter, const struct disk_node_name **out)
{
    for (int k = 0; k < n; k++) {
        struct disk_node_name *e = entry_of(t, disk, chain[k]) ? NULL : reopened(t, disk, chain, n, files[k]);
        if (e) {
            e->bd = chain[k];
        }
    }
    for (int i = 0; i < DISK_NODE_NAMES_MAX; i++) {
        if (t->e[i].used && t->e[i].disk == disk && !in_chain(t->e[i].bd, chain, n)) {
            t->e[i].used = false;
        }
    }
    for (int k = 0; k < n; k++) {
        if (!entry_of(t, disk, chain[k])) {
            disk_node_names_add(t, disk, chain[k], files[k], NULL, counter);
        }
        out[k] = entry_of(t, disk, chain[k]);
    }
}

const struct disk_node_name *disk_node_names_find(const struct disk_node_names *t, const char *name)
{
    for (int i = 0; i < DISK_NODE_NAMES_MAX; i++) {
        const struct disk_node_name *e = &t->e[i];
        if (e->used && (!strcmp(e->format, name) || !strcmp(e->file, name))) {
            return e;
        }
    }
    return NULL;
}
