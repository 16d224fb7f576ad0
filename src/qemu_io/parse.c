/* Numbers on qemu-io command lines: sizes with suffixes, pattern bytes. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/qemu_io.h"

static int suffix_shift(char c)
{
    switch (c) {
    case 'b': case 'B': return 0;
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    case 'p': case 'P': return 50;
    case 'e': case 'E': return 60;
    default: return -1;
    }
}

/* The integral part: decimal, or hexadecimal after "0x" (no fraction then). */
static int parse_integral(const char *s, const char **end, uint64_t *val, bool *hex)
{
    const char *p = s;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (*p == '-' || *p == '+' || !isdigit((unsigned char)*p)) {
        return -EINVAL;
    }
    int base = 10;
    *hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    if (*hex) {
        base = 16;
        if (!isxdigit((unsigned char)p[2])) {
            return -EINVAL;
        }
    }
    char *e;
    errno = 0;
    unsigned long long v = strtoull(p, &e, base);
    if (errno == ERANGE) {
        return -ERANGE;
    }
    *val = v;
    *end = e;
    return 0;
}

/* qemu's cvtnum: "512", "64k", "1.5M", "0x200"; whole string or -EINVAL,
 * -ERANGE above INT64_MAX. Suffix letters are powers of 1024. */
int64_t cowio_cvtnum(const char *s)
{
    const char *p;
    uint64_t whole;
    bool hex;
    int ret = parse_integral(s, &p, &whole, &hex);
    if (ret < 0) {
        return ret;
    }
    double fraction = 0;
    if (*p == '.') {
        if (hex) {
            return -EINVAL;
        }
        char *e;
        fraction = strtod(p, &e);
        if (memchr(p, 'e', (size_t)(e - p)) || memchr(p, 'E', (size_t)(e - p))) {
            return -EINVAL;
        }
        p = e;
    }
    int shift = 0;
    if (*p) {
        shift = suffix_shift(*p);
        if (shift < 0 || p[1] != '\0') {
            return -EINVAL;
        }
    }
    if (shift == 0) {
        if (fraction != 0) {
            return -EINVAL;     /* fractional bytes */
        }
    } else {
        if (whole > (UINT64_MAX >> shift)) {
            return -ERANGE;
        }
        uint64_t scaled = whole << shift;
        /* Rounds half a byte up, as qemu does. */
        double extra = fraction * (double)(1ULL << shift) + 0.5;
        if (extra >= 0x1p64 - (double)scaled) {
            return -ERANGE;
        }
        whole = scaled + (uint64_t)extra;
    }
    if (whole > INT64_MAX) {
        return -ERANGE;
    }
    return (int64_t)whole;
}

void cowio_print_cvtnum_err(int64_t rc, const char *arg)
{
    if (rc == -EINVAL) {
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
               arg);
    } else if (rc == -ERANGE) {
        printf("Parsing error: argument too large -- %s\n", arg);
    } else {
        printf("Parsing error: %s\n", arg);
    }
}

/* A pattern byte: any C integer literal (strtol base 0) from 0 to 255. */
int cowio_parse_pattern(const char *arg)
{
    char *end;
    long v = strtol(arg, &end, 0);
    if (v < 0 || v > UCHAR_MAX || *end != '\0') {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return (int)v;
}
