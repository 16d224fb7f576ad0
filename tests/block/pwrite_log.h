/* The pwrite calls a test makes the block layer send to its image files,
 * logged through the linker's --wrap=pwrite64 (link pwrite_log.c with it):
 * while pwrite_logging is set, each call is counted and its length and
 * offset kept. */
#ifndef TESTS_BLOCK_PWRITE_LOG_H
#define TESTS_BLOCK_PWRITE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PWRITE_LOG_MAX 256

extern bool pwrite_logging;
extern int pwrite_calls;
extern size_t pwrite_len[PWRITE_LOG_MAX];
extern off_t pwrite_off[PWRITE_LOG_MAX];

#endif
