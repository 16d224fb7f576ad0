/* See qmp_json_u64.h. The mark is U+0001, "u64:", a per-process random tag
 * and the digits: a client's own strings echoed back cannot carry the tag,
 * so no text of theirs turns into a number. The number is shorter than
 * its marked string: the text is rewritten in place. */
#include "qmp_json_u64.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static char mark_tag[24];       /* "u64:" and 16 hex digits, then ':' */

static const char *tag(void)
{
    if (!mark_tag[0]) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
            r = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&r;
        }
        snprintf(mark_tag, sizeof(mark_tag), "u64:%016" PRIx64 ":", r);
    }
    return mark_tag;
}

json_t *qmp_json_u64(uint64_t v)
{
    if (v <= INT64_MAX) {
        return json_integer((json_int_t)v);
    }
    char s[64];
    snprintf(s, sizeof(s), "\x01%s%" PRIu64, tag(), v);
    return json_string(s);
}

char *qmp_json_dumps(const json_t *j, size_t flags)
{
    char *text = json_dumps(j, flags);
    if (!text || !mark_tag[0]) {
        return text;
    }
    char open[48];
    int olen = snprintf(open, sizeof(open), "\"\\u0001%s", mark_tag);
    for (char *p = strstr(text, open); p; p = strstr(p, open)) {
        char *digits = p + olen, *end = digits + strspn(digits, "0123456789");
        if (*end != '"') {
            p = end;        /* not one of ours after all */
            continue;
        }
        size_t n = (size_t)(end - digits);
        memmove(p, digits, n);
        memmove(p + n, end + 1, strlen(end + 1) + 1);
        p += n;
    }
    return text;
}
