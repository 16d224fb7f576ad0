/* transaction: QMP actions that happen all or not at all, for the
 * incremental backup's start (a bitmap added or cleared together with the
 * full backup). Each action runs as its command does, in order; when one
 * fails, those before it are undone in reverse (a bitmap added is
 * removed, a cleared one gets its bits back, a started job is cancelled)
 * and its error is the transaction's. Supported: block-dirty-bitmap-add,
 * block-dirty-bitmap-clear, drive-backup, blockdev-backup, abort. */
#include "qmp_int.h"

#include "block/block_job.h"
#include "block/blockdev.h"
#include "util/dirty_bitmap.h"

#define MAX_ACTIONS 32

/* Every action type QEMU 7.2 has (TransactionActionKind). */
static const char *const qemu_actions[] = {
    "abort", "block-dirty-bitmap-add", "block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
    "block-dirty-bitmap-enable", "block-dirty-bitmap-disable", "block-dirty-bitmap-merge", "blockdev-backup",
    "blockdev-snapshot", "blockdev-snapshot-internal-sync", "blockdev-snapshot-sync", "drive-backup", NULL,
};
static const char *const our_actions[] = {
    "abort", "block-dirty-bitmap-add", "block-dirty-bitmap-clear", "blockdev-backup", "drive-backup", NULL,
};

/* How to undo one action that went through. */
struct undo {
    const char *node;               /* bitmap actions: the node, found again when undoing (a backup
                                     * later in the list may have taken and closed its image) */
    const char *bitmap;
    struct dirty_bitmap *cleared;   /* a clear's bits, NULL for an add */
    struct block_job *job;          /* a backup started */
};

static bool listed(const char *const *list, const char *s)
{
    for (; *list; list++) {
        if (!strcmp(*list, s)) {
            return true;
        }
    }
    return false;
}

/* QAPI's checks of the whole list before anything runs. */
static bool check_actions(json_t *actions, struct qmp_reply *r)
{
    if (!json_is_array(actions)) {
        qmp_fail(r, QMP_GENERIC, actions ? "Invalid parameter type for 'actions', expected: array"
                                         : "Parameter 'actions' is missing");
        return false;
    }
    if (json_array_size(actions) > MAX_ACTIONS) {
        qmp_fail(r, QMP_GENERIC, "cowvisor's transaction takes at most %d actions", MAX_ACTIONS);
        return false;
    }
    size_t i;
    json_t *a;
    json_array_foreach(actions, i, a) {
        const char *type = json_string_value(json_object_get(a, "type"));
        if (!type) {
            qmp_fail(r, QMP_GENERIC, "Parameter 'type' is missing");
            return false;
        }
        if (!listed(qemu_actions, type)) {
            qmp_fail(r, QMP_GENERIC, "Parameter 'type' does not accept value '%s'", type);
            return false;
        }
        if (!listed(our_actions, type)) {
            qmp_fail(r, QMP_GENERIC, "Action type '%s' is not supported by cowvisor's transaction", type);
            return false;
        }
    }
    return true;
}

static void run_bitmap_clear(struct qmp_server *s, json_t *data, struct undo *u, struct qmp_reply *r)
{
    if (!qmp_check_args(data, qmp_bitmap_args, r)) {
        return;
    }
    const char *name = json_string_value(json_object_get(data, "name"));
    struct blockdev *bd = qmp_bitmap_node(s, json_string_value(json_object_get(data, "node")), r);
    struct error err = { 0 };
    if (bd && blockdev_bitmap_clear_taking(bd, name, &u->cleared, &err) < 0) {
        qmp_fail(r, QMP_GENERIC, "%s", err.msg);
    } else if (bd) {
        *u = (struct undo){ json_string_value(json_object_get(data, "node")), name, u->cleared, NULL };
    }
}

static void run_action(struct qmp_server *s, json_t *action, struct undo *u, struct qmp_reply *r)
{
    const char *type = json_string_value(json_object_get(action, "type"));
    json_t *data = json_object_get(action, "data"), *empty = json_object();
    if (!json_is_object(data)) {
        data = empty;
    }
    int jobs = s->nblock_jobs;
    if (!strcmp(type, "abort")) {
        qmp_fail(r, QMP_GENERIC, "Transaction aborted using Abort action");
    } else if (!strcmp(type, "block-dirty-bitmap-add")) {
        qmp_bitmap_add(s, data, r);
        if (!r->err_class) {
            *u = (struct undo){ json_string_value(json_object_get(data, "node")),
                                json_string_value(json_object_get(data, "name")), NULL, NULL };
        }
    } else if (!strcmp(type, "block-dirty-bitmap-clear")) {
        run_bitmap_clear(s, data, u, r);
    } else {
        (!strcmp(type, "drive-backup") ? qmp_drive_backup : qmp_blockdev_backup)(s, data, r);
        if (!r->err_class && s->nblock_jobs > jobs) {
            u->job = s->block_jobs[s->nblock_jobs - 1].job;
        }
    }
    json_decref(empty);
}

/* The node's image now, NULL when a job holds it. */
static struct blockdev *undo_image(struct qmp_server *s, const struct undo *u)
{
    struct qmp_reply scratch = { 0 };
    struct blockdev *bd = u->node ? qmp_bitmap_node(s, u->node, &scratch) : NULL;
    json_decref(scratch.ret);
    return bd;
}

static void undo(struct qmp_server *s, struct undo *u, bool commit)
{
    struct blockdev *bd = undo_image(s, u);
    if (u->cleared && bd) {
        blockdev_bitmap_untake(bd, u->bitmap, u->cleared, !commit);
    } else if (u->cleared) {
        dirty_bitmap_free(u->cleared);      /* the image went with its bitmap */
    } else if (bd && !commit) {
        blockdev_bitmap_remove(bd, u->bitmap, NULL);
    }
    if (u->job && !commit) {
        block_job_cancel(u->job, true, NULL);
    }
}

void qmp_transaction(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    json_t *actions = json_object_get(args, "actions");
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        if (strcmp(key, "actions") && strcmp(key, "properties")) {
            qmp_fail(r, QMP_GENERIC, "Parameter '%s' is unexpected", key);
            return;
        }
    }
    if (!check_actions(actions, r)) {
        return;
    }
    struct undo undos[MAX_ACTIONS] = { 0 };
    size_t n = json_array_size(actions), done = 0;
    for (; done < n && !r->err_class; done++) {
        run_action(s, json_array_get(actions, done), &undos[done], r);
    }
    bool commit = !r->err_class;
    for (size_t i = done; i-- > 0;) {
        undo(s, &undos[i], commit);
    }
}
