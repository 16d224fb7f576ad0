/* HMP's qemu-io DEVICE "COMMAND": QEMU's way for a test or an operator to
 * run any qemu-io command (read, write, aio_*, discard, map, info, -P
 * patterns, read -v, ...) on a running node through the block layer, as
 * a guest would (dirty bitmaps and a backup's copy-before-write see it).
 * The commands are the library's (src/qemu_io, cowio's own); as in QEMU
 * 7.2 the monitor's reply is empty once the command ran: what qemu-io says
 * goes to the process's stdout (its errors to stderr). Only a device that
 * is not found, a missing command or a write to a node a device holds is
 * the monitor's error. */
#include "qmp_int.h"

#include <stdio.h>
#include <string.h>

#include "block/blockdev.h"
#include "machine/block_nodes.h"
#include "qemu_io/qemu_io.h"

/* The open image a device or node name designates (a disk's top or an
 * added node), or NULL; *node: the added node, if that is what it is. */
static struct blockdev *image_named(struct qmp_server *s, const char *name, struct block_node **node)
{
    *node = NULL;
    int i = qmp_find_disk(s, name);
    if (i >= 0) {
        struct disk_layer top;
        bool ro;
        return qmp_disk_layers(s, i, &top, NULL, 1, &ro) == 1 ? top.bd : NULL;
    }
    *node = machine_block_node_find(s->m, name);
    return *node ? (*node)->node.bd : NULL;
}

/* HMP's string argument: a word, or a double-quoted string with
 * backslash escapes. NULL: none, or an unterminated quote. */
static char *hmp_string(char *p)
{
    p += strspn(p, " \t");
    if (*p != '"') {
        return *p ? strtok(p, " \t") : NULL;
    }
    char *out = ++p, *w = p;
    for (; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            *w++ = *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p;
        } else {
            *w++ = *p;
        }
    }
    if (*p != '"') {
        return NULL;
    }
    *w = '\0';
    return out;
}

static bool is_write_command(const char *command)
{
    char name[32] = "";
    sscanf(command, " %31s", name);
    const struct cowio_cmd *ct = name[0] ? cowio_find_command(name) : NULL;
    return ct && ct->wants_write;
}

/* A record or replay owns the machine's disks (block jobs are refused
 * too): a write would change the recording's overlay behind the replay. */
static bool replay_refused(struct qmp_server *s, const char *device, const char *command, struct qmp_reply *r)
{
    struct machine_replay_info replay;
    machine_replay_query(s->m, &replay);
    if (replay.mode == MACHINE_REPLAY_OFF || qmp_find_disk(s, device) < 0 || !is_write_command(command)) {
        return false;
    }
    char msg[1024];
    snprintf(msg, sizeof(msg), "Node '%s' is busy: block device is in use by record/replay\r\n", device);
    r->ret = json_string(msg);
    return true;
}

/* QEMU's HMP qemu-io takes a node's write permission for a write command
 * over the node: refused while a device holds it, in QEMU's words. */
static bool write_refused(const struct block_node *node, const char *command, struct qmp_reply *r)
{
    if (!node || !node->device[0] || !is_write_command(command)) {
        return false;
    }
    char msg[1024];
    snprintf(msg, sizeof(msg), "Permission conflict on node '%s': permissions 'write' are both required by an "
             "unnamed block device (uses node '%s' as 'root' child) and unshared by block device "
             "'%s/virtio-backend' (uses node '%s' as 'root' child).\r\n", node->name, node->name, node->device,
             node->name);
    r->ret = json_string(msg);
    return true;
}

void qmp_hmp_qemu_io(struct qmp_server *s, char *rest, struct qmp_reply *r)
{
    char *save = NULL;
    char *device = strtok_r(rest, " \t", &save);
    char *command = device ? hmp_string(save) : NULL;
    if (!command || !*command) {
        r->ret = json_string("qemu-io: string expected\r\nTry \"help qemu-io\" for more information\r\n");
        return;
    }
    if (replay_refused(s, device, command, r)) {
        return;
    }
    struct block_node *node;
    struct blockdev *bd = image_named(s, device, &node);
    if (!bd) {
        char msg[1200];
        snprintf(msg, sizeof(msg), "Error: Cannot find device='' nor node-name='%s'\r\n", device);
        r->ret = json_string(msg);
        return;
    }
    if (write_refused(node, command, r)) {
        return;
    }
    /* The node's own cache mode stands: no flush after each write. */
    struct hmp_out reply;
    qmp_hmp_out_open(&reply);
    struct cowio io = { .bd = bd, .monitor = reply.f };
    cowio_run_command(&io, command);
    /* QEMU reports aio requests from its main loop, before the monitor's
     * next command: here, before this reply. */
    cowio_aio_join(&io, true);
    cowio_drain(&io);
    fflush(stdout);
    fflush(stderr);
    r->ret = qmp_hmp_out_close(&reply);
}
