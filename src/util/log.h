/* Logging to stderr (or syslog). The level comes from COWVISOR_LOG (error, warn, info,
 * debug); the default is warn so tools stay quiet like their QEMU peers. */
#ifndef UTIL_LOG_H
#define UTIL_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
/* From now on, messages go to syslog (as ident) instead of stderr. */
void log_to_syslog(const char *ident);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
