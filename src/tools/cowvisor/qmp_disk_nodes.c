/* The machine disks' node names as the monitor shows and accepts them:
 * QEMU's "#blockNNN" names for each layer's format node and file node
 * (machine/disk_node_names.h), named in QEMU's order at the server's start
 * and after each command, and the device name "diskN" standing for the
 * top node as QEMU's commands accept a device name where a node is asked. */
#include "qmp_int.h"

#include <stdio.h>
#include <string.h>

#include "machine/block_nodes.h"

#define MAX_LAYERS 16

int qmp_disk_layers(struct qmp_server *s, int i, struct disk_layer *out, const struct disk_node_name **names,
                    int max, bool *ro)
{
    struct disk_layer l[MAX_LAYERS];
    const struct disk_node_name *own[MAX_LAYERS];
    bool own_ro;
    /* The whole chain is named, however much of it the caller asks. */
    int n = machine_disk_chain(s->m, i, l, MAX_LAYERS, ro ? ro : &own_ro);
    if (n < 0) {
        return n;
    }
    struct blockdev *chain[MAX_LAYERS];
    const char *files[MAX_LAYERS];
    for (int k = 0; k < n; k++) {
        chain[k] = l[k].bd;
        files[k] = l[k].filename;
    }
    struct block_node_table *t = machine_block_nodes(s->m);
    disk_node_names_sync(&t->disks, i, chain, files, n, &t->implicit_names, own);
    n = n < max ? n : max;
    for (int k = 0; k < n; k++) {
        out[k] = l[k];
        if (names) {
            names[k] = own[k];
        }
    }
    return n;
}

void qmp_disk_nodes_sync(struct qmp_server *s)
{
    for (int i = 0; i < machine_disk_count(s->m); i++) {
        struct disk_layer l[MAX_LAYERS];
        qmp_disk_layers(s, i, l, NULL, MAX_LAYERS, NULL);
    }
}

const char *qmp_disk_node_name(const struct disk_node_name *name)
{
    return name ? name->format : "";
}

int qmp_find_disk_node(struct qmp_server *s, const char *name, int *depth)
{
    int i = qmp_find_disk(s, name);
    *depth = 0;
    if (i >= 0) {
        return i;
    }
    for (i = 0; i < machine_disk_count(s->m); i++) {
        struct disk_layer l[MAX_LAYERS];
        const struct disk_node_name *names[MAX_LAYERS];
        int n = qmp_disk_layers(s, i, l, names, MAX_LAYERS, NULL);
        for (int k = 0; k < n; k++) {
            if (names[k] && !strcmp(names[k]->format, name)) {
                *depth = k;
                return i;
            }
        }
    }
    return -1;
}
