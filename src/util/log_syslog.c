/* The syslog sink of util/log.c, in a file of its own: <syslog.h>'s
 * LOG_INFO and LOG_DEBUG macros would clash with log.h's levels. */
#include <stdarg.h>
#include <syslog.h>

void log_syslog_open(const char *ident);
void log_syslog_write(int severity, const char *fmt, va_list ap);

void log_syslog_open(const char *ident)
{
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* severity: log.h's level (error, warn, info, debug). */
void log_syslog_write(int severity, const char *fmt, va_list ap)
{
    static const int priorities[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    vsyslog(priorities[severity & 3], fmt, ap);
}
