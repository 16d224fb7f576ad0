/* Error reporting: functions return a negative errno and fill a message
 * that the caller (ultimately the program's main) prints. */
#ifndef UTIL_ERROR_H
#define UTIL_ERROR_H

#include <stdarg.h>

struct error {
    int code;           /* negative errno, 0 when no error was set */
    char msg[1024];
};

/* All setters accept err == NULL (the caller does not want the text)
 * and return code, so that `return error_set(err, -EINVAL, ...)` reads well. */
int error_set(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like error_set, then appends ": <strerror(-code)>". */
int error_set_errno(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "<prefix>: " to an already set message. */
void error_prefix(struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void error_clear(struct error *err);

#endif
