/* How post-copy's threads ask the scheduler for what they need. A vCPU
 * that touches a missing page waits for four wakeups in a row (the fault
 * thread, the source's return path, the thread placing the page, the
 * vCPU itself); on a busy host each one queues behind whatever runs,
 * for up to a whole time slice (milliseconds), so those threads ask for
 * a short slice: the fair scheduler (EEVDF, Linux 6.12 and later) then
 * lets a waking thread with a short slice preempt the running one. Needs
 * no privilege; older kernels ignore the slice, and nothing fails. The
 * bulk stream's threads step back instead (nice +10). */
#include "migration/migration_wire.h"

#include <linux/sched.h>
#include <linux/sched/types.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"

/* The shortest slice the kernel grants (0.1 ms). */
#define LATENCY_SLICE_NS 100000ull

void mig_thread_background(void)
{
    /* Raising one's own nice value needs no privilege; failing costs only latency. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) < 0) {
        log_debug("post-copy: cannot lower the bulk thread's priority");
    }
}

void mig_thread_latency(void)
{
    struct sched_attr a = { .size = sizeof(a), .sched_policy = SCHED_NORMAL, .sched_runtime = LATENCY_SLICE_NS };
    if (syscall(SYS_sched_setattr, 0, &a, 0) < 0) {
        log_debug("post-copy: no short time slice for a latency-critical thread");
    }
}
