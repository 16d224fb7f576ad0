/* Damage done to a file on purpose, for tests of what refuses corrupt
 * snapshots and logs. Failures abort with a message. */
#ifndef TESTS_MACHINE_FILE_DAMAGE_H
#define TESTS_MACHINE_FILE_DAMAGE_H

#include <sys/types.h>

/* One bit of the byte at off, flipped in place. */
void file_flip_byte(const char *path, off_t off);

#endif
