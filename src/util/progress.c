#include "util/progress.h"

static void progress_print(struct progress *p, double percent)
{
    fprintf(p->out, "    (%3.2f/100%%)\r", percent);
    fflush(p->out);
    p->last_printed = percent;
}

void progress_init(struct progress *p, bool enabled, uint64_t total)
{
    p->enabled = enabled;
    p->out = stdout;
    p->total = total;
    p->done = 0;
    p->last_printed = -1;
    pthread_mutex_init(&p->lock, NULL);
    if (enabled) {
        progress_print(p, 0);
    }
}

void progress_set_total(struct progress *p, uint64_t total)
{
    pthread_mutex_lock(&p->lock);
    p->total = total;
    pthread_mutex_unlock(&p->lock);
}

void progress_set(struct progress *p, uint64_t done, uint64_t total)
{
    pthread_mutex_lock(&p->lock);
    p->done = done;
    p->total = total;
    if (p->enabled && total) {
        double percent = 100.0 * (double)done / (double)total;
        /* qemu_progress_print's rule: a change of more than 1% either way */
        if (percent > p->last_printed + 1.0 || percent < p->last_printed - 1.0) {
            progress_print(p, percent);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void progress_add(struct progress *p, uint64_t done)
{
    pthread_mutex_lock(&p->lock);
    p->done += done;
    if (p->enabled && p->total) {
        double percent = 100.0 * (double)p->done / (double)p->total;
        if (percent > 100.0) {
            percent = 100.0;
        }
        /* Redraw at most every 1%, as the line is for people. */
        if (percent - p->last_printed >= 1.0) {
            progress_print(p, percent);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void progress_finish(struct progress *p)
{
    if (p->enabled) {
        progress_print(p, 100.0);
        fputc('\n', p->out);
    }
    pthread_mutex_destroy(&p->lock);
}
