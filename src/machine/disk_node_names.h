/* The node names of the machine's disks (--disk): QEMU names the nodes a
 * -drive opens itself ("#block042", a counter it shares with every node it
 * names), one for each layer's format and one for the file under it, and
 * management tools see those names in query-block, query-named-block-nodes
 * and query-blockstats. The names live as long as the layer is in its
 * disk's chain: a layer the chain loses (commit, stream) loses its name, a
 * new one (an external snapshot's overlay) gets the next. */
#ifndef MACHINE_DISK_NODE_NAMES_H
#define MACHINE_DISK_NODE_NAMES_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blockdev_add.h"

/* 8 disks with chains of 16 layers, as the monitor lists them. */
#define DISK_NODE_NAMES_MAX 128

struct disk_node_name {
    bool used;                              /* false: a free entry */
    const struct blockdev *bd;              /* the layer named (the tests' stub disks have none) */
    int disk;
    unsigned seq;                           /* creation order among the names */
    uint64_t file_hash;                     /* of the layer's file name: a reopened image keeps its names */
    char format[BLOCKDEV_NODE_NAME_MAX];    /* the layer's node */
    char file[BLOCKDEV_NODE_NAME_MAX];      /* the node of its host file */
};

struct disk_node_names {
    struct disk_node_name e[DISK_NODE_NAMES_MAX];
};

/* Names disk's chain (its layers' blockdevs from the top and their file
 * names, n of them): layers named before keep their names, and so does an
 * image a job reopened (a layer that left the chain with the same file
 * name: QEMU keeps the node); names of layers no longer in the chain are
 * forgotten, new layers are named from *counter as QEMU opens them (the
 * file's node, then the format's; the top first). out[k] gets layer k's
 * names (NULL only when the table is full). */
void disk_node_names_sync(struct disk_node_names *t, int disk, struct blockdev *const *chain,
                          const char *const *files, int n, unsigned *counter, const struct disk_node_name **out);

/* A new layer of disk (bd over file) given the format node's name
 * (blockdev-snapshot-sync's snapshot-node-name); its file's node is named
 * from *counter. -ENOSPC when the table is full. */
int disk_node_names_add(struct disk_node_names *t, int disk, const struct blockdev *bd, const char *file,
                        const char *format, unsigned *counter);

/* The entry with a format or file node of that name, or NULL. */
const struct disk_node_name *disk_node_names_find(const struct disk_node_names *t, const char *name);

#endif
