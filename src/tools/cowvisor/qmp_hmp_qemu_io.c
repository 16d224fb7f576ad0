/* HMP's qemu-io DEVICE "COMMAND": QEMU's way for a test or an operator to
 * write to a running node through the block layer as a guest would (dirty
 * bitmaps and a backup's copy-before-write see it). Only the commands
 * tests need: write [-P PATTERN] [-z] OFFSET LENGTH. */
#include "qmp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "machine/block_nodes.h"
#include "util/size.h"

#define MAX_WRITE (16u << 20)

/* The open image a device or node name designates (a disk's top or an
 * added node), or NULL. */
static struct blockdev *image_named(struct qmp_server *s, const char *name)
{
    int i = qmp_find_disk(s, name);
    if (i >= 0) {
        struct disk_layer top;
        bool ro;
        return machine_disk_chain(s->m, i, &top, 1, &ro) == 1 ? top.bd : NULL;
    }
    struct block_node *n = machine_block_node_find(s->m, name);
    return n ? n->node.bd : NULL;
}

/* "write [-P PATTERN] [-z] OFF LEN": the text qemu-io prints, or an error. */
static char *run_write(struct blockdev *bd, char **argv, int argc)
{
    long pattern = 0xcd;
    bool zero = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-z")) {
            zero = true;
        } else if (!strcmp(argv[i], "-P") && i + 1 < argc) {
            pattern = strtol(argv[++i], NULL, 0);
        } else {
            return strdup("qemu-io: unsupported write option\r\n");
        }
    }
    uint64_t off, len;
    if (argc - i != 2 || size_parse(argv[i], &off) < 0 || size_parse(argv[i + 1], &len) < 0 || len > MAX_WRITE) {
        return strdup("qemu-io: write takes OFFSET LENGTH (at most 16 MiB)\r\n");
    }
    struct error err = { 0 };
    int ret;
    if (zero) {
        ret = blockdev_pwrite_zeroes(bd, off, len, 0, &err);
    } else {
        char *buf = malloc(len ? len : 1);
        if (!buf) {
            return strdup("qemu-io: out of memory\r\n");
        }
        memset(buf, (int)pattern, len);
        ret = blockdev_pwrite(bd, off, buf, len, &err);
        free(buf);
    }
    char out[1200];
    if (ret < 0) {
        snprintf(out, sizeof(out), "write failed: %s\r\n", err.msg);
    } else {
        snprintf(out, sizeof(out), "wrote %llu/%llu bytes at offset %llu\r\n", (unsigned long long)len,
                 (unsigned long long)len, (unsigned long long)off);
    }
    return strdup(out);
}

void qmp_hmp_qemu_io(struct qmp_server *s, char *rest, struct qmp_reply *r)
{
    char *argv[16];
    int argc = 0;
    char *save = NULL;
    char *device = strtok_r(rest, " \t", &save);
    char *cmd = device ? strtok_r(NULL, "", &save) : NULL;
    struct blockdev *bd = device ? image_named(s, device) : NULL;
    if (!bd) {
        r->ret = json_string("Error: Cannot find device\r\n");
        return;
    }
    /* The command comes quoted, as HMP takes it. */
    for (char *p = cmd ? cmd : (char *)""; *p; p++) {
        if (*p == '"' || *p == '\'') {
            *p = ' ';
        }
    }
    for (char *t = strtok_r(cmd, " \t", &save); t && argc < 16; t = strtok_r(NULL, " \t", &save)) {
        argv[argc++] = t;
    }
    char *out = argc && !strcmp(argv[0], "write") ? run_write(bd, argv, argc)
                                                   : strdup("qemu-io: only 'write' is supported here\r\n");
    r->ret = json_string(out);
    free(out);
}
