#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int suffix_shift(char c)
{
    switch (tolower((unsigned char)c)) {
    case 'b': return 0;
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    case 'e': return 60;
    default: return -1;
    }
}

int size_parse(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s)) {
        return -EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long long whole = strtoull(s, &end, 10);
    if (errno) {
        return -ERANGE;
    }
    double fraction = 0;
    if (whole == 0 && end > s && (*end == 'x' || *end == 'X')) {
        /* Hexadecimal, as qemu_strtosz takes it (no fraction). */
        whole = strtoull(s, &end, 16);
        if (errno) {
            return -ERANGE;
        }
        if (*end == '.' || end == s + 2) {
            return -EINVAL;
        }
    } else if (*end == '.') {
        char *fend;
        fraction = strtod(end, &fend);
        if (fend == end + 1) {
            return -EINVAL;
        }
        end = fend;
    }
    if (end == s) {
        return -EINVAL;
    }
    int shift = 0;
    if (*end) {
        shift = suffix_shift(*end);
        if (shift < 0 || end[1] != '\0') {
            return -EINVAL;
        }
    }
    if (fraction != 0 && shift == 0) {
        return -EINVAL; /* fractional bytes */
    }
    if (shift && whole > (UINT64_MAX >> shift)) {
        return -ERANGE;
    }
    uint64_t v = (uint64_t)whole << shift;
    double extra = fraction * (double)(1ULL << shift);
    if (extra >= 0x1p64 - (double)v) {
        return -ERANGE;
    }
    *out = v + (uint64_t)extra;
    return 0;
}

void size_format(uint64_t v, char *buf, int buflen)
{
    static const char *const suffixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int exp;
    /* The 1000/1024 factor switches to the next unit once the integer part
     * would reach 1000, as QEMU does. */
    frexp((double)v / (1000.0 / 1024.0), &exp);
    int i = (exp - 1) / 10;
    if (i < 0) {
        i = 0;
    }
    if (i > 6) {
        i = 6;
    }
    double div = (double)(1ULL << (i * 10));
    snprintf(buf, (size_t)buflen, "%0.3g %sB", (double)v / div, suffixes[i]);
}
