/* seccomp filters per kind of thread (libseccomp), as Firecracker and Cloud
 * Hypervisor install them. Filters stack: a thread keeps what its creator
 * installed and adds its own, so the strictest applies.
 *
 * The main loops (VMM, NBD server) deny what a compromised VMM would use to
 * leave its box: new programs, other processes' memory, mounts, modules,
 * namespaces, BPF, keyrings, raw sockets. vCPU threads and I/O workers allow
 * only the calls their work needs (guest I/O, KVM_RUN, futexes, memory).
 * A forbidden call traps; the handler names it and the thread kind on
 * standard error and ends the process, so it never goes unnoticed. */
#include "util/sandbox.h"

#include <errno.h>
#include <linux/kvm.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static bool enabled = true;
static bool credential_change;
static __thread const char *thread_kind = "main";
static __thread int entered = -1;      /* the kind this thread entered, -1: none */

void sandbox_set_enabled(bool on)
{
    enabled = on;
}

bool sandbox_is_enabled(void)
{
    return enabled;
}

void sandbox_allow_credential_change(void)
{
    credential_change = true;
}

/* glibc's setuid and friends make every thread issue the call itself. */
static const int credential_calls[] = {
    SCMP_SYS(setuid), SCMP_SYS(setgid), SCMP_SYS(setgroups), SCMP_SYS(setresuid), SCMP_SYS(setresgid),
    SCMP_SYS(setreuid), SCMP_SYS(setregid),
};

static const char *const kind_names[] = {
    [SANDBOX_VMM_MAIN] = "main loop", [SANDBOX_VCPU] = "vCPU",
    [SANDBOX_IO_WORKER] = "I/O worker", [SANDBOX_NBD] = "NBD server",
};

/* Async-signal-safe: write(2) and static strings only. */
static void put(const char *s)
{
    ssize_t ignored = write(STDERR_FILENO, s, strlen(s));
    (void)ignored;
}

static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
    char num[16];
    int nr = info->si_syscall, i = (int)sizeof(num) - 1;
    num[i] = 0;
    do {
        num[--i] = (char)('0' + nr % 10);
        nr /= 10;
    } while (nr && i > 0);
    char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, info->si_syscall);
    put("cowvisor sandbox: forbidden system call ");
    put(name ? name : "?");
    put(" (");
    put(num + i);
    put(") in a ");
    put(thread_kind);
    put(" thread; the process ends (--sandbox off disables the sandbox)\n");
    _exit(128 + SIGSYS);
}

static int install_handler(struct error *err)
{
    struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0) {
        return error_set_errno(err, -errno, "Could not install the SIGSYS handler");
    }
    return 0;
}

/* Leaving the box: never needed by a VMM or an NBD server once running. */
static const int denied_everywhere[] = {
    SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(fork), SCMP_SYS(vfork),
    SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev), SCMP_SYS(mount),
    SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot), SCMP_SYS(init_module),
    SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load), SCMP_SYS(reboot), SCMP_SYS(swapon), SCMP_SYS(swapoff),
    SCMP_SYS(bpf), SCMP_SYS(perf_event_open), SCMP_SYS(keyctl), SCMP_SYS(add_key),
    SCMP_SYS(request_key), SCMP_SYS(setns), SCMP_SYS(unshare), SCMP_SYS(personality),
    SCMP_SYS(acct), SCMP_SYS(setuid), SCMP_SYS(setgid), SCMP_SYS(setreuid),
    SCMP_SYS(setregid), SCMP_SYS(setresuid), SCMP_SYS(setresgid), SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at), SCMP_SYS(iopl), SCMP_SYS(ioperm), SCMP_SYS(syslog),
    SCMP_SYS(quotactl), SCMP_SYS(settimeofday), SCMP_SYS(clock_settime), SCMP_SYS(adjtimex),
    SCMP_SYS(lookup_dcookie), SCMP_SYS(fanotify_init), SCMP_SYS(pidfd_getfd),
};

/* What every thread of ours does: memory, threads, time, signals, futexes,
 * reading and writing descriptors it was given, logging. */
