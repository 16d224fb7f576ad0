#include "vmm/vm.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/log.h"

#define IOAPIC_PINS 24
#define TSS_ADDR 0xfffbd000ull
#define IDENTITY_MAP_ADDR 0xfffbc000ull

static int kvm_check(struct vm *vm, long cap)
{
    return ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap);
}

static int open_kvm(struct vm *vm, struct error *err)
{
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        return error_set_errno(err, -errno, "cannot open /dev/kvm");
    }
    int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        return error_set(err, -ENOTSUP, "/dev/kvm speaks API version %d, not %d", version, KVM_API_VERSION);
    }
    static const struct { long cap; const char *name; } needed[] = {
        { KVM_CAP_IRQCHIP, "in-kernel irqchip" }, { KVM_CAP_PIT2, "in-kernel PIT" },
        { KVM_CAP_IOEVENTFD, "ioeventfd" }, { KVM_CAP_IRQFD, "irqfd" },
        { KVM_CAP_USER_MEMORY, "user memory" }, { KVM_CAP_EXT_CPUID, "extended CPUID" },
        { KVM_CAP_ADJUST_CLOCK, "KVM clock control" },
    };
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (kvm_check(vm, needed[i].cap) <= 0) {
            return error_set(err, -ENOTSUP, "KVM lacks %s", needed[i].name);
        }
    }
    vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_size <= 0) {
        return error_set_errno(err, -errno, "KVM_GET_VCPU_MMAP_SIZE");
    }
    return 0;
}

static int get_supported_cpuid(struct vm *vm, struct error *err)
{
    for (int n = 256; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));
        if (!c) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        c->nent = (uint32_t)n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG) {
            return error_set_errno(err, -e, "KVM_GET_SUPPORTED_CPUID");
        }
    }
    return error_set(err, -E2BIG, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

static void set_vmx_areas(struct vm *vm)
{
    /* Only VMX needs these; other implementations may refuse them harmlessly. */
    ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR);
    uint64_t identity = IDENTITY_MAP_ADDR;
    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity);
}

/* The in-kernel PICs, IOAPIC, LAPICs and PIT; with VM_USER_IRQCHIP none
 * (the VMX areas still). */
static int create_irqchip(struct vm *vm, struct error *err)
{
    set_vmx_areas(vm);
    if (vm->user_irqchip) {
        return 0;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        return error_set_errno(err, -errno, "KVM_CREATE_IRQCHIP");
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        return error_set_errno(err, -errno, "KVM_CREATE_PIT2");
    }
    return 0;
}

static void kick_signal_handler(int sig)
{
    (void)sig;
}

int vm_create(struct vm *vm, int ncpus, uint64_t ram_size, unsigned flags, struct error *err)
{
    memset(vm, 0, sizeof(*vm));
    vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->routes_lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    bus_init(&vm->pio, "port I/O");
    bus_init(&vm->mmio, "MMIO");
    if (ncpus < 1 || ncpus > VM_MAX_CPUS) {
        return error_set(err, -EINVAL, "--cpus must be between 1 and %d", VM_MAX_CPUS);
    }
    vm->ncpus = ncpus;
    vm->user_irqchip = flags & VM_USER_IRQCHIP;
    int ret = open_kvm(vm, err);
    if (ret < 0) {
        return ret;
    }
    int max = kvm_check(vm, KVM_CAP_MAX_VCPUS);
    if (max > 0 && ncpus > max) {
        return error_set(err, -EINVAL, "KVM supports at most %d vCPUs", max);
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        return error_set_errno(err, -errno, "KVM_CREATE_VM");
    }
    vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->event_fd < 0) {
        return error_set_errno(err, -errno, "eventfd");
    }
    if ((ret = get_supported_cpuid(vm, err)) < 0 ||
        (ret = guest_memory_create(&vm->mem, ram_size, err)) < 0 ||
        (ret = guest_memory_add_slots(&vm->mem, vm->vm_fd, err)) < 0 ||
        (ret = create_irqchip(vm, err)) < 0) {
        return ret;
    }
    struct sigaction sa = { .sa_handler = kick_signal_handler };
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < ncpus; i++) {
        if ((ret = vcpu_init(vm, i, err)) < 0) {
            return ret;
        }
    }
    return 0;
}

