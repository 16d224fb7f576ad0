/* QMP blockdev-add's options (QEMU 7.2's BlockdevOptions, a JSON object)
 * checked with QEMU's words and opened as one node of this library: a
 * format (qcow2, raw) over a protocol (file, host_device, nbd, null-co,
 * blkdebug), or a protocol node alone. Children may be inline objects or
 * the node names of nodes added before ("file": "f0", "backing": "base");
 * the caller owns the table of named nodes and answers for those names. */
#ifndef BLOCK_BLOCKDEV_ADD_H
#define BLOCK_BLOCKDEV_ADD_H

#include <jansson.h>
#include <stdbool.h>

#include "block/blockdev.h"
#include "util/error.h"

/* QEMU's node-name rule: a letter, then letters, digits, '-', '.', '_';
 * shorter than 32 bytes. */
#define BLOCKDEV_NODE_NAME_MAX 32
int blockdev_node_name_check(const char *name, struct error *err);

/* The nodes a new node may name as its children. */
struct blockdev_add_children {
    /* The options that node was added with (borrowed), NULL: no such node. */
    json_t *(*options_of)(void *opaque, const char *node_name);
    /* Its open image. */
    struct blockdev *(*image_of)(void *opaque, const char *node_name);
    void *opaque;
};

struct blockdev_added {
    struct blockdev *bd;
    char driver[16];            /* the top node's driver ("qcow2", "file", ...) */
    char file_child[BLOCKDEV_NODE_NAME_MAX];     /* "file" given as a node name ("" none) */
    char backing_child[BLOCKDEV_NODE_NAME_MAX];  /* "backing" given as a node name ("" none) */
    bool read_only;
    bool discard_unmap;         /* discard=unmap: guest discards reach the image */
    enum blockdev_detect_zeroes detect_zeroes;
    bool direct, no_flush;      /* cache.direct, cache.no-flush */
};

/* Checks args as QEMU's QAPI and block layer do (missing and unexpected
 * members, driver names, the root's node-name), resolves named children
 * and opens the node. The node-name's uniqueness is the caller's. */
int blockdev_add_open(json_t *args, const struct blockdev_add_children *children, struct blockdev_added *out,
                      struct error *err);

#endif
