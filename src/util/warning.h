/* What the library has to tell a person while it carries on: a repair it
 * made, an image it marked corrupt, a flush that failed at close, a check's
 * findings. These are not a call's errors (those return through struct
 * error); they go to the one sink the program chose. The tools print them
 * on stderr in their QEMU peers' exact bytes; cowvisor, which may run as a
 * daemon with --log syslog, hands them to its logger. Until a program
 * chooses, they go to the logger (never silently to a daemon's stderr). */
#ifndef UTIL_WARNING_H
#define UTIL_WARNING_H

#include <stdarg.h>

/* text: the bytes a terminal would show, newlines included (a message
 * may span lines, or, as some of QEMU's, end without a newline). */
typedef void warning_sink(const char *text, void *opaque);

/* Set once at start, before threads that may warn. */
void warning_set_sink(warning_sink *sink, void *opaque);
/* The tools' sink: the text on stderr as it is. */
void warning_sink_stderr(const char *text, void *opaque);
/* The logger's sink: each line a log_warn. */
void warning_sink_log(const char *text, void *opaque);

/* Formats the text and hands it to the sink. */
void warning_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warning_vprint(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