#define ROM_SLOT 16

int vm_map_rom(struct vm *vm, uint64_t gpa, const void *data, uint64_t len, struct error *err)
{
    if (vm->rom && vm->rom_size == len) {
        memcpy(vm->rom, data, len);     /* a reset reloads the same firmware */
        return 0;
    }
    if (vm->rom) {
        return error_set(err, -EBUSY, "firmware is already mapped");
    }
    if (kvm_check(vm, KVM_CAP_READONLY_MEM) <= 0) {
        return error_set(err, -ENOTSUP, "KVM lacks read-only memory for firmware");
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return error_set_errno(err, -errno, "mapping %llu bytes of firmware", (unsigned long long)len);
    }
    memcpy(p, data, len);
    struct kvm_userspace_memory_region slot = {
        .slot = ROM_SLOT, .flags = KVM_MEM_READONLY, .guest_phys_addr = gpa, .memory_size = len,
        .userspace_addr = (uintptr_t)p,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
        int e = -errno;
        munmap(p, len);
        return error_set_errno(err, e, "KVM_SET_USER_MEMORY_REGION (firmware at 0x%llx)", (unsigned long long)gpa);
    }
    vm->rom = p;
    vm->rom_size = len;
    return 0;
}

void vm_destroy(struct vm *vm)
{
    vm_throttle_set(vm, 0, NULL);
    vm_stop(vm);
    for (int i = 0; i < vm->ncpus; i++) {
        vcpu_destroy(&vm->vcpus[i]);
    }
    guest_memory_destroy(&vm->mem);
    if (vm->rom) {
        munmap(vm->rom, vm->rom_size);
        vm->rom = NULL;
    }
    free(vm->cpuid);
    free(vm->routes);
    vm->cpuid = NULL;
    vm->routes = NULL;
    if (vm->event_fd >= 0) {
        close(vm->event_fd);
    }
    if (vm->vm_fd >= 0) {
        close(vm->vm_fd);
    }
    if (vm->kvm_fd >= 0) {
        close(vm->kvm_fd);
    }
    vm->event_fd = vm->vm_fd = vm->kvm_fd = -1;
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    pthread_mutex_destroy(&vm->lock);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->routes_lock);
}

int vm_start(struct vm *vm, struct error *err)
{
    vm->stopping = false;
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *c = &vm->vcpus[i];
        int ret = pthread_create(&c->thread, NULL, vcpu_thread, c);
        if (ret != 0) {
            vm_stop(vm);
            return error_set_errno(err, -ret, "starting vCPU %d", i);
        }
        c->thread_started = true;
        /* QEMU's names (debug-threads=on), so ps -L and top tell them apart. */
        char name[24];     /* the kernel keeps 15 characters: enough for CPU 999/KVM */
        snprintf(name, sizeof(name), "CPU %d/KVM", i);
        name[15] = 0;
        pthread_setname_np(c->thread, name);
    }
    return 0;
}

void vm_stop(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->stopping = true;
    vm->pause_wanted = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *c = &vm->vcpus[i];
        if (c->thread_started) {
            vcpu_kick(c);
            pthread_join(c->thread, NULL);
            c->thread_started = false;
        }
    }
}

void vm_pause(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_wanted = true;
    pthread_mutex_unlock(&vm->lock);
    int running = 0;
    for (int i = 0; i < vm->ncpus; i++) {
        if (vm->vcpus[i].thread_started) {
            vcpu_kick(&vm->vcpus[i]);
            running++;
        }
    }
    pthread_mutex_lock(&vm->lock);
    while (vm->paused_count < running && !vm->stopping) {
        pthread_cond_wait(&vm->cond, &vm->lock);
    }
    pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_wanted = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

void vm_request(struct vm *vm, enum vm_request req, int exit_code)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->request == VM_REQ_NONE) {
        vm->request = req;
        vm->exit_code = exit_code;
    }
    pthread_mutex_unlock(&vm->lock);
    uint64_t one = 1;
    if (write(vm->event_fd, &one, sizeof(one)) < 0) {
        log_debug("vm event write: %s", strerror(errno));
    }
}

