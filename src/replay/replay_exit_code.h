/* How a version 3 replay log stores numbers and exit records compactly
 * (issue 13: bytes per exit). Every synchronous exit is logged, so its
 * record is most of a log: version 2 spent 57 bytes on one (a 13-byte head,
 * 40 bytes of fixed fields, the check); version 3 about 20.
 *   varint   7 bits a byte, low first, the top bit set on all but the last
 *            (at most 10 bytes)
 *   an exit  varint reason | varint size | varint zigzag(RIP - the previous
 *            exit's RIP) | u64 register hash | varint port/address |
 *            varint value rotated left by one (the direction or write bit,
 *            bit 63, becomes bit 0, so small values stay small) */
#ifndef REPLAY_REPLAY_EXIT_CODE_H
#define REPLAY_REPLAY_EXIT_CODE_H

#include <stddef.h>
#include <stdint.h>

#include "replay/replay_log.h"

#define REPLAY_VARINT_MAX 10
#define REPLAY_EXIT_CODE_MAX (4 * REPLAY_VARINT_MAX + 8 + 2 * 5)

/* v at p: the bytes written. */
size_t replay_varint_put(uint8_t *p, uint64_t v);
/* e at p, its RIP as the step from *last_rip (then e's): the bytes written
 * (at most REPLAY_EXIT_CODE_MAX). */
size_t replay_exit_encode(const struct replay_exit *e, uint64_t *last_rip, uint8_t *p);
/* The exit record in exactly len bytes at p, into *e (*last_rip as for
 * encoding): 0, or -1 when the bytes are not one. */
int replay_exit_decode(const uint8_t *p, size_t len, uint64_t *last_rip, struct replay_exit *e);

#endif
