/* The progress line qemu-img -p prints: "    (12.34/100%)\r". */
#ifndef UTIL_PROGRESS_H
#define UTIL_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct progress {
    bool enabled;
    FILE *out;
    uint64_t total, done;
    double last_printed;    /* percent shown last, so we print only on change */
    pthread_mutex_t lock;   /* convert workers report from several threads */
};

void progress_init(struct progress *p, bool enabled, uint64_t total);
/* Adds work done; safe to call from several threads. */
void progress_add(struct progress *p, uint64_t done);
void progress_set_total(struct progress *p, uint64_t total);
/* Sets done and total at once, for work whose total grows as it goes: the
 * line may move back (qemu-img amend's walks over the refcount table). */
void progress_set(struct progress *p, uint64_t done, uint64_t total);
/* Prints 100% and the final newline. */
void progress_finish(struct progress *p);

#endif
