#include "machine.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "util/log.h"
#include "vmm/boot.h"
#include "machine_virtio.h"

#define MAX_KERNEL_SIZE (256u << 20)
#define MAX_FIRMWARE_SIZE (16u << 20)

static struct termios saved_termios;

static void system_event(void *opaque, enum system_event ev, int code)
{
    struct machine *m = opaque;
    switch (ev) {
    case SYSTEM_EVENT_RESET: vm_request(&m->vm, VM_REQ_RESET, 0); break;
    case SYSTEM_EVENT_POWER_OFF: vm_request(&m->vm, VM_REQ_POWER_OFF, 0); break;
    case SYSTEM_EVENT_EXIT_CODE: vm_request(&m->vm, VM_REQ_EXIT_CODE, code); break;
    }
}

static int open_console(struct machine *m, struct error *err)
{
    const char *c = m->cfg->console ? m->cfg->console : "stdio";
    m->console_in = m->console_out = m->console_listen = -1;
    if (strcmp(c, "stdio") == 0) {
        m->console_in = STDIN_FILENO;
        m->console_out = STDOUT_FILENO;
        if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
            struct termios raw = saved_termios;
            raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
            tcsetattr(STDIN_FILENO, TCSANOW, &raw);
            m->console_is_tty = true;
        }
        return 0;
    }
    if (strncmp(c, "file:", 5) == 0) {
        m->console_out = open(c + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (m->console_out < 0) {
            return error_set_errno(err, -errno, "--console: cannot open '%s'", c + 5);
        }
        return 0;
    }
    if (strncmp(c, "unix:", 5) == 0) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(c + 5) >= sizeof(sa.sun_path)) {
            return error_set(err, -ENAMETOOLONG, "--console: socket path too long");
        }
        strcpy(sa.sun_path, c + 5);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        unlink(sa.sun_path);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
            int e = -errno;
            if (fd >= 0) {
                close(fd);
            }
            return error_set_errno(err, e, "--console: cannot listen on '%s'", c + 5);
        }
        m->console_listen = fd;
        return 0;
    }
    return error_set(err, -EINVAL, "--console must be stdio, file:PATH or unix:PATH, not '%s'", c);
}

static void console_input(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    uint8_t buf[64];
    /* Take no more than the UART can hold; the rest waits in the fd. */
    ssize_t n = uart_can_receive(&m->uart) ? read(fd, buf, 16) : 0;
    if (n > 0) {
        uart_receive(&m->uart, buf, (size_t)n);
    } else if (n == 0 && uart_can_receive(&m->uart)) {
        event_loop_remove(&m->loop, fd);    /* end of input */
        if (fd != STDIN_FILENO) {
            close(fd);
            m->uart.out_fd = -1;
            m->console_in = -1;
        }
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        event_loop_remove(&m->loop, fd);
    }
}

static void console_accept(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0 || m->console_in >= 0) {
        if (c >= 0) {
            close(c);   /* one client at a time */
        }
        return;
    }
    m->console_in = c;
    pthread_mutex_lock(&m->uart.lock);
    m->uart.out_fd = c;
    pthread_mutex_unlock(&m->uart.lock);
    event_loop_add(&m->loop, c, EPOLLIN, console_input, m, NULL);
}

static int register_pio(struct machine *m, uint64_t port, uint64_t len, bus_read_fn r, bus_write_fn w,
                        void *opaque, const char *name, struct error *err)
{
    return bus_register(&m->vm.pio, port, len, r, w, opaque, name, err);
}

/* 0xcf9 (reset control, byte access) sits inside the PCI config address
 * register's dword at 0xcf8, so one range serves both. */
static uint64_t pci_or_reset_read(void *opaque, uint64_t offset, unsigned size)
{
    struct machine *m = opaque;
    if (offset == 1 && size == 1) {
        return reset_control_read(&m->sys, 0, size);
    }
    return pci_host_io_read(&m->pci, offset, size);
}

static void pci_or_reset_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct machine *m = opaque;
    if (offset == 1 && size == 1) {
        reset_control_write(&m->sys, 0, size, value);
    } else {
        pci_host_io_write(&m->pci, offset, size, value);
    }
}

