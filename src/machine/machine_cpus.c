/* The KVM VM (irqchip, PIT, clock) and its vCPUs as registered devices:
 * sections "kvm-vm" and "vcpu.N". Their power-on state is taken when they
 * register (right after the VM is created, before a boot loader set the
 * registers) and loaded again at reset. */
#include "machine/machine_int.h"

#include "util/log.h"

static int cpu_save(void *dev, struct state_buf *b, struct error *err)
{
    struct cpu_slot *c = dev;
    return c->vcpu ? vcpu_save_state(c->vcpu, b, err) : vm_save_kvm_state(c->vm, b, err);
}

static int cpu_load(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    struct cpu_slot *c = dev;
    return c->vcpu ? vcpu_load_state(c->vcpu, b, err) : vm_load_kvm_state(c->vm, b, err);
}

static int cpu_reset(void *dev, struct error *err)
{
    struct cpu_slot *c = dev;
    struct state_buf r;
    state_buf_init_reader(&r, c->initial.data, c->initial.len);
    return cpu_load(c, &r, c->vcpu ? VCPU_STATE_VERSION : VM_STATE_VERSION, err);
}

static void cpu_destroy(void *dev)
{
    struct cpu_slot *c = dev;
    state_buf_free(&c->initial);
}

static const struct device_ops kvm_vm_ops = {
    .version = VM_STATE_VERSION,
    .reset = cpu_reset,
    .save = cpu_save,
    .load = cpu_load,
    .destroy = cpu_destroy,
};

static const struct device_ops vcpu_ops = {
    .version = VCPU_STATE_VERSION,
    .reset = cpu_reset,
    .save = cpu_save,
    .load = cpu_load,
    .destroy = cpu_destroy,
};

static int add_cpu(struct machine *m, struct cpu_slot *c, int index, struct error *err)
{
    c->vm = &m->vm;
    c->vcpu = index >= 0 ? &m->vm.vcpus[index] : NULL;
    state_buf_init(&c->initial);
    int ret = cpu_save(c, &c->initial, err);
    if (ret == 0) {
        ret = state_buf_error(&c->initial, err);
    }
    if (ret < 0) {
        state_buf_free(&c->initial);
        return ret;
    }
    return machine_add_device(m, index >= 0 ? "vcpu" : "kvm-vm", index, index >= 0 ? &vcpu_ops : &kvm_vm_ops, c,
                              err);
}

int machine_add_cpus(struct machine *m, struct error *err)
{
    /* The VM-wide part first: vCPU state (the local APIC) sits on it. */
    int ret = add_cpu(m, &m->cpus[0], -1, err);
    for (int i = 0; ret == 0 && i < m->vm.ncpus; i++) {
        ret = add_cpu(m, &m->cpus[i + 1], i, err);
    }
    return ret;
}

int machine_throttle_cpus(struct machine *m, int percent, struct error *err)
{
    return vm_throttle_set(&m->vm, percent, err);
}
