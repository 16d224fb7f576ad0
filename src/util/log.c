#include "util/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int current_level = -1;
static bool use_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static enum log_level level_from_env(void)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    const char *env = getenv("COWVISOR_LOG");
    if (env) {
        for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (strcmp(env, names[i]) == 0) {
                return (enum log_level)i;
            }
        }
    }
    return LOG_WARN;
}

/* log_syslog.c: apart, as <syslog.h> defines LOG_INFO and LOG_DEBUG. */
void log_syslog_open(const char *ident);
void log_syslog_write(int severity, const char *fmt, va_list ap);

void log_to_syslog(const char *ident)
{
    log_syslog_open(ident);
    use_syslog = true;
}

void log_set_level(enum log_level level)
{
    current_level = (int)level;
}

enum log_level log_get_level(void)
{
    if (current_level < 0) {
        current_level = (int)level_from_env();
    }
    return (enum log_level)current_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const tags[] = { "error", "warning", "info", "debug" };
    if (level > log_get_level()) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (use_syslog) {
        log_syslog_write((int)level, fmt, ap);
        va_end(ap);
        return;
    }
    /* One lock so that lines from vcpu and I/O threads do not interleave. */
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s: ", tags[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
    va_end(ap);
}
