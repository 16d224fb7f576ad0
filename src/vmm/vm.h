/* A KVM virtual machine: guest memory, N vCPUs (one thread each), the
 * in-kernel irqchip and PIT, and the port-I/O and MMIO buses devices sit on.
 * vCPU threads dispatch their exits to the buses; lifecycle requests (power
 * off, reset, debug-exit, errors) reach the main loop through an eventfd. */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "util/error.h"
#include "vmm/bus.h"
#include "vmm/guest_memory.h"
#include "vmm/irq.h"

#define VM_MAX_CPUS 64
#define VM_MSI_GSIS 960     /* MSI routes: with the 39 IOAPIC/PIC ones within the 1024-entry table */

enum vm_request {
    VM_REQ_NONE,
    VM_REQ_POWER_OFF,   /* guest powered off: exit status 0 */
    VM_REQ_RESET,       /* guest asked for a reset (i8042, triple fault, 0xcf9) */
    VM_REQ_EXIT_CODE,   /* debug-exit port: exit with vm->exit_code */
    VM_REQ_ERROR,       /* a vCPU failed: message in vm->error */
    VM_REQ_PAUSE,       /* a vCPU parked itself (a replay's break point): the machine is paused */
};

struct vm;
struct vcpu;
struct route_table;

/* Record/replay's exit clock (machine/machine_replay_cpu.c): sees every exit
 * after the buses handled it and answers the MSR exits the filter sends;
 * false stops the vCPU (the VM has a request posted then). */
struct vcpu_exit_hook {
    bool (*exit)(void *opaque, struct vcpu *c);
    void *opaque;
};

/* vm_create flags. VM_USER_IRQCHIP: no in-kernel PIC, IOAPIC, LAPIC or PIT
 * (nothing fires on its own); CPUID shows no APIC; the VMM injects
 * interrupts (vcpu_inject_interrupt), and irqfd and MSI are unavailable. */
#define VM_USER_IRQCHIP 1u

struct vcpu {
    struct vm *vm;
    int index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    int tid;                /* the thread's kernel id (QMP's thread-id), 0 before it runs */
    bool throttle_due;      /* the throttle's kicker asks for a sleep (atomic) */
};

struct vm {
    int kvm_fd;
    int vm_fd;
    int run_size;
    int ncpus;
    bool user_irqchip;      /* VM_USER_IRQCHIP */
    struct vcpu_exit_hook exit_hook;    /* set before vm_start */
    struct guest_memory mem;
    struct bus pio;
    struct bus mmio;
    struct vcpu vcpus[VM_MAX_CPUS];
    struct kvm_cpuid2 *cpuid;
    int event_fd;           /* written when a request is pending */
    uint64_t msi_gsi_used[VM_MSI_GSIS / 64];    /* MSI routes' GSIs above the IOAPIC pins (routes_lock) */
    struct route_table *routes;     /* KVM's GSI routing table, as last set */
    uint8_t *rom;                   /* firmware image mapped read-only below 4 GiB */
    uint64_t rom_size;
    pthread_mutex_t routes_lock;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum vm_request request;
    int exit_code;
    struct error error;
    bool stopping;          /* vCPU threads must leave */
    bool pause_wanted;
    int paused_count;
    int throttle_pct;               /* vcpu_throttle.c (atomic) */
    bool throttle_running;
    pthread_t throttle_thread;
};

int vm_create(struct vm *vm, int ncpus, uint64_t ram_size, unsigned flags, struct error *err);
void vm_destroy(struct vm *vm);
/* Starts the vCPU threads (after the boot loader set up their registers). */
int vm_start(struct vm *vm, struct error *err);
/* Stops and joins all vCPU threads. */
void vm_stop(struct vm *vm);
/* Pause: every vCPU leaves KVM_RUN and waits; resume lets them go on. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* Posts a lifecycle request from any thread (first one wins). */
void vm_request(struct vm *vm, enum vm_request req, int exit_code);
enum vm_request vm_take_request(struct vm *vm, int *exit_code, struct error *err);
/* Is a request posted and not yet taken? */
bool vm_request_pending(struct vm *vm);
/* VM_REQ_ERROR with this message (from a vCPU thread). */
void vm_request_error(struct vm *vm, const struct error *err);
/* From a vCPU thread: park every vCPU at its next check and tell the main
 * loop (VM_REQ_PAUSE), so it pauses the machine where the guest stands. */
