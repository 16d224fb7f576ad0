/* What cowio prints: byte counts in qemu-io's units, the statistics line,
 * hex dumps, and the deferred reports of aio requests. */
#include <ctype.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_io/qemu_io.h"

const char *cowio_progname = "qemu-io";

void cowio_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cowio_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* "512 bytes", "64 KiB", "1.500 MiB": three decimals unless they are zeros. */
void cowio_cvtstr(double value, char *str, size_t size)
{
    static const char *const units[] = { " KiB", " MiB", " GiB", " TiB", " PiB", " EiB" };
    int unit = -1;
    double scaled = value;
    for (int i = 5; i >= 0; i--) {
        double step = (double)(1ULL << (10 * (i + 1)));
        if (value >= step) {
            unit = i;
            scaled = value / step;
            break;
        }
    }
    char num[64];
    if (unit < 0) {
        snprintf(num, sizeof(num), "%f", value);
    } else {
        snprintf(num, sizeof(num), "%.3f", scaled);
    }
    char *zeros = strstr(num, ".000");
    if (zeros) {
        *zeros = '\0';
    }
    snprintf(str, size, "%s%s", num, unit < 0 ? " bytes" : units[unit]);
}

static void format_time(const struct timespec *t, char *buf, size_t size, bool fixed)
{
    unsigned hours = (unsigned)(t->tv_sec / 3600);
    unsigned minutes = (unsigned)(t->tv_sec % 3600 / 60);
    double seconds = (double)(t->tv_sec % 60) + (double)t->tv_nsec / 1e9;
    if (fixed || t->tv_sec) {
        snprintf(buf, size, "%u:%02u:%05.2f", hours, minutes, seconds);
    } else {
        snprintf(buf, size, "%05.2f sec", seconds);
    }
}

static double per_second(double value, const struct timespec *t)
{
    return value / ((double)t->tv_sec + (double)t->tv_nsec / 1e9);
}

void cowio_print_report(FILE *out, const char *op, const struct timespec *elapsed, int64_t offset,
                        int64_t count, int64_t total, int ops, bool machine)
{
    char ts[64];
    format_time(elapsed, ts, sizeof(ts), machine);
    if (machine) {
        fprintf(out, "%" PRId64 ",%d,%s,%.3f,%.3f\n", total, ops, ts,
               per_second((double)total, elapsed), per_second(ops, elapsed));
        return;
    }
    char bytes[64], rate[64];
    cowio_cvtstr((double)total, bytes, sizeof(bytes));
    cowio_cvtstr(per_second((double)total, elapsed), rate, sizeof(rate));
    fprintf(out, "%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", op, total, count, offset);
    fprintf(out, "%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", bytes, ops, ts, rate,
           per_second(ops, elapsed));
}

void cowio_dump_buffer(FILE *out, const void *buf, int64_t offset, int64_t len)
{
    const uint8_t *p = buf;
    for (int64_t line = 0; line < len; line += 16) {
        int n = len - line < 16 ? (int)(len - line) : 16;
        fprintf(out, "%08" PRIx64 ":  ", (uint64_t)(offset + line));
        for (int i = 0; i < n; i++) {
            fprintf(out, "%02x ", p[line + i]);
        }
        fputc(' ', out);
        for (int i = 0; i < n; i++) {
            fputc(isalnum(p[line + i]) ? p[line + i] : '.', out);
        }
        fputc('\n', out);
    }
}

struct timespec cowio_elapsed(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    now.tv_sec -= start->tv_sec;
    now.tv_nsec -= start->tv_nsec;
    if (now.tv_nsec < 0) {
        now.tv_nsec += 1000000000L;
        now.tv_sec--;
    }
    return now;
}

static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

void cowio_defer(struct cowio *io, const char *fmt, ...)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    /* qemu completes finished requests newest first (its bottom halves and
     * thread pool completions are LIFO lists), so the reports stack up.
     * A request on its own thread is one qemu's coroutine held up (stopped
     * at a breakpoint, or waiting for another request's allocation): its
     * callback runs as it completes, after those, in completion order. */
    struct cowio_pending *p = calloc(1, sizeof(*p));
    p->text = text;
    pthread_mutex_lock(&pending_lock);     /* aio threads queue reports too */
    struct cowio_pending **link = &io->pending;
    while (cowio_aio_on_thread() && *link) {
        link = &(*link)->next;
    }
    p->next = *link;
    *link = p;
    pthread_mutex_unlock(&pending_lock);
}

void cowio_drain(struct cowio *io)
{
    cowio_aio_join(io, false);
    while (io->pending) {
        struct cowio_pending *p = io->pending;
        io->pending = p->next;
        fputs(p->text, stdout);
        free(p->text);
        free(p);
    }
}

#define BUF_ALIGN 4096
#define MISALIGN_BY 16

/* One freed buffer is kept for the next command: a trace of 128 KiB reads
 * otherwise maps, faults in and unmaps each buffer (glibc serves blocks
 * this large with mmap), which cost more than the reads. Aio commands
 * allocate and free on their own threads. */
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static void *spare;

static void *take_spare(size_t size)
{
    pthread_mutex_lock(&spare_lock);
    void *p = spare && malloc_usable_size(spare) >= size ? spare : NULL;
    if (p) {
        spare = NULL;
    }
    pthread_mutex_unlock(&spare_lock);
    return p;
}

void *cowio_alloc(struct cowio *io, size_t len, int fill)
{
    size_t extra = io->misalign ? MISALIGN_BY : 0;
    size_t size = len + extra ? len + extra : 1;
    void *p = take_spare(size);
    if (!p && posix_memalign(&p, BUF_ALIGN, size) != 0) {
        return NULL;
    }
    memset(p, fill, len + extra);
    return (uint8_t *)p + extra;
}

void cowio_free(struct cowio *io, void *buf)
{
    if (!buf) {
        return;
    }
    void *p = (uint8_t *)buf - (io->misalign ? MISALIGN_BY : 0);
    pthread_mutex_lock(&spare_lock);
    if (!spare || malloc_usable_size(spare) < malloc_usable_size(p)) {
        void *smaller = spare;      /* the larger one serves more commands */
        spare = p;
        p = smaller;
    }
    pthread_mutex_unlock(&spare_lock);
    free(p);
}

void cowio_free_spare(void)
{
    pthread_mutex_lock(&spare_lock);
    free(spare);
    spare = NULL;
    pthread_mutex_unlock(&spare_lock);
}
