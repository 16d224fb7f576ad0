#include "util/error.h"

#include <stdio.h>
#include <string.h>

static void error_vset(struct error *err, int code, const char *fmt, va_list ap)
{
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int error_set(struct error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, code, fmt, ap);
        va_end(ap);
    }
    return code;
}

int error_set_errno(struct error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, code, fmt, ap);
        va_end(ap);
        size_t len = strlen(err->msg);
        snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", strerror(-code));
    }
    return code;
}

void error_prefix(struct error *err, const char *fmt, ...)
{
    if (!err) {
        return;
    }
    char prefix[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof(prefix) - 2, fmt, ap);
    va_end(ap);
    size_t plen = n < 0 ? 0 : strlen(prefix);
    memcpy(prefix + plen, ": ", 3);
    plen += 2;
    /* Shift the old message right (truncating its end) and put the prefix before it. */
    size_t old_len = strnlen(err->msg, sizeof(err->msg) - 1);
    if (plen + old_len > sizeof(err->msg) - 1) {
        old_len = sizeof(err->msg) - 1 > plen ? sizeof(err->msg) - 1 - plen : 0;
    }
    memmove(err->msg + plen, err->msg, old_len);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + old_len] = '\0';
}

void error_clear(struct error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