void vm_pause_self(struct vm *vm);
/* Sends the MSRs listed to user space (KVM_EXIT_X86_RDMSR/WRMSR) instead of
 * KVM's own handling (KVM_X86_SET_MSR_FILTER); at most 16. */
int vm_filter_msrs(struct vm *vm, const uint32_t *msrs, int n, struct error *err);

/* Maps a copy of data read-only at gpa (firmware); writes exit as MMIO. */
int vm_map_rom(struct vm *vm, uint64_t gpa, const void *data, uint64_t len, struct error *err);

/* Interrupts. */
void vm_set_irq(void *vm, unsigned gsi, int level);
struct irq_line vm_irq_line(struct vm *vm, unsigned gsi);
int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign, struct error *err);
/* datamatch < 0: any value written signals fd. */
int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool mmio, int64_t datamatch,
                 bool assign, struct error *err);
/* A GSI for an MSI route: the lowest free one above the IOAPIC pins,
 * -ENOSPC when all VM_MSI_GSIS are taken. vm_free_gsi gives it back (a
 * device unplugged) and drops its route, so plug cycles never run out. */
int vm_alloc_gsi(struct vm *vm, uint32_t *gsi, struct error *err);
void vm_free_gsi(struct vm *vm, uint32_t gsi);
/* Routes gsi (allocated with vm_alloc_gsi) to an MSI message. */
int vm_set_msi_route(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data, struct error *err);
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);

/* vCPU register setup and reset (vcpu.c). */
int vcpu_init(struct vm *vm, int index, struct error *err);
void vcpu_destroy(struct vcpu *vcpu);
void *vcpu_thread(void *opaque);
void vcpu_kick(struct vcpu *vcpu);
/* The VM's CPUID table (vm->cpuid, after a caller masked it) to the vCPU,
 * with its own APIC ids; only before it first runs. */
int vcpu_set_cpuid(struct vcpu *c, struct error *err);
int vcpu_get_regs(struct vcpu *c, struct kvm_regs *regs, struct error *err);
/* With VM_USER_IRQCHIP, when kvm_run says the guest takes one. */
int vcpu_inject_interrupt(struct vcpu *c, uint8_t vector, struct error *err);
/* From the vCPU's own thread: waits while a pause is wanted; false when
 * the thread must leave. */
bool vcpu_wait_if_paused(struct vcpu *c);

/* vCPU throttling (vcpu_throttle.c), for a migration's auto-converge: with
 * percent > 0 each vCPU sleeps that share of its time, kicked out of the
 * guest once a period (vcpu_throttle.h); 0 stops it. */
int vm_throttle_set(struct vm *vm, int percent, struct error *err);
/* A vCPU thread's slice sleep, when one is due (vcpu.c calls it). */
void vcpu_throttle_sleep(struct vcpu *c);

/* State of the in-kernel parts (vm_state.c, vcpu_state.c). */
#define VM_STATE_VERSION 1      /* vm_save_kvm_state's layout */
#define VCPU_STATE_VERSION 1    /* vcpu_save_state's layout */
/* The guest's clock (KVM's kvmclock), in nanoseconds. */
int vm_clock_ns(struct vm *vm, uint64_t *ns, struct error *err);
int vm_save_kvm_state(struct vm *vm, struct state_buf *b, struct error *err);
int vm_load_kvm_state(struct vm *vm, struct state_buf *b, struct error *err);
int vcpu_save_state(struct vcpu *vcpu, struct state_buf *b, struct error *err);
int vcpu_load_state(struct vcpu *vcpu, struct state_buf *b, struct error *err);

#endif