static int add_pc_devices(struct machine *m, struct error *err)
{
    uint64_t low = guest_memory_low_size(&m->vm.mem);
    uart_init(&m->uart, vm_irq_line(&m->vm, UART_COM1_IRQ), m->console_out);
    system_ports_init(&m->sys, system_event, m);
    cmos_rtc_init(&m->rtc, low, m->vm.mem.ram_size - low);
    pci_host_init(&m->pci);
    int ret;
    if ((ret = register_pio(m, UART_COM1_BASE, 8, uart_read, uart_write, &m->uart, "COM1", err)) < 0 ||
        (ret = register_pio(m, DEBUG_EXIT_PORT, 4, debug_exit_read, debug_exit_write, &m->sys, "debug-exit", err)) < 0 ||
        (ret = register_pio(m, I8042_DATA_PORT, 5, i8042_read, i8042_write, &m->sys, "i8042", err)) < 0 ||
        (ret = register_pio(m, PM1A_CONTROL_PORT, 2, pm_control_read, pm_control_write, &m->sys, "pm", err)) < 0 ||
        (ret = register_pio(m, CMOS_PORT, 2, cmos_rtc_read, cmos_rtc_write, &m->rtc, "cmos", err)) < 0 ||
        (ret = register_pio(m, PCI_CONFIG_ADDRESS_PORT, 8, pci_or_reset_read, pci_or_reset_write, m, "pci", err)) < 0) {
        return ret;
    }
    return 0;
}

/* What SeaBIOS needs to know that CMOS cannot tell it. */
static int setup_fw_cfg(struct machine *m, struct error *err)
{
    struct fw_cfg *f = &m->fw_cfg;
    fw_cfg_init(f);
    struct { uint64_t addr, size; uint32_t type; } __attribute__((packed)) e820[2];
    int n = 0;
    for (int i = 0; i < m->vm.mem.count; i++) {
        e820[n].addr = m->vm.mem.regions[i].gpa;
        e820[n].size = m->vm.mem.regions[i].size;
        e820[n++].type = 1;
    }
    uint16_t sercon = UART_COM1_BASE, no_menu = 0;
    int ret;
    if ((ret = fw_cfg_add_u64(f, FW_CFG_RAM_SIZE, m->vm.mem.ram_size, err)) < 0 ||
        (ret = fw_cfg_add_u16(f, FW_CFG_NB_CPUS, (uint16_t)m->vm.ncpus, err)) < 0 ||
        (ret = fw_cfg_add_u16(f, FW_CFG_MAX_CPUS, (uint16_t)m->vm.ncpus, err)) < 0 ||
        (ret = fw_cfg_add_u16(f, FW_CFG_NOGRAPHIC, 1, err)) < 0 ||
        (ret = fw_cfg_add_file(f, "etc/e820", e820, sizeof(e820[0]) * (size_t)n, err)) < 0 ||
        (ret = fw_cfg_add_file(f, "etc/sercon-port", &sercon, sizeof(sercon), err)) < 0 ||
        (ret = fw_cfg_add_file(f, "etc/show-boot-menu", &no_menu, sizeof(no_menu), err)) < 0) {
        return ret;
    }
    return register_pio(m, FW_CFG_PORT, 2, fw_cfg_read, fw_cfg_write, f, "fw_cfg", err);
}

static int load_boot_image(struct machine *m, struct error *err)
{
    const struct machine_config *cfg = m->cfg;
    uint8_t *image = NULL, *initrd = NULL;
    size_t len = 0, initrd_len = 0;
    int ret;
    if (cfg->bios) {
        ret = boot_read_file(cfg->bios, MAX_FIRMWARE_SIZE, &image, &len, err);
        if (ret == 0) {
            ret = boot_firmware(&m->vm, image, len, err);
        }
        if (ret < 0) {
            error_prefix(err, "--bios '%s'", cfg->bios);
        }
        free(image);
        return ret;
    }
    if ((ret = boot_read_file(cfg->kernel, MAX_KERNEL_SIZE, &image, &len, err)) < 0) {
        return ret;
    }
    if (cfg->initrd && (ret = boot_read_file(cfg->initrd, MAX_KERNEL_SIZE, &initrd, &initrd_len, err)) < 0) {
        free(image);
        return ret;
    }
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
    free(image);
    free(initrd);
    return ret;
}

static int save_initial_cpu_state(struct machine *m, struct error *err)
{
    state_buf_init(&m->initial_cpu_state);
    int ret = vm_save_kvm_state(&m->vm, &m->initial_cpu_state, err);
    for (int i = 0; ret == 0 && i < m->vm.ncpus; i++) {
        ret = vcpu_save_state(&m->vm.vcpus[i], &m->initial_cpu_state, err);
    }
    return ret;
}

static int restore_initial_cpu_state(struct machine *m, struct error *err)
{
    struct state_buf r;
    state_buf_init_reader(&r, m->initial_cpu_state.data, m->initial_cpu_state.len);
    int ret = vm_load_kvm_state(&m->vm, &r, err);
    for (int i = 0; ret == 0 && i < m->vm.ncpus; i++) {
        ret = vcpu_load_state(&m->vm.vcpus[i], &r, err);
    }
    return ret;
}

