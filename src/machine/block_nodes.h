/* The machine's named block nodes: what blockdev-add opened, found by
 * node-name by whatever uses a node (a device's drive=, a block job,
 * another node naming it as its "file" or "backing" child), and removed by
 * blockdev-del only while nothing uses it. Not thread-safe: the monitor's
 * thread (the main loop) owns it. */
#ifndef MACHINE_BLOCK_NODES_H
#define MACHINE_BLOCK_NODES_H

#include <jansson.h>
#include <stdbool.h>

#include "block/blockdev_add.h"
#include "machine/disk_node_names.h"

#define BLOCK_NODES_MAX 64

#define BLOCK_NODE_BACKING_MAX 16

/* A backing layer QEMU opens from an image's header: a format node over
 * the protocol node of its file, each named as QEMU names the nodes it
 * creates ("#block007"). */
struct block_node_layer_names {
    char format[BLOCKDEV_NODE_NAME_MAX];
    char file[BLOCKDEV_NODE_NAME_MAX];
};

struct block_node {
    char name[BLOCKDEV_NODE_NAME_MAX];
    /* The protocol node an inline "file" object opened (a host file, an
     * NBD export, ...), named as QEMU names nodes it creates ("#block007";
     * "": none). */
    char implicit_file[BLOCKDEV_NODE_NAME_MAX];
    /* The layers of the image's own backing chain (no "backing" given),
     * nearest first: node.bd's blockdev_backing chain. */
    struct block_node_layer_names backing[BLOCK_NODE_BACKING_MAX];
    int backing_layers;
    struct blockdev_added node;     /* the open image and what blockdev-add asked */
    json_t *options;                /* as added: what a parent naming it opens */
    char device[128];               /* the QOM path of the device using it ("": none) */
    int jobs;                       /* block jobs using it */
    char job_target[16];            /* the type of the job writing to it ("": none) */
    /* The device's requests stop while a job changes the node's image
     * (set by the device that attaches; NULL: no device). */
    void (*drain_begin)(void *opaque);
    void (*drain_end)(void *opaque);
    void *drain_opaque;
};

struct block_node_table {
    struct block_node *nodes[BLOCK_NODES_MAX];
    int count;
    unsigned implicit_names;        /* how many were named "#blockNNN" */
    struct disk_node_names disks;   /* the machine disks' nodes (named from implicit_names too) */
};

struct machine;
/* The machine's table (the stub machine of the tests has one too). */
struct block_node_table *machine_block_nodes(struct machine *m);
/* The one lookup by node-name: NULL when no node has that name. */
struct block_node *machine_block_node_find(struct machine *m, const char *name);

/* blockdev-add: args as QMP gives them (QEMU's error words). */
int block_nodes_add(struct block_node_table *t, json_t *args, struct error *err);
/* blockdev-del: refused while a device, a job or a parent node uses it. */
int block_nodes_del(struct block_node_table *t, const char *name, struct error *err);
/* At the machine's end: every node closed, parents first. */
void block_nodes_close_all(struct block_node_table *t);

/* QEMU's permission conflict when user ("node 'q1'", "block device
 * '/machine/peripheral/d1/virtio-backend'"), using n as its role ("file",
 * "root") child, would write n while a writable parent node or a device
 * writes it: two writers of one node corrupt it (two qcow2 allocators on
 * one file, guest writes inside an image's file). */
int block_nodes_check_writer(struct block_node_table *t, const struct block_node *n, const char *user,
                             const char *role, struct error *err);

/* A backup's target that a writable qcow2 node has as its file child:
 * the job would resize what qcow2 grows (QEMU's permission conflict). */
int block_nodes_check_backup_target(struct block_node_table *t, const struct block_node *n, struct error *err);

/* A device (its QOM path) takes the node (drive=) and gives it back.
 * -EBUSY with QEMU's words when another device has it, -EPERM when a
 * parent node writes it. */
int block_node_attach(struct block_node_table *t, struct block_node *n, const char *device, struct error *err);
void block_node_detach(struct block_node *n);

/* A backup job takes the node's image as its target and closes it (a
 * second open of an image someone writes would go stale): the node has
 * none (node.bd NULL) until block_nodes_reopen opens it again as added. */
struct blockdev *block_node_take_image(struct block_node *n);
int block_nodes_reopen(struct block_node_table *t, struct block_node *n, struct error *err);

/* A block job's host over the node's image (block/block_job.h). */
struct block_job_host;
void block_node_job_host(struct block_node *n, struct block_job_host *out);

#endif
