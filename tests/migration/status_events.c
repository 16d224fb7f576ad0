/* The MIGRATION events of one side: status_events.h. */
#include "status_events.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pauses;
    bool ended;
} events = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false };

void status_events_hook(void *opaque, enum migration_status st)
{
    pthread_mutex_lock(&events.lock);
    events.pauses += st == MIGRATION_POSTCOPY_PAUSED;
    events.ended |= st == MIGRATION_COMPLETED || st == MIGRATION_FAILED || st == MIGRATION_CANCELLED;
    pthread_cond_broadcast(&events.cond);
    pthread_mutex_unlock(&events.lock);
}

void status_events_reset(void)
{
    pthread_mutex_lock(&events.lock);
    events.pauses = 0;
    events.ended = false;
    pthread_mutex_unlock(&events.lock);
}

int status_events_wait(int seen, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);      /* the condition's clock */
    unsigned long long ns = (unsigned long long)until.tv_nsec + (unsigned long long)ms * 1000000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&events.lock);
    int ret = 0;
    while (!events.ended && events.pauses <= seen && ret == 0) {
        ret = pthread_cond_timedwait(&events.cond, &events.lock, &until);
    }
    int out = events.ended ? 1 : events.pauses > seen ? 0 : -1;
    pthread_mutex_unlock(&events.lock);
    return out;
}
