/* vCPU throttling, as QEMU's auto-converge does it: a guest that dirties
 * memory faster than a migration can send it gets less CPU. A kicker
 * thread marks every vCPU every 10 ms and kicks it out of KVM_RUN; the
 * vCPU thread then sleeps pct/(100-pct) of the slice before it runs again.
 * The sleep waits on the VM's condition, so a pause or a stop is not held
 * up by it. */
#include "vmm/vm.h"

#include <errno.h>
#include <time.h>

#define SLICE_NS 10000000ll

static void *kicker_main(void *opaque)
{
    struct vm *vm = opaque;
    struct timespec slice = { 0, SLICE_NS };
    while (__atomic_load_n(&vm->throttle_pct, __ATOMIC_ACQUIRE) > 0) {
        nanosleep(&slice, NULL);
        pthread_mutex_lock(&vm->lock);
        /* vm_stop sets stopping under the lock before it joins: never kick
         * a thread being joined. */
        for (int i = 0; !vm->stopping && i < vm->ncpus; i++) {
            struct vcpu *c = &vm->vcpus[i];
            if (c->thread_started) {
                __atomic_store_n(&c->throttle_due, true, __ATOMIC_RELEASE);
                vcpu_kick(c);
            }
        }
        pthread_mutex_unlock(&vm->lock);
    }
    return NULL;
}

int vm_throttle_set(struct vm *vm, int percent, struct error *err)
{
    percent = percent < 0 ? 0 : percent > 99 ? 99 : percent;
    __atomic_store_n(&vm->throttle_pct, percent, __ATOMIC_RELEASE);
    if (percent == 0 && vm->throttle_running) {
        pthread_join(vm->throttle_thread, NULL);
        vm->throttle_running = false;
    } else if (percent > 0 && !vm->throttle_running && vm->ncpus > 0) {
        int ret = pthread_create(&vm->throttle_thread, NULL, kicker_main, vm);
        if (ret != 0) {
            __atomic_store_n(&vm->throttle_pct, 0, __ATOMIC_RELEASE);
            return error_set_errno(err, -ret, "starting the vCPU throttle");
        }
        vm->throttle_running = true;
    }
    return 0;
}

void vcpu_throttle_sleep(struct vcpu *c)
{
    struct vm *vm = c->vm;
    if (!__atomic_exchange_n(&c->throttle_due, false, __ATOMIC_ACQ_REL)) {
        return;
    }
    long long pct = __atomic_load_n(&vm->throttle_pct, __ATOMIC_ACQUIRE);
    if (pct <= 0) {
        return;
    }
    long long ns = SLICE_NS * pct / (100 - pct);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)((until.tv_nsec + ns) / 1000000000ll);
    until.tv_nsec = (long)((until.tv_nsec + ns) % 1000000000ll);
    pthread_mutex_lock(&vm->lock);
    while (!vm->pause_wanted && !vm->stopping &&
           pthread_cond_timedwait(&vm->cond, &vm->lock, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&vm->lock);
}