static const int allowed_base[] = {
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(close),
    SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
    SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(lseek), SCMP_SYS(fstat), SCMP_SYS(newfstatat),
    SCMP_SYS(statx), SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(fallocate),
    SCMP_SYS(ftruncate), SCMP_SYS(fcntl), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap),
    SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(futex),
    SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity),
    SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(tgkill), SCMP_SYS(getrandom),
    SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday),
    SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigaction), SCMP_SYS(sigaltstack),
    SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(restart_syscall), SCMP_SYS(prctl),
    SCMP_SYS(eventfd2), SCMP_SYS(timerfd_settime), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(sendmsg),
    SCMP_SYS(recvmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(getsockopt),
    SCMP_SYS(dup), SCMP_SYS(membarrier), SCMP_SYS(readlink), SCMP_SYS(uname),
};

static int add_rules(scmp_filter_ctx ctx, const int *calls, size_t n, uint32_t action)
{
    for (size_t i = 0; i < n; i++) {
        int ret = seccomp_rule_add(ctx, action, calls[i], 0);
        if (ret < 0 && ret != -EEXIST) {
            return ret;
        }
    }
    return 0;
}

/* Threads, not processes: clone without CLONE_THREAD traps; clone3 (whose
 * flags live in memory seccomp cannot read) says ENOSYS, and glibc falls
 * back to clone. */
static int allow_threads_only(scmp_filter_ctx ctx)
{
    int ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (ret == 0) {
        ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    }
    return ret;
}

/* LeakSanitizer checks for leaks at exit from a task it clones with
 * CLONE_VM but not CLONE_THREAD, which ptraces the threads. A sanitized
 * build (the test suite's) lets that happen in the main loops, or every
 * sandboxed exit would die of SIGSYS instead of checking for leaks; a
 * fork (no CLONE_VM) still traps. Release builds trap both. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif

static int deny_processes(scmp_filter_ctx ctx)
{
#ifdef SANITIZER_BUILD
    const uint64_t shared = CLONE_THREAD | CLONE_VM;
#else
    const uint64_t shared = CLONE_THREAD;
    int ret = seccomp_rule_add(ctx, SCMP_ACT_TRAP, SCMP_SYS(ptrace), 0);
    if (ret < 0) {
        return ret;
    }
#endif
    return seccomp_rule_add(ctx, SCMP_ACT_TRAP, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, shared, 0));
}

static scmp_filter_ctx build(enum sandbox_kind kind, int *ret)
{
    bool main_loop = kind == SANDBOX_VMM_MAIN || kind == SANDBOX_NBD;
    scmp_filter_ctx ctx = seccomp_init(main_loop ? SCMP_ACT_ALLOW : SCMP_ACT_TRAP);
    if (!ctx) {
        *ret = -ENOMEM;
        return NULL;
    }
    if (main_loop) {
        *ret = add_rules(ctx, denied_everywhere, sizeof(denied_everywhere) / sizeof(int),
                         SCMP_ACT_TRAP);
        if (*ret == 0) {
            *ret = deny_processes(ctx);
        }
        if (*ret == 0) {
            *ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        }
        return ctx;
    }
    *ret = add_rules(ctx, allowed_base, sizeof(allowed_base) / sizeof(int), SCMP_ACT_ALLOW);
    if (*ret == 0) {
        *ret = allow_threads_only(ctx);
    }
    if (*ret == 0 && credential_change) {
        *ret = add_rules(ctx, credential_calls, sizeof(credential_calls) / sizeof(int), SCMP_ACT_ALLOW);
    }
    if (*ret == 0 && kind == SANDBOX_VCPU) {
        /* KVM_RUN and the register ioctls; devices answer MMIO exits here. */
        *ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 0);
    }
    if (*ret == 0 && kind == SANDBOX_IO_WORKER) {
        /* A completion raises a level-triggered line (virtio-pci INTx when
         * the guest runs without MSI-X): that ioctl only. */
        *ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, KVM_IRQ_LINE));
    }
    return ctx;
}

int sandbox_enter(enum sandbox_kind kind, struct error *err)
{
    if (!enabled || entered == (int)kind) {
        return 0;       /* a filter twice would only cost time on every call */
    }
    thread_kind = kind_names[kind];
    entered = (int)kind;
    int ret = install_handler(err);
    if (ret < 0) {
        return ret;
    }
    scmp_filter_ctx ctx = build(kind, &ret);
    if (ret == 0) {
        ret = seccomp_load(ctx);    /* this thread only: no TSYNC */
    }
    seccomp_release(ctx);
    if (ret < 0) {
        return error_set_errno(err, ret, "Could not install the %s sandbox", kind_names[kind]);
    }
    return 0;
}
