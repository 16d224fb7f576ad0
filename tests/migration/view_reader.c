/* See view_reader.h. The handler only records the address and jumps back:
 * the fetch (a mutex, a send, a futex) runs outside it. */
#include "view_reader.h"

#include <setjmp.h>
#include <signal.h>
#include <stddef.h>

static __thread sigjmp_buf *volatile miss_jmp;     /* volatile: the handler reads it */
static __thread volatile uintptr_t miss_addr;
static struct sigaction other_sigbus;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    if (miss_jmp) {
        miss_addr = (uintptr_t)si->si_addr;
        siglongjmp(*miss_jmp, 1);
    }
    if (other_sigbus.sa_flags & SA_SIGINFO) {
        other_sigbus.sa_sigaction(sig, si, uc);     /* not a view's miss */
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void view_reader_install(void)
{
    struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
    struct sigaction old;
    sigaction(SIGBUS, &sa, &old);
    if (old.sa_sigaction != on_sigbus) {
        other_sigbus = old;
    }
}

int view_read(struct migration_dest *d, uint64_t gpa, unsigned *fetched)
{
    uint64_t page = gpa & ~4095ull;
    uint8_t *view = migration_dest_view(d, page);
    sigjmp_buf env;
    if (!view) {
        return -1;
    }
    volatile uint8_t *p = view + (gpa - page);
    if (sigsetjmp(env, 1)) {
        miss_jmp = NULL;
        ++*fetched;
        if (migration_dest_fetch(d, gpa) < 0) {
            return -1;
        }
    }
    miss_jmp = &env;
    uint8_t v = *p;
    miss_jmp = NULL;
    return v;
}
