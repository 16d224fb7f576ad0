/* vCPU throttling, as QEMU's auto-converge does it: a guest that dirties
 * memory faster than a migration can send it gets less CPU. A kicker
 * thread marks every vCPU once a period and kicks it out of KVM_RUN; the
 * vCPU thread then sleeps its share of the period (vcpu_throttle_cycle)
 * and runs the rest. The sleep waits on the VM's condition, so a pause or
 * a stop is not held up by it. */
#include "vmm/vcpu_throttle.h"
#include "vmm/vm.h"

#include <errno.h>
#include <time.h>

struct vcpu_throttle_cycle vcpu_throttle_cycle(int percent)
{
    percent = percent < 0 ? 0 : percent > 99 ? 99 : percent;
    if (percent == 0) {
        return (struct vcpu_throttle_cycle){ 0, 0 };
    }
    /* A fixed period with a growing sleep would leave no time to run from
     * 50% on: the next kick would come while the vCPU still slept. */
    int64_t period = VCPU_THROTTLE_SLICE_NS * 100 / (100 - percent);
    return (struct vcpu_throttle_cycle){ period, period - VCPU_THROTTLE_SLICE_NS };
}

static void *kicker_main(void *opaque)
{
    struct vm *vm = opaque;
    int pct;
    while ((pct = __atomic_load_n(&vm->throttle_pct, __ATOMIC_ACQUIRE)) > 0) {
        int64_t ns = vcpu_throttle_cycle(pct).period_ns;
        struct timespec period = { (time_t)(ns / 1000000000ll), (long)(ns % 1000000000ll) };
        nanosleep(&period, NULL);
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
    long long ns = vcpu_throttle_cycle(__atomic_load_n(&vm->throttle_pct, __ATOMIC_ACQUIRE)).sleep_ns;
    if (ns <= 0) {
        return;
    }
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