enum vm_request vm_take_request(struct vm *vm, int *exit_code, struct error *err)
{
    uint64_t v;
    if (read(vm->event_fd, &v, sizeof(v)) < 0) {
        v = 0;  /* nothing pending is fine */
    }
    pthread_mutex_lock(&vm->lock);
    enum vm_request r = vm->request;
    *exit_code = vm->exit_code;
    if (r == VM_REQ_ERROR && err) {
        *err = vm->error;
    }
    vm->request = VM_REQ_NONE;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

bool vm_request_pending(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool yes = vm->request != VM_REQ_NONE;
    pthread_mutex_unlock(&vm->lock);
    return yes;
}

void vm_request_error(struct vm *vm, const struct error *err)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->request == VM_REQ_NONE) {
        vm->error = *err;
    }
    pthread_mutex_unlock(&vm->lock);
    vm_request(vm, VM_REQ_ERROR, 0);
}

void vm_pause_self(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->pause_wanted = true;
    pthread_mutex_unlock(&vm->lock);
    vm_request(vm, VM_REQ_PAUSE, 0);
}

int vm_filter_msrs(struct vm *vm, const uint32_t *msrs, int n, struct error *err)
{
    if (n > KVM_MSR_FILTER_MAX_RANGES) {
        return error_set(err, -E2BIG, "at most %d MSRs can be filtered", KVM_MSR_FILTER_MAX_RANGES);
    }
    if (kvm_check(vm, KVM_CAP_X86_MSR_FILTER) <= 0 || kvm_check(vm, KVM_CAP_X86_USER_SPACE_MSR) <= 0) {
        return error_set(err, -ENOTSUP, "KVM lacks MSR filtering (KVM_X86_SET_MSR_FILTER)");
    }
    struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR, .args = { KVM_MSR_EXIT_REASON_FILTER } };
    if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
        return error_set_errno(err, -errno, "KVM_ENABLE_CAP (user-space MSRs)");
    }
    static uint8_t deny = 0;    /* one bit per MSR: 0 sends it to user space */
    struct kvm_msr_filter filter = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
    for (int i = 0; i < n; i++) {
        filter.ranges[i] = (struct kvm_msr_filter_range){
            .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, .nmsrs = 1, .base = msrs[i], .bitmap = &deny,
        };
    }
    if (ioctl(vm->vm_fd, KVM_X86_SET_MSR_FILTER, &filter) < 0) {
        return error_set_errno(err, -errno, "KVM_X86_SET_MSR_FILTER");
    }
    return 0;
}

void vm_set_irq(void *opaque, unsigned gsi, int level)
{
    struct vm *vm = opaque;
    struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0) {
        log_warn("KVM_IRQ_LINE %u: %s", gsi, strerror(errno));
    }
}

struct irq_line vm_irq_line(struct vm *vm, unsigned gsi)
{
    return (struct irq_line){ .set = vm_set_irq, .opaque = vm, .gsi = gsi };
}

int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign, struct error *err)
{
    struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        return error_set_errno(err, -errno, "KVM_IRQFD (gsi %u)", gsi);
    }
    return 0;
}

int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, unsigned len, bool mmio, int64_t datamatch,
                 bool assign, struct error *err)
{
    struct kvm_ioeventfd io = {
        .addr = addr, .len = len, .fd = fd,
        .datamatch = datamatch < 0 ? 0 : (uint64_t)datamatch,
        .flags = (mmio ? 0 : KVM_IOEVENTFD_FLAG_PIO) | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN) |
                 (datamatch < 0 ? 0 : KVM_IOEVENTFD_FLAG_DATAMATCH),
    };
    if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
        return error_set_errno(err, -errno, "KVM_IOEVENTFD at 0x%llx", (unsigned long long)addr);
    }
    return 0;
}

int vm_alloc_gsi(struct vm *vm, uint32_t *gsi, struct error *err)
{
    pthread_mutex_lock(&vm->routes_lock);
    for (uint32_t i = 0; i < VM_MSI_GSIS; i++) {
        if (!(vm->msi_gsi_used[i / 64] & (1ull << (i % 64)))) {
            vm->msi_gsi_used[i / 64] |= 1ull << (i % 64);
            pthread_mutex_unlock(&vm->routes_lock);
            *gsi = IOAPIC_PINS + i;
            return 0;
        }
    }
    pthread_mutex_unlock(&vm->routes_lock);
    return error_set(err, -ENOSPC, "all %d GSIs for MSI routes are in use", VM_MSI_GSIS);
}

