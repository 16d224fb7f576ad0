/* blkdebug as QEMU defines it: a filter over an image's file that fails
 * I/O on events the format driver reports (inject-error) and moves between
 * states (set-state). Rules come from a config file in QEMU's format
 * ([inject-error] / [set-state] sections of key = "value" lines) or inline
 * options (inject-error.N.event, .errno, .once, .immediately, .state,
 * .sector, .iotype; set-state.N.event, .state, .new_state), and align, the
 * request alignment rules see requests widened to. Driver-internal:
 * users name it as QEMU does (blkdebug:CONFIG:FILE, file.driver=blkdebug). */
#ifndef BLOCK_BLKDEBUG_H
#define BLOCK_BLKDEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/options.h"

/* QEMU's BlkdebugEvent, in its order. */
enum blkdebug_event {
    BLKDBG_L1_UPDATE, BLKDBG_L1_GROW_ALLOC_TABLE, BLKDBG_L1_GROW_WRITE_TABLE,
    BLKDBG_L1_GROW_ACTIVATE_TABLE, BLKDBG_L2_LOAD, BLKDBG_L2_UPDATE, BLKDBG_L2_UPDATE_COMPRESSED,
    BLKDBG_L2_ALLOC_COW_READ, BLKDBG_L2_ALLOC_WRITE, BLKDBG_READ_AIO, BLKDBG_READ_BACKING_AIO,
    BLKDBG_READ_COMPRESSED, BLKDBG_WRITE_AIO, BLKDBG_WRITE_COMPRESSED, BLKDBG_VMSTATE_LOAD,
    BLKDBG_VMSTATE_SAVE, BLKDBG_COW_READ, BLKDBG_COW_WRITE, BLKDBG_REFTABLE_LOAD,
    BLKDBG_REFTABLE_GROW, BLKDBG_REFTABLE_UPDATE, BLKDBG_REFBLOCK_LOAD, BLKDBG_REFBLOCK_UPDATE,
    BLKDBG_REFBLOCK_UPDATE_PART, BLKDBG_REFBLOCK_ALLOC, BLKDBG_REFBLOCK_ALLOC_HOOKUP,
    BLKDBG_REFBLOCK_ALLOC_WRITE, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS,
    BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE, BLKDBG_CLUSTER_ALLOC,
    BLKDBG_CLUSTER_ALLOC_BYTES, BLKDBG_CLUSTER_FREE, BLKDBG_FLUSH_TO_OS, BLKDBG_FLUSH_TO_DISK,
    BLKDBG_PWRITEV_RMW_HEAD, BLKDBG_PWRITEV_RMW_AFTER_HEAD, BLKDBG_PWRITEV_RMW_TAIL,
    BLKDBG_PWRITEV_RMW_AFTER_TAIL, BLKDBG_PWRITEV, BLKDBG_PWRITEV_ZERO, BLKDBG_PWRITEV_DONE,
    BLKDBG_EMPTY_IMAGE_PREPARE, BLKDBG_L1_SHRINK_WRITE_TABLE, BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS,
    BLKDBG_COR_WRITE, BLKDBG_CLUSTER_ALLOC_SPACE, BLKDBG_NONE,
    BLKDBG_EVENT_MAX,
};

/* I/O types a rule applies to (QEMU's BlkdebugIOType). */
enum {
    BLKDBG_IO_READ = 1u << 0, BLKDBG_IO_WRITE = 1u << 1, BLKDBG_IO_WRITE_ZEROES = 1u << 2,
    BLKDBG_IO_DISCARD = 1u << 3, BLKDBG_IO_FLUSH = 1u << 4, BLKDBG_IO_BLOCK_STATUS = 1u << 5,
    BLKDBG_IO_ALL = 0x3f,
};

struct blkdebug;

/* The rules of a config file (NULL or "": none) and of the options under
 * prefix ("file." for file.inject-error.0.event, ...), which are marked used. */
int blkdebug_new(struct blkdebug **out, const char *config, struct options *opts,
                 const char *prefix, struct error *err);
void blkdebug_free(struct blkdebug *d);
/* QEMU's blkdebug:CONFIG:FILE name: *config (allocated; "" for none) and
 * *file, which points into name. */
int blkdebug_split_name(const char *name, char **config, const char **file, struct error *err);
/* The format driver reached a point QEMU's names (BLKDBG_EVENT). */
void blkdebug_event(struct blkdebug *d, enum blkdebug_event ev);
/* 0, or the negative errno an active rule injects into this request. */
int blkdebug_check(struct blkdebug *d, unsigned iotype, uint64_t off, uint64_t len);
const char *blkdebug_event_name(enum blkdebug_event ev);

/* Breakpoints, as qemu-io's break/resume drive them: the next request
 * reaching event stops there under tag (printing QEMU's "Suspended request"
 * line) until blkdebug_resume. -ENOENT for an unknown event or tag. */
int blkdebug_break(struct blkdebug *d, const char *event, const char *tag);
int blkdebug_remove_break(struct blkdebug *d, const char *tag);
int blkdebug_resume(struct blkdebug *d, const char *tag);
void blkdebug_resume_all(struct blkdebug *d);
bool blkdebug_has_breakpoints(struct blkdebug *d);
/* Waits until a request is stopped under tag (true), or gone(opaque) says
 * no request is left that could stop (false). */
bool blkdebug_wait_suspended(struct blkdebug *d, const char *tag, bool (*gone)(void *),
                             void *opaque);

#endif
