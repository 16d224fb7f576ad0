#include "util/warning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static warning_sink *current_sink = warning_sink_log;
static void *current_opaque;

void warning_set_sink(warning_sink *sink, void *opaque)
{
    current_sink = sink ? sink : warning_sink_log;
    current_opaque = opaque;
}

void warning_sink_stderr(const char *text, void *opaque)
{
    (void)opaque;
    fputs(text, stderr);
}

void warning_sink_log(const char *text, void *opaque)
{
    (void)opaque;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        log_warn("%.*s", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

void warning_vprint(const char *fmt, va_list ap)
{
    char small[512];
    va_list copy;
    va_copy(copy, ap);
    int len = vsnprintf(small, sizeof(small), fmt, copy);
    va_end(copy);
    if (len < 0) {
        return;
    }
    if ((size_t)len < sizeof(small)) {
        current_sink(small, current_opaque);
        return;
    }
    char *big = malloc((size_t)len + 1);
    if (!big) {
        current_sink(small, current_opaque);    /* cut short rather than lost */
        return;
    }
    vsnprintf(big, (size_t)len + 1, fmt, ap);
    current_sink(big, current_opaque);
    free(big);
}

void warning_print(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    warning_vprint(fmt, ap);
    va_end(ap);
}
