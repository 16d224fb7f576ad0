/* Whether a buffer holds only zero bytes: sparse memory files, NBD's
 * detect-zeroes, image conversion all ask it. */
#ifndef UTIL_ZERO_H
#define UTIL_ZERO_H

#include <stdbool.h>
#include <stddef.h>

bool mem_is_zero(const void *buf, size_t len);

#endif
