/* Sizes as QEMU's tools parse and print them. */
#ifndef UTIL_SIZE_H
#define UTIL_SIZE_H

#include <stdint.h>

/* Parses "512", "64k", "1.5G", "4096b" the way qemu-img does: a number with an
 * optional suffix b/k/M/G/T/P/E (powers of 1024, case-insensitive but for
 * 'b'); without a suffix the value is bytes. Returns 0 or -EINVAL/-ERANGE. */
int size_parse(const char *s, uint64_t *out);
/* "64 MiB", "1.5 GiB", "196 KiB": qemu's size_to_str(). */
void size_format(uint64_t v, char *buf, int buflen);

#endif
