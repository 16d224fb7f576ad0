/* Record/replay on the machine layer (issue 13): the replay log's starting
 * point for a configuration, and the machine's part at each exit. The
 * engine (replay/replay.h) knows nothing of machines; this file binds it. */
#ifndef MACHINE_MACHINE_REPLAY_H
#define MACHINE_MACHINE_REPLAY_H

#include "machine/machine.h"
#include "replay/replay.h"

/* The header a log for cfg starts with: hashes of the machine's shape,
 * of the kernel, initrd and firmware contents, and of the disk images'
 * contents. start/name: boot, or --restore DIR / --loadvm NAME. */
int machine_replay_header(const struct machine_config *cfg, enum replay_start start, const char *name,
                          struct replay_header *h, struct error *err);

/* At an exit: console input due now reaches the UART. Record: what the
 * console fd holds (it must be non-blocking), through the seam; replay:
 * what the log has at this exit. */
void machine_replay_console(struct machine *m, struct replay *rp);

#endif