int machine_create(struct machine *m, const struct machine_config *cfg, struct error *err)
{
    memset(m, 0, sizeof(*m));
    m->cfg = cfg;
    m->console_in = m->console_out = m->console_listen = -1;
    m->loop.epfd = -1;
    int ret;
    if ((ret = event_loop_init(&m->loop, err)) < 0 ||
        (ret = open_console(m, err)) < 0 ||
        (ret = vm_create(&m->vm, cfg->cpus, cfg->memory, err)) < 0 ||
        (ret = save_initial_cpu_state(m, err)) < 0 ||
        (ret = add_pc_devices(m, err)) < 0 ||
        (cfg->bios && (ret = setup_fw_cfg(m, err)) < 0) ||
        (ret = machine_add_virtio(m, err)) < 0 ||
        (ret = load_boot_image(m, err)) < 0) {
        return ret;
    }
    if (m->console_in >= 0) {
        fcntl(m->console_in, F_SETFL, fcntl(m->console_in, F_GETFL) | O_NONBLOCK);
        if (event_loop_add(&m->loop, m->console_in, EPOLLIN, console_input, m, NULL) < 0) {
            log_debug("console input is not pollable; ignoring it");
        }
    }
    if (m->console_listen >= 0 &&
        (ret = event_loop_add(&m->loop, m->console_listen, EPOLLIN, console_accept, m, err)) < 0) {
        return ret;
    }
    return 0;
}

static int reset(struct machine *m, struct error *err)
{
    log_info("guest reset");
    vm_stop(&m->vm);
    int ret = restore_initial_cpu_state(m, err);
    if (ret == 0) {
        /* Devices come back to their power-on state; the CMOS keeps its
         * NVRAM as a battery-backed chip does. */
        machine_reset_virtio(m);
        pthread_mutex_lock(&m->uart.lock);
        int out_fd = m->uart.out_fd;
        pthread_mutex_unlock(&m->uart.lock);
        uart_destroy(&m->uart);
        uart_init(&m->uart, vm_irq_line(&m->vm, UART_COM1_IRQ), out_fd);
        system_ports_init(&m->sys, system_event, m);
        ret = load_boot_image(m, err);
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

static void vm_event(void *opaque, int fd, uint32_t events)
{
    struct run_ctx *ctx = opaque;
    struct machine *m = ctx->m;
    int code = 0;
    switch (vm_take_request(&m->vm, &code, ctx->err)) {
    case VM_REQ_NONE:
        return;
    case VM_REQ_POWER_OFF:
        if (m->event_hook) {
            m->event_hook(m->event_hook_opaque, MACHINE_EVENT_POWER_OFF);
        }
        m->exit_status = 0;
        break;
    case VM_REQ_EXIT_CODE:
        m->exit_status = code;
        break;
    case VM_REQ_ERROR:
        ctx->ret = ctx->err->code ? ctx->err->code : -EIO;
        break;
    case VM_REQ_RESET:
        if (m->event_hook) {
            m->event_hook(m->event_hook_opaque, MACHINE_EVENT_RESET);
        }
        if (!m->cfg->no_reboot) {
            ctx->ret = reset(m, ctx->err);
            if (ctx->ret == 0) {
                return;
            }
        }
        m->exit_status = 0;
        break;
    }
    event_loop_stop(&m->loop);
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
        (ret = vm_start(&m->vm, err)) < 0 ||
        (ret = event_loop_run(&m->loop, err)) < 0) {
        vm_stop(&m->vm);
        close(sfd);
        return ret;
    }
    vm_stop(&m->vm);
    event_loop_remove(&m->loop, sfd);
    close(sfd);
    return ctx.ret < 0 ? ctx.ret : m->exit_status;
}

void machine_destroy(struct machine *m)
{
    vm_stop(&m->vm);
    machine_destroy_virtio(m);
    event_loop_destroy(&m->loop);
    vm_destroy(&m->vm);
    state_buf_free(&m->initial_cpu_state);
    uart_destroy(&m->uart);
    cmos_rtc_destroy(&m->rtc);
    pci_host_destroy(&m->pci);
    if (m->cfg && m->cfg->bios) {
        fw_cfg_destroy(&m->fw_cfg);
    }
    if (m->console_is_tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
    }
    if (m->console_out > STDERR_FILENO) {
        close(m->console_out);
    }
    if (m->console_in > STDERR_FILENO && m->console_in != m->console_out) {
        close(m->console_in);
    }
    if (m->console_listen >= 0) {
        close(m->console_listen);
    }
}
