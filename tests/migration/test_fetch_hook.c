/* Post-copy's fetch hook (vmm/guest_memory_view.c) against its release: a
 * vCPU that read the hook just before post-copy ended must not run on in
 * an object the release lets go. The interleaving is forced: the caller
 * stays inside the hook until the releasing thread either returned (the
 * bug: it then frees the hook's object under the caller, which ASan
 * reports) or sleeps waiting for it (read from /proc). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/guest_memory.h"

struct hooked {
    int magic;
};

struct race {
    struct guest_memory mem;
    struct hooked *obj;
    int clearer_tid;            /* atomic */
    int clearing;               /* atomic: the clearer is about to clear */
    int cleared;                /* atomic: the clear returned (and freed obj) */
    int entered;                /* atomic: the caller is inside the hook */
    int seen_inside;            /* the caller saw the clear return while inside */
    int magic_read;
};

static struct race *the_race;

/* The clearer's scheduler state: 'S' while it sleeps (in the futex). */
static char thread_state(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return '?';
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' ? close_paren[2] : '?';
}

static int slow_hook(void *opaque, uint64_t gpa)
{
    struct race *r = the_race;
    __atomic_store_n(&r->entered, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&r->clearing, __ATOMIC_SEQ_CST)) {
        sched_yield();
    }
    for (;;) {
        if (__atomic_load_n(&r->cleared, __ATOMIC_SEQ_CST)) {
            r->seen_inside = 1;
            break;
        }
        if (thread_state(__atomic_load_n(&r->clearer_tid, __ATOMIC_SEQ_CST)) == 'S') {
            break;
        }
        sched_yield();
    }
    r->magic_read = ((struct hooked *)opaque)->magic;      /* freed here without the wait */
    return gpa == 4096 ? 0 : -EINVAL;
}

static void *caller_main(void *opaque)
{
    struct race *r = opaque;
    return (void *)(intptr_t)guest_memory_fetch(&r->mem, 4096);
}

static void *clearer_main(void *opaque)
{
    struct race *r = opaque;
    __atomic_store_n(&r->clearer_tid, (int)gettid(), __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->clearing, 1, __ATOMIC_SEQ_CST);
    guest_memory_set_fetch(&r->mem, NULL, NULL);
    free(r->obj);                                       /* what release_view's caller does next */
    r->obj = NULL;
    __atomic_store_n(&r->cleared, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_clear_waits_for_caller_inside(void **state)
{
    struct race r = { 0 };
    the_race = &r;
    r.obj = malloc(sizeof(*r.obj));
    r.obj->magic = 0x5eed;
    guest_memory_set_fetch(&r.mem, slow_hook, r.obj);
    pthread_t caller, clearer;
    void *ret;
    assert_int_equal(pthread_create(&caller, NULL, caller_main, &r), 0);
    while (!__atomic_load_n(&r.entered, __ATOMIC_SEQ_CST)) {
        sched_yield();
    }
    assert_int_equal(pthread_create(&clearer, NULL, clearer_main, &r), 0);
    pthread_join(caller, &ret);
    pthread_join(clearer, NULL);
    assert_int_equal(r.seen_inside, 0);
    assert_int_equal(r.magic_read, 0x5eed);
    assert_int_equal((int)(intptr_t)ret, 0);
    /* Cleared: a later caller gets no page, and no call. */
    assert_int_equal(guest_memory_fetch(&r.mem, 4096), -EFAULT);
    assert_null(r.mem.fetch_opaque);
}

static int plain_hook(void *opaque, uint64_t gpa)
{
    ++*(int *)opaque;
    return 0;
}

/* With nobody inside, a clear returns at once; the hook can be set again. */
static void test_clear_and_set_again(void **state)
{
    struct guest_memory mem = { 0 };
    int calls = 0;
    assert_int_equal(guest_memory_fetch(&mem, 0), -EFAULT);
    guest_memory_set_fetch(&mem, plain_hook, &calls);
    assert_int_equal(guest_memory_fetch(&mem, 0), 0);
    guest_memory_set_fetch(&mem, NULL, NULL);
    guest_memory_set_fetch(&mem, NULL, NULL);
    assert_int_equal(guest_memory_fetch(&mem, 0), -EFAULT);
    guest_memory_set_fetch(&mem, plain_hook, &calls);
    assert_int_equal(guest_memory_fetch(&mem, 0), 0);
    assert_int_equal(calls, 2);
    assert_int_equal(mem.fetch_callers, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clear_waits_for_caller_inside),
        cmocka_unit_test(test_clear_and_set_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
