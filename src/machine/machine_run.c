/* The machine's main loop and run state: what the guest asks for (power
 * off, reset, exit codes) arrives from vCPU threads through the VM's
 * eventfd; pause and resume come from the host (a monitor). */
#include "machine/machine_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "util/log.h"
#include "util/sandbox.h"

/* Always asks the devices: a paused machine may have been handed new
 * work since (a load kicks the queues), and quiescing twice is harmless. */
void machine_quiesce(struct machine *m)
{
    device_registry_quiesce(&m->devices);
    m->quiesced = true;
    /* Their last writes to the rings reach a migration's final pass. */
    machine_mark_rings_dirty(m);
}

void machine_unquiesce(struct machine *m)
{
    if (m->quiesced) {
        m->quiesced = false;
        device_registry_resume(&m->devices);
    }
}

enum machine_run_state machine_run_state(const struct machine *m)
{
    return m->run_state;
}

void machine_pause(struct machine *m)
{
    if (m->run_state != MACHINE_RUNNING) {
        return;
    }
    /* vCPUs first: once parked they post no new device work. */
    vm_pause(&m->vm);
    machine_quiesce(m);
    m->run_state = MACHINE_PAUSED;
    machine_emit(m, MACHINE_EVENT_STOP, false);
}

static bool perform_reset(struct machine *m, struct error *err, int *ret);

void machine_resume(struct machine *m)
{
    if (m->run_state != MACHINE_PAUSED || machine_needs_reset(m)) {
        return;
    }
    if (m->memory_lost) {
        /* The reset asked for goes first: no vCPU may run on lost RAM. */
        struct error err = { 0 };
        int ret = 0;
        m->reset_pending = false;
        m->host_reset = true;
        if (!perform_reset(m, &err, &ret)) {
            if (ret < 0) {
                log_error("reset: %s", err.msg);
                m->reset_pending = true;
                m->run_state = MACHINE_PAUSED;
            } else {
                event_loop_stop(&m->loop);      /* --no-reboot */
            }
            return;
        }
    }
    machine_unquiesce(m);
    vm_resume(&m->vm);
    m->run_state = MACHINE_RUNNING;
    machine_emit(m, MACHINE_EVENT_RESUME, false);
    if (m->reset_pending) {
        m->reset_pending = false;
        machine_request_reset(m);
    }
}

void machine_request_reset(struct machine *m)
{
    if (m->run_state == MACHINE_PAUSED) {
        m->reset_pending = true;    /* a paused VM stays paused */
        return;
    }
    m->host_reset = true;
    vm_request(&m->vm, VM_REQ_RESET, 0);
}

void machine_quit(struct machine *m)
{
    m->run_state = MACHINE_SHUTDOWN;
    m->exit_status = 0;
    event_loop_stop(&m->loop);
}

bool machine_needs_reset(const struct machine *m)
{
    return m->memory_lost && !m->reset_pending;
}

bool machine_handle_memory_fault(struct machine *m)
{
    uint64_t gpa;
    if (!guest_memory_fault_take(&m->vm.mem, &gpa)) {
        return false;
    }
    bool from_file = false;
    for (int i = 0; i < m->vm.mem.count; i++) {
        from_file |= m->vm.mem.regions[i].file_mapped;
    }
    char where[64] = "";
    if (gpa != GUEST_MEMORY_FAULT_UNKNOWN && gpa != GUEST_MEMORY_NO_FAULT) {
        snprintf(where, sizeof(where), " at 0x%llx", (unsigned long long)gpa);
    }
    log_error("guest memory%s became unreadable (%s); VM paused, only a reset (system_reset) can run it again",
              where, from_file ? "the memory file of the snapshot it was restored from was truncated or failed"
                               : "the host could not supply it");
    m->memory_lost = true;
    machine_pause(m);
    return true;
}

int machine_memory_intact(struct machine *m, struct error *err)
{
    if (m->memory_lost || __atomic_load_n(&m->vm.mem.fault_gpa, __ATOMIC_SEQ_CST) != GUEST_MEMORY_NO_FAULT) {
        return error_set(err, -EIO, "guest memory was lost (the memory file of the snapshot the VM was restored "
                         "from was truncated or failed): reset the VM first");
    }
    return 0;
}