static void drop_msi_route(struct route_table *t, uint32_t gsi);

void vm_free_gsi(struct vm *vm, uint32_t gsi)
{
    if (gsi < IOAPIC_PINS || gsi >= IOAPIC_PINS + VM_MSI_GSIS) {
        return;     /* never allocated */
    }
    uint32_t i = gsi - IOAPIC_PINS;
    pthread_mutex_lock(&vm->routes_lock);
    vm->msi_gsi_used[i / 64] &= ~(1ull << (i % 64));
    if (vm->routes) {
        drop_msi_route(vm->routes, gsi);
    }
    pthread_mutex_unlock(&vm->routes_lock);
}

/* KVM replaces the whole routing table at once, so we keep a copy: the
 * IOAPIC/PIC default routes plus our MSI routes. */
#define MAX_ROUTES 1024
struct route_table {
    struct kvm_irq_routing hdr;
    struct kvm_irq_routing_entry e[MAX_ROUTES];
};

static struct route_table *routes_for(struct vm *vm)
{
    struct route_table *table = vm->routes;
    if (!table) {
        table = vm->routes = calloc(1, sizeof(*table));
        if (!table) {
            return NULL;
        }
        for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
            struct kvm_irq_routing_entry *r = &table->e[table->hdr.nr++];
            r->gsi = pin;
            r->type = KVM_IRQ_ROUTING_IRQCHIP;
            r->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
            r->u.irqchip.pin = pin;
            if (pin < 16 && pin != 2) {
                r = &table->e[table->hdr.nr++];
                r->gsi = pin;
                r->type = KVM_IRQ_ROUTING_IRQCHIP;
                r->u.irqchip.irqchip = pin < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
                r->u.irqchip.pin = pin & 7;
            }
        }
    }
    return table;
}

static void drop_msi_route(struct route_table *t, uint32_t gsi)
{
    for (uint32_t i = 0; i < t->hdr.nr; i++) {
        if (t->e[i].gsi == gsi && t->e[i].type == KVM_IRQ_ROUTING_MSI) {
            t->e[i] = t->e[--t->hdr.nr];
            return;
        }
    }
}

int vm_set_msi_route(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data, struct error *err)
{
    pthread_mutex_lock(&vm->routes_lock);
    struct route_table *t = routes_for(vm);
    if (!t) {
        pthread_mutex_unlock(&vm->routes_lock);
        return error_set(err, -ENOMEM, "out of memory");
    }
    struct kvm_irq_routing_entry *r = NULL;
    for (uint32_t i = 0; i < t->hdr.nr; i++) {
        if (t->e[i].gsi == gsi && t->e[i].type == KVM_IRQ_ROUTING_MSI) {
            r = &t->e[i];
        }
    }
    bool added = !r;
    if (!r) {
        if (t->hdr.nr == MAX_ROUTES) {
            pthread_mutex_unlock(&vm->routes_lock);
            return error_set(err, -ENOSPC, "too many MSI routes");
        }
        r = &t->e[t->hdr.nr++];
    }
    struct kvm_irq_routing_entry before = *r;
    memset(r, 0, sizeof(*r));
    r->gsi = gsi;
    r->type = KVM_IRQ_ROUTING_MSI;
    r->u.msi.address_lo = (uint32_t)addr;
    r->u.msi.address_hi = (uint32_t)(addr >> 32);
    r->u.msi.data = data;
    int ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, &t->hdr);
    int e = errno;
    if (ret < 0 && added) {
        drop_msi_route(t, gsi);     /* a route KVM refused would make every later update fail */
    } else if (ret < 0) {
        *r = before;
    }
    pthread_mutex_unlock(&vm->routes_lock);
    if (ret < 0) {
        return error_set_errno(err, -e, "KVM_SET_GSI_ROUTING");
    }
    return 0;
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
    struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data };
    return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}
