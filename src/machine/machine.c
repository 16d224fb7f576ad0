/* The machine's composition from its configuration, its boot image and
 * its teardown. */
#include "machine/machine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "vmm/boot.h"

#define MAX_KERNEL_SIZE (256u << 20)
#define MAX_FIRMWARE_SIZE (16u << 20)

int machine_add_device(struct machine *m, const char *type, int instance, const struct device_ops *ops, void *dev,
                       struct error *err)
{
    return device_registry_add(&m->devices, type, instance, ops, dev, err);
}

void machine_emit(struct machine *m, enum machine_event ev, bool guest)
{
    if (m->event_hook) {
        m->event_hook(m->event_hook_opaque, ev, guest);
    }
}

/* The boot files, read once. */
static int read_boot_files(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    const char *path = cfg->bios ? cfg->bios : cfg->kernel;
    int ret = 0;
    if (!m->boot_image) {
        ret = boot_read_file(path, cfg->bios ? MAX_FIRMWARE_SIZE : MAX_KERNEL_SIZE, &m->boot_image,
                             &m->boot_image_len, err);
        if (ret < 0 && cfg->bios) {
            error_prefix(err, "--bios '%s'", path);
        }
    }
    if (ret == 0 && !cfg->bios && cfg->initrd && !m->boot_initrd) {
        ret = boot_read_file(cfg->initrd, MAX_KERNEL_SIZE, &m->boot_initrd, &m->boot_initrd_len, err);
    }
    return ret;
}

static int load_firmware(struct machine *m, struct error *err)
{
    int ret = boot_firmware(&m->vm, m->boot_image, m->boot_image_len, err);
    if (ret < 0) {
        error_prefix(err, "--bios '%s'", m->cfg->bios);
    }
    return ret;
}

static int load_kernel(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    const uint8_t *image = m->boot_image, *initrd = m->boot_initrd;
    size_t len = m->boot_image_len, initrd_len = m->boot_initrd_len;
    int ret;
    char *cmdline = machine_kernel_cmdline(m);
    if (boot_is_elf(image, len)) {
        ret = boot_pvh(&m->vm, image, len, initrd, initrd_len, cmdline, err);
    } else {
        ret = boot_linux(&m->vm, image, len, initrd, initrd_len, cmdline, cfg->kernel_decompress, err);
    }
    if (ret < 0) {
        error_prefix(err, "--kernel '%s'", cfg->kernel);
    }
    free(cmdline);
    return ret;
}

int machine_load_boot_image(struct machine *m, struct error *err)
{
    int ret = read_boot_files(m, err);
    if (ret < 0) {
        return ret;
    }
    if (m->cfg->bios) {
        return load_firmware(m, err);
    }
    return (ret = load_kernel(m, err)) < 0 ? ret : machine_write_acpi(m, err);
}

/* Registration order is the order state is saved and devices reset in. */
static int compose(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    int ret;
    if ((cfg->record_replay && (ret = machine_replay_check_config(cfg, err)) < 0) ||
        (ret = event_loop_init(&m->loop, err)) < 0 ||
        (ret = machine_console_open(m, err)) < 0 ||
        (ret = vm_create(&m->vm, cfg->cpus, cfg->memory, cfg->record_replay ? VM_USER_IRQCHIP : 0, err)) < 0 ||
        (ret = machine_add_cpus(m, err)) < 0 ||
        (cfg->record_replay && (ret = machine_add_replay_devices(m, err)) < 0) ||
        (ret = machine_add_pc_devices(m, err)) < 0 ||
        (ret = machine_add_acpi(m, err)) < 0 ||
        (cfg->bios && (ret = machine_add_fw_cfg(m, err)) < 0) ||
        (ret = machine_add_virtio(m, err)) < 0 ||
        (ret = machine_build_acpi(m, err)) < 0 ||
        (ret = machine_load_boot_image(m, err)) < 0) {
        return ret;
    }
    return machine_console_start(m, err);
}

int machine_create(struct machine **out, const struct machine_config *cfg, struct error *err)
{
    struct machine *m = calloc(1, sizeof(*m));
    *out = m;
    if (!m) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    m->cfg = cfg;
    m->console.in = m->console.out = m->console.listen = m->console.retry_timer = -1;
    m->loop.epfd = -1;
    m->vm.vm_fd = m->vm.kvm_fd = m->vm.event_fd = -1;
    m->run_state = MACHINE_RUNNING;
    device_registry_init(&m->devices);
    return compose(m, err);
}

void machine_destroy(struct machine *m)
{
    if (!m) {
        return;
    }
    vm_stop(&m->vm);
    device_registry_destroy(&m->devices);
    block_nodes_close_all(&m->nodes);
    machine_close_disks(m);
    event_loop_destroy(&m->loop);
    vm_destroy(&m->vm);
    machine_replay_free(m);
    machine_console_close(m);
    free(m->boot_image);
    free(m->boot_initrd);
    free(m->acpi_image);
    free(m);
}

const struct machine_config *machine_config(const struct machine *m)
{
    return m->cfg;
}

struct event_loop *machine_loop(struct machine *m)
{
    return &m->loop;
}

void machine_set_event_hook(struct machine *m, machine_event_fn fn, void *opaque)
{
    m->event_hook = fn;
    m->event_hook_opaque = opaque;
}

int machine_cpu_count(const struct machine *m)
{
    return m->vm.ncpus;
}

int machine_cpu_thread_id(const struct machine *m, int i)
{
    return __atomic_load_n(&m->vm.vcpus[i].tid, __ATOMIC_RELAXED);
}
