/* qemu-io's aio requests normally complete as they are issued (their
 * reports wait for the next drain). While a blkdebug breakpoint is armed, or
 * a request is stopped at one, each runs on its own thread instead, so that
 * a request can stay stopped in the block layer while later commands run:
 * QEMU's coroutines, as qemu-io's break/wait_break/resume drive them. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "block/blkdebug.h"
#include "block/blockdev.h"
#include "qemu_io/qemu_io.h"

struct cowio_aio {
    struct cowio_aio *next;
    pthread_t thread;
    struct cowio *io;
    const struct cowio_cmd *ct;
    int argc;
    char **argv;            /* our copy */
    bool started, done;     /* under lock */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static __thread struct cowio_aio *self;

static void set_flag(bool *flag)
{
    pthread_mutex_lock(&lock);
    *flag = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

void cowio_aio_begin(void)
{
    if (self) {
        set_flag(&self->started);   /* parsed: the command loop may go on */
    }
}

bool cowio_aio_on_thread(void)
{
    return self != NULL;
}

static void *aio_main(void *opaque)
{
    struct cowio_aio *a = opaque;
    self = a;
    a->ct->func(a->io, a->argc, a->argv);
    set_flag(&a->done);
    return NULL;
}

bool cowio_aio_wanted(struct cowio *io)
{
    struct blkdebug *d = io->bd ? blockdev_blkdebug(io->bd) : NULL;
    return d && (io->aio || blkdebug_has_breakpoints(d));
}

static bool is_done(void *opaque)
{
    struct cowio_aio *a = opaque;
    pthread_mutex_lock(&lock);
    bool done = a->done;
    pthread_mutex_unlock(&lock);
    return done;
}

bool cowio_aio_all_done(void *opaque)
{
    struct cowio *io = opaque;
    bool done = true;
    for (struct cowio_aio *a = io->aio; a && done; a = a->next) {
        done = is_done(a);
    }
    return done;
}

int cowio_aio_spawn(struct cowio *io, const struct cowio_cmd *ct, int argc, char **argv)
{
    struct cowio_aio *a = calloc(1, sizeof(*a));
    a->io = io;
    a->ct = ct;
    a->argc = argc;
    a->argv = calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        a->argv[i] = strdup(argv[i]);
    }
    struct blkdebug *d = blockdev_blkdebug(io->bd);
    bool armed = blkdebug_has_breakpoints(d);
    a->next = io->aio;
    io->aio = a;
    pthread_create(&a->thread, NULL, aio_main, a);
    /* It parses its arguments alone (getopt is not thread-safe) ... */
    pthread_mutex_lock(&lock);
    while (!a->started && !a->done) {
        pthread_cond_wait(&changed, &lock);
    }
    pthread_mutex_unlock(&lock);
    /* ... and runs to its breakpoint, as a coroutine runs to its first stop. */
    if (armed) {
        blkdebug_wait_suspended(d, NULL, is_done, a);
    }
    return 0;
}

void cowio_aio_join(struct cowio *io, bool resume)
{
    struct blkdebug *d = io->bd ? blockdev_blkdebug(io->bd) : NULL;
    if (resume && d) {
        blkdebug_resume_all(d);    /* closing: nobody is left to resume them */
    }
    while (io->aio) {
        struct cowio_aio *a = io->aio;
        io->aio = a->next;
        pthread_join(a->thread, NULL);
        for (int i = 0; i < a->argc; i++) {
            free(a->argv[i]);
        }
        free(a->argv);
        free(a);
    }
}
