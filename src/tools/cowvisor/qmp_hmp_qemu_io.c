/* HMP's qemu-io DEVICE "COMMAND": QEMU's way for a test or an operator to
 * write to a running node through the block layer as a guest would (dirty
 * bitmaps and a backup's copy-before-write see it). Only the commands
 * tests need: write [-P PATTERN] [-z] [-q] OFFSET LENGTH. As in QEMU 7.2 the
 * monitor's reply is empty once the command ran: what qemu-io says goes to
 * the process's stdout (its errors to stderr); only a device that is not
 * found or a missing command is the monitor's error. */
#include "qmp_int.h"

#include <errno.h>
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

#define WRITE_USAGE "write [-bcCfnquz] [-P pattern | -s source_file] off len -- writes a number of bytes at a " \
                    "specified offset\n"

/* "write [-P PATTERN] [-z] [-q] OFF LEN", printing what qemu-io prints. */
static void run_write(struct blockdev *bd, char **argv, int argc)
{
    long pattern = 0xcd;
    bool zero = false, quiet = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        char *end;
        if (!strcmp(argv[i], "-z") || !strcmp(argv[i], "-q")) {
            *(argv[i][1] == 'z' ? &zero : &quiet) = true;
        } else if (!strcmp(argv[i], "-P") && i + 1 < argc) {
            pattern = strtol(argv[++i], &end, 0);
            if (*end || pattern < 0 || pattern > 255) {
                printf("%s is not a valid pattern byte\n", argv[i]);
                return;
            }
        } else {
            fprintf(stderr, "qemu-io: write option '%s' is not supported by cowvisor\n", argv[i]);
            return;
        }
    }
    uint64_t off, len;
    if (argc - i != 2) {
        printf(WRITE_USAGE);
        return;
    }
    for (int k = i; k < argc; k++) {
        if (size_parse(argv[k], k == i ? &off : &len) < 0) {
            printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n", argv[k]);
            return;
        }
    }
    if (len > MAX_WRITE) {
        fprintf(stderr, "qemu-io: cowvisor writes at most 16 MiB at once\n");
        return;
    }
    struct error err = { 0 };
    int ret;
    if (zero) {
        ret = blockdev_pwrite_zeroes(bd, off, len, 0, &err);
    } else {
        char *buf = malloc(len ? len : 1);
        if (!buf) {
            fprintf(stderr, "qemu-io: out of memory\n");
            return;
        }
        memset(buf, (int)pattern, len);
        ret = blockdev_pwrite(bd, off, buf, len, &err);
        free(buf);
    }
    if (ret < 0) {
        /* QEMU's block layer refuses a request past the end with EIO. */
        printf("write failed: %s\n", strerror(ret == -ERANGE || ret == -EINVAL ? EIO : -ret));
    } else if (!quiet) {
        printf("wrote %llu/%llu bytes at offset %llu\n", (unsigned long long)len, (unsigned long long)len,
               (unsigned long long)off);
    }
    fflush(stdout);
}

void qmp_hmp_qemu_io(struct qmp_server *s, char *rest, struct qmp_reply *r)
{
    char *argv[16];
    int argc = 0;
    char *save = NULL;
    char *device = strtok_r(rest, " \t", &save);
    char *cmd = device ? strtok_r(NULL, "", &save) : NULL;
    if (!cmd || !*cmd) {
        r->ret = json_string("qemu-io: string expected\r\nTry \"help qemu-io\" for more information\r\n");
        return;
    }
    struct blockdev *bd = image_named(s, device);
    if (!bd) {
        char msg[1200];
        snprintf(msg, sizeof(msg), "Error: Cannot find device='' nor node-name='%s'\r\n", device);
        r->ret = json_string(msg);
        return;
    }
    /* The command comes quoted, as HMP takes it. */
    for (char *p = cmd; *p; p++) {
        if (*p == '"' || *p == '\'') {
            *p = ' ';
        }
    }
    for (char *t = strtok_r(cmd, " \t", &save); t && argc < 16; t = strtok_r(NULL, " \t", &save)) {
        argv[argc++] = t;
    }
    if (argc && !strcmp(argv[0], "write")) {
        run_write(bd, argv, argc);
    } else if (argc) {
        fprintf(stderr, "command \"%s\" not found (cowvisor's qemu-io has only write)\n", argv[0]);
    }
    r->ret = json_string("");
}