int machine_reset(struct machine *m, struct error *err)
{
    log_info("guest reset");
    vm_stop(&m->vm);
    /* The reset reloads the kernel into RAM behind the dirty log's back:
     * a diff against the last snapshot would miss those pages. */
    machine_forget_snapshot_chain(m);
    /* And it must not write into pages of a memory file that may be gone. */
    int ret = guest_memory_detach_files(&m->vm.mem, err);
    if (ret == 0) {
        uint64_t gpa;
        guest_memory_fault_take(&m->vm.mem, &gpa);     /* RAM is new: nothing is lost now */
        m->memory_lost = false;
        ret = device_registry_reset(&m->devices, err);
    }
    if (ret == 0) {
        ret = machine_load_boot_image(m, err);
    }
    if (ret == 0) {
        ret = vm_start(&m->vm, err);
    }
    return ret;
}

struct run_ctx {
    struct machine *m;
    struct error *err;
    int ret;
};

/* A requested reset as it happens: the RESET event, and the end of the VM
 * under --no-reboot. true: the machine goes on; false: it ends (*ret < 0:
 * the reset failed). */
static bool perform_reset(struct machine *m, struct error *err, int *ret)
{
    bool guest = !m->host_reset;
    m->host_reset = false;
    if (m->cfg->no_reboot) {
        m->run_state = MACHINE_SHUTDOWN;   /* --no-reboot: a reset ends the VM */
    }
    machine_emit(m, MACHINE_EVENT_RESET, guest);
    if (m->cfg->no_reboot) {
        m->exit_status = 0;
        return false;
    }
    *ret = machine_reset(m, err);
    if (*ret < 0) {
        m->exit_status = 0;
    }
    return *ret == 0;
}

/* true: the machine goes on running; false: the loop ends. */
static bool handle_reset(struct run_ctx *ctx)
{
    return perform_reset(ctx->m, ctx->err, &ctx->ret);
}

static void vm_event(void *opaque, int fd, uint32_t events)
{
    struct run_ctx *ctx = opaque;
    struct machine *m = ctx->m;
    int code = 0;
    switch (vm_take_request(&m->vm, &code, ctx->err)) {
    case VM_REQ_NONE:
        return;
    case VM_REQ_POWER_OFF:
        m->run_state = MACHINE_SHUTDOWN;
        machine_emit(m, MACHINE_EVENT_POWER_OFF, true);
        m->exit_status = 0;
        break;
    case VM_REQ_EXIT_CODE:
        m->run_state = MACHINE_SHUTDOWN;
        m->exit_status = code;
        break;
    case VM_REQ_ERROR:
        ctx->ret = ctx->err->code ? ctx->err->code : -EIO;
        break;
    case VM_REQ_RESET:
        if (handle_reset(ctx)) {
            return;
        }
        break;
    case VM_REQ_PAUSE:      /* the vCPU parked itself: the machine follows */
        if (!machine_replay_snapshot_pause(m)) {
            machine_pause(m);
        }
        return;
    }
    event_loop_stop(&m->loop);
}

static void memory_fault_event(void *opaque, int fd, uint32_t events)
{
    struct run_ctx *ctx = opaque;
    machine_handle_memory_fault(ctx->m);
}

static void signal_event(void *opaque, int fd, uint32_t events)
{
    struct run_ctx *ctx = opaque;
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof(si)) == sizeof(si)) {
        ctx->ret = error_set(ctx->err, -EINTR, "terminated by signal %u", si.ssi_signo);
        event_loop_stop(&ctx->m->loop);
    }
}

int machine_run(struct machine *m, struct error *err)
{
    struct run_ctx ctx = { m, err, 0 };
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);     /* vCPU threads inherit the mask */
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    int ret;
    if (sfd < 0) {
        return error_set_errno(err, -errno, "signalfd");
    }
    if ((ret = event_loop_add(&m->loop, sfd, EPOLLIN, signal_event, &ctx, err)) < 0 ||
        (ret = event_loop_add(&m->loop, m->vm.event_fd, EPOLLIN, vm_event, &ctx, err)) < 0 ||
        (ret = event_loop_add(&m->loop, m->vm.mem.fault_fd, EPOLLIN, memory_fault_event, &ctx, err)) < 0 ||
        (ret = sandbox_enter(SANDBOX_VMM_MAIN, err)) < 0 ||     /* vCPU threads inherit it */
        (ret = vm_start(&m->vm, err)) < 0 ||
        (ret = event_loop_run(&m->loop, err)) < 0) {
        vm_stop(&m->vm);
        close(sfd);
        return ret;
    }
    vm_stop(&m->vm);
    event_loop_remove(&m->loop, sfd);
    event_loop_remove(&m->loop, m->vm.event_fd);
    event_loop_remove(&m->loop, m->vm.mem.fault_fd);
    close(sfd);
    return ctx.ret < 0 ? ctx.ret : m->exit_status;
}
