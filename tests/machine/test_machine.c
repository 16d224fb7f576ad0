/* The machine as a library: its device registry, its state stream and
 * two machines in one process (one saves, the other loads).
 *
 * Two kinds of machine:
 *  - a bare machine: the machine's own device composition (PC devices,
 *    fw_cfg) plus a virtio-rng on MMIO, over guest memory but without a KVM
 *    VM, so the registry and the state stream are tested everywhere;
 *  - a full machine (machine_create with the test guest), which needs
 *    /dev/kvm (skipped without it). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "bare_machine.h"
#include "machine/machine_int.h"
#include "machine/machine_state.h"
#include "util/log.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_rng.h"
#include "vmm/guest_memory_stream.h"
#include "vmm/host_input.h"

#define MEMORY (16ull << 20)

static const struct machine_config bare_config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

/* What a running guest would have done to the devices and its memory. */
static void use_devices(struct machine *m)
{
    uart_write(&m->uart, 7, 1, 0x5a);               /* scratch */
    uart_write(&m->uart, 3, 1, 0x03);               /* 8N1 */
    uart_receive(&m->uart, (const uint8_t *)"abc", 3);
    cmos_rtc_write(&m->rtc, 0, 1, 0x40);
    cmos_rtc_write(&m->rtc, 1, 1, 0xa5);
    i8042_write(&m->sys, 4, 1, 0x20);               /* read the command byte */
    pci_host_io_write(&m->pci, 0, 4, 0x80001234);
    fw_cfg_write(&m->fw_cfg, 0, 2, FW_CFG_FILE_DIR);
    fw_cfg_read(&m->fw_cfg, 1, 1);
    fw_cfg_read(&m->fw_cfg, 1, 1);
    struct virtio_mmio *t = m->virtio[0].mmio;
    virtio_mmio_write(t, 0x70, 4, 3);               /* ACKNOWLEDGE | DRIVER */
    virtio_mmio_write(t, 0x24, 4, 1);
    virtio_mmio_write(t, 0x20, 4, 1);               /* VERSION_1 */
    virtio_mmio_write(t, 0x70, 4, 0xb);             /* FEATURES_OK */
    virtio_mmio_write(t, 0x30, 4, 0);
    virtio_mmio_write(t, 0x38, 4, 16);
    virtio_mmio_write(t, 0x80, 4, 0x10000);
    virtio_mmio_write(t, 0x90, 4, 0x11000);
    virtio_mmio_write(t, 0xa0, 4, 0x12000);
    virtio_mmio_write(t, 0x44, 4, 1);
    virtio_mmio_write(t, 0x70, 4, 0xf);             /* DRIVER_OK */
    uint8_t *p = guest_memory_ptr(&m->vm.mem, 0x200000, 3 * 4096);
    assert_non_null(p);
    for (int i = 0; i < 3 * 4096; i++) {
        p[i] = (uint8_t)(i * 7 + 1);
    }
}


/* ---- comparing machines ---- */

static void save_device(struct registered_device *d, struct state_buf *b)
{
    struct error err = { 0 };
    state_buf_init(b);
    assert_int_equal(registered_device_save(d, b, &err), 0);
}

/* Does device name save the same bytes in a and b? */
static bool same_device_state(struct machine *a, struct machine *b, const char *name)
{
    struct registered_device *da = device_registry_find(&a->devices, name);
    struct registered_device *db = device_registry_find(&b->devices, name);
    assert_non_null(da);
    assert_non_null(db);
    struct state_buf sa, sb;
    save_device(da, &sa);
    save_device(db, &sb);
    bool same = sa.len == sb.len && memcmp(sa.data, sb.data, sa.len) == 0;
    state_buf_free(&sa);
    state_buf_free(&sb);
    return same;
}

/* The vCPUs and the in-kernel devices carry clocks that move on between
 * save and compare; everything else must be the same. */
static bool has_clock(const char *name)
{
    return strcmp(name, "kvm-vm") == 0 || strncmp(name, "vcpu.", 5) == 0;
}

static void assert_same_machine(struct machine *a, struct machine *b)
{
    assert_int_equal(a->devices.count, b->devices.count);
    for (int i = 0; i < a->devices.count; i++) {
        const char *name = a->devices.devices[i].name;
        if (!has_clock(name) && !same_device_state(a, b, name)) {
            fail_msg("device '%s' differs after the load", name);
        }
    }
    assert_int_equal(a->vm.mem.count, b->vm.mem.count);
    for (int i = 0; i < a->vm.mem.count; i++) {
        assert_int_equal(a->vm.mem.regions[i].size, b->vm.mem.regions[i].size);
        assert_memory_equal(a->vm.mem.regions[i].hva, b->vm.mem.regions[i].hva, a->vm.mem.regions[i].size);
    }
}

/* ---- tests of bare machines ---- */

static void test_two_bare_machines(void **state)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct error err = { 0 };
    struct bare_stream s;
    use_devices(a);
    assert_false(same_device_state(a, b, "uart"));
    bare_save(a, &s);
    assert_int_equal(bare_load(b, &s, &err), 0);
    assert_same_machine(a, b);
    close(s.fd);
    bare_destroy(a);
    bare_destroy(b);
}

/* Every registered device has exactly one section, in registry order,
 * between the configuration and guest RAM. */
static void assert_sections_match_registry(struct machine *m)
{
    struct error err = { 0 };
    struct bare_stream s;
    struct vmstate_reader r;
    bare_save(m, &s);
    assert_int_equal(vmstate_reader_begin(&r, vmstate_fd_io(&s.fd), s.size, &err), 0);
    assert_int_equal(vmstate_next_section(&r, &err), 0);
    assert_string_equal(r.section, "config");
    assert_int_equal(vmstate_section_finish(&r, &err), 0);
    for (int i = 0; i < m->devices.count; i++) {
        assert_int_equal(vmstate_next_section(&r, &err), 0);
        if (strcmp(r.section, m->devices.devices[i].name) != 0) {
            fail_msg("section %d is '%s', the registry's device %d is '%s'", i + 1, r.section, i,
                     m->devices.devices[i].name);
        }
        assert_int_equal(vmstate_section_finish(&r, &err), 0);
    }
    assert_int_equal(vmstate_next_section(&r, &err), 0);
    assert_string_equal(r.section, "ram");
    assert_int_equal(vmstate_section_finish(&r, &err), 0);
    assert_int_equal(vmstate_next_section(&r, &err), 1);
    vmstate_reader_free(&r);
    close(s.fd);
}

static void test_registry_in_stream(void **state)
{
    struct machine *m = bare_machine(&bare_config);
    /* The PC devices, ACPI, fw_cfg and the PCI host included. */
    static const char *expected[] = { "uart", "cmos-rtc", "system-ports", "pci-host", "acpi-pm", "acpi-pcihp",
                                      "fw-cfg", "virtio.0" };
    assert_int_equal(m->devices.count, 8);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        assert_string_equal(m->devices.devices[i].name, expected[i]);
    }
    assert_sections_match_registry(m);
    bare_destroy(m);
}

static void test_reset_through_registry(void **state)
{
    struct machine *a = bare_machine(&bare_config), *fresh = bare_machine(&bare_config);
    struct error err = { 0 };
    use_devices(a);
    assert_int_equal(device_registry_reset(&a->devices, &err), 0);
    /* Power-on state again; the CMOS keeps its NVRAM (a battery-backed
     * chip), the PCI host and fw_cfg have nothing a reset clears. */
    assert_true(same_device_state(a, fresh, "uart"));
    assert_true(same_device_state(a, fresh, "system-ports"));
    assert_false(same_device_state(a, fresh, "cmos-rtc"));
    /* The virtio device is back before feature negotiation (its config
     * generation goes on counting, as a driver may rely on). */
    struct virtio_device *d = a->virtio[0].dev;
    assert_int_equal(d->status, 0);
    assert_int_equal(d->guest_features, 0);
    assert_false(d->vqs[0].ready);
    assert_int_equal(a->virtio[0].mmio->queue_sel, 0);
    bare_destroy(a);
    bare_destroy(fresh);
}

/* A uart state whose receive FIFO claims more bytes than it holds. */
static void bad_uart_state(struct state_buf *b)
{
    static const uint8_t regs[9];
    state_buf_init(b);
    state_put_bytes(b, regs, sizeof(regs));
    state_put_bool(b, false);
    state_put_u8(b, 200);
}

static void test_load_failure_names_device(void **state)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct error err = { 0 };
    struct bare_stream s;
    struct vmstate_reader r;
    struct machine_state_image img;
    bare_save(a, &s);
    assert_int_equal(vmstate_reader_begin(&r, vmstate_fd_io(&s.fd), s.size, &err), 0);
    assert_int_equal(machine_state_read(b, &r, &img, &err), 0);
    struct state_buf bad;
    bad_uart_state(&bad);
    for (int i = 0; i < img.count; i++) {
        if (strcmp(img.device[i]->name, "uart") == 0) {
            free(img.data[i]);
            img.data[i] = malloc(bad.len);
            memcpy(img.data[i], bad.data, bad.len);
            img.len[i] = bad.len;
        }
    }
    assert_int_equal(machine_state_apply(b, &img, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "loading device 'uart'"));
    state_buf_free(&bad);
    machine_state_image_free(&img);
    vmstate_reader_free(&r);
    close(s.fd);
    bare_destroy(a);
    bare_destroy(b);
}

/* A device added with one registration takes part in pause and resume. */
struct probe {
    int quiesced, resumed;
};

static void probe_quiesce(void *dev)
{
    ((struct probe *)dev)->quiesced++;
}

static void probe_resume(void *dev)
{
    ((struct probe *)dev)->resumed++;
}

static const struct device_ops probe_ops = { .version = 1, .quiesce = probe_quiesce, .resume = probe_resume };

/* A stream with a device this machine lacks is refused, naming it. */
static void test_extra_device_refused(void **state)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct error err = { 0 };
    struct bare_stream s;
    struct vmstate_reader r;
    struct machine_state_image img;
    struct probe probe = { 0 };
    assert_int_equal(machine_add_device(a, "probe", 7, &probe_ops, &probe, &err), 0);
    bare_save(a, &s);
    assert_int_equal(vmstate_reader_begin(&r, vmstate_fd_io(&s.fd), s.size, &err), 0);
    assert_int_equal(machine_state_read(b, &r, &img, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "device 'probe.7', which this machine lacks"));
    vmstate_reader_free(&r);
    close(s.fd);
    bare_destroy(a);
    bare_destroy(b);
}

/* State newer than the device reads is refused before anything loads. */
static void test_newer_version_refused(void **state)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct error err = { 0 };
    struct bare_stream s;
    struct vmstate_reader r;
    struct machine_state_image img;
    struct device_ops newer = *a->devices.devices[0].ops;
    newer.version++;
    a->devices.devices[0].ops = &newer;
    bare_save(a, &s);
    assert_int_equal(vmstate_reader_begin(&r, vmstate_fd_io(&s.fd), s.size, &err), 0);
    assert_int_equal(machine_state_read(b, &r, &img, &err), -ENOTSUP);
    assert_non_null(strstr(err.msg, "device 'uart' has version 2; this cowvisor reads up to 1"));
    vmstate_reader_free(&r);
    close(s.fd);
    a->devices.devices[0].ops = b->devices.devices[0].ops;
    bare_destroy(a);
    bare_destroy(b);
}

/* A stream without a registered device's section is refused, naming it. */
static void test_missing_device_refused(void **state)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct error err = { 0 };
    struct bare_stream s;
    struct vmstate_reader r;
    struct machine_state_image img;
    a->devices.count--;     /* a saves without its virtio-rng */
    bare_save(a, &s);
    a->devices.count++;
    assert_int_equal(vmstate_reader_begin(&r, vmstate_fd_io(&s.fd), s.size, &err), 0);
    assert_int_equal(machine_state_read(b, &r, &img, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no section for device 'virtio.0'"));
    vmstate_reader_free(&r);
    close(s.fd);
    bare_destroy(a);
    bare_destroy(b);
}

/* A socket has no offsets: the same stream goes through it front to back
 * (a writer thread, as a migration source would be another process). */
struct sender {
    struct machine *m;
    int fd;
    int ret;
    struct error err;
};

static void *send_machine(void *opaque)
{
    struct sender *s = opaque;
    struct vmstate_writer w;
    int64_t n = 0;
    s->ret = vmstate_writer_begin(&w, vmstate_pipe_io(&s->fd), &s->err);
    if (s->ret == 0 && (s->ret = machine_state_save(s->m, &w, &s->err)) == 0 &&
        (s->ret = guest_memory_stream_write(&s->m->vm.mem, &w, &s->err)) == 0) {
        n = vmstate_writer_finish(&w, &s->err);
        s->ret = n < 0 ? (int)n : 0;
    }
    vmstate_writer_free(&w);
    close(s->fd);
    return NULL;
}

static void test_stream_over_socket(void **state)
{
    struct machine *a = bare_machine(&bare_config), *b = bare_machine(&bare_config);
    struct error err = { 0 };
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    use_devices(a);
    struct sender snd = { .m = a, .fd = sv[0] };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_machine, &snd), 0);
    struct vmstate_reader r;
    struct machine_state_image img;
    int ret = vmstate_reader_begin(&r, vmstate_pipe_io(&sv[1]), UINT64_MAX, &err);
    if (ret == 0 && (ret = machine_state_read(b, &r, &img, &err)) == 0) {
        if ((ret = vmstate_next_section(&r, &err)) == 0 && (ret = guest_memory_stream_load(&b->vm.mem, &r, &err)) == 0) {
            ret = machine_state_apply(b, &img, &err);
        }
        machine_state_image_free(&img);
    }
    if (ret == 0) {
        ret = vmstate_next_section(&r, &err) == 1 ? 0 : -EINVAL;    /* the end, and nothing after it */
    }
    vmstate_reader_free(&r);
    pthread_join(t, NULL);
    close(sv[1]);
    if (ret < 0 || snd.ret < 0) {
        fail_msg("over a socket: %s%s", err.msg, snd.err.msg);
    }
    assert_same_machine(a, b);
    bare_destroy(a);
    bare_destroy(b);
}

static enum machine_event events[8];
static int nevents;

static void record_event(void *opaque, enum machine_event ev, bool guest)
{
    if (nevents < 8) {
        events[nevents++] = ev;
    }
}

static void test_pause_and_resume(void **state)
{
    struct machine *m = bare_machine(&bare_config);
    struct error err = { 0 };
    struct probe probe = { 0 };
    assert_int_equal(machine_add_device(m, "probe", -1, &probe_ops, &probe, &err), 0);
    nevents = 0;
    machine_set_event_hook(m, record_event, NULL);
    assert_int_equal(machine_run_state(m), MACHINE_RUNNING);
    machine_pause(m);
    machine_pause(m);       /* already paused: nothing happens */
    assert_int_equal(machine_run_state(m), MACHINE_PAUSED);
    assert_int_equal(probe.quiesced, 1);
    assert_int_equal(probe.resumed, 0);
    machine_resume(m);
    assert_int_equal(machine_run_state(m), MACHINE_RUNNING);
    assert_int_equal(probe.resumed, 1);
    assert_int_equal(nevents, 2);
    assert_int_equal(events[0], MACHINE_EVENT_STOP);
    assert_int_equal(events[1], MACHINE_EVENT_RESUME);
    /* A host reset while paused waits for the resume. */
    machine_pause(m);
    machine_request_reset(m);
    assert_true(m->reset_pending);
    assert_false(m->host_reset);
    machine_resume(m);
    assert_false(m->reset_pending);
    assert_true(m->host_reset);
    machine_set_event_hook(m, NULL, NULL);
    bare_destroy(m);
}

/* The pause a migration stops the guest with marks every ready used ring
 * dirty (the VMM writes them around KVM's dirty log): the final pass
 * sends their last content. Only they: guest memory is otherwise clean. */
static void test_pause_marks_used_rings_dirty(void **state)
{
    struct machine *m = bare_machine(&bare_config);
    struct error err = { 0 };
    struct virtqueue *vq = &m->virtio[0].dev->vqs[0];
    const uint64_t used = 0x22000;
    vq->size = 16;
    vq->desc_addr = 0x20000;
    vq->avail_addr = 0x21000;
    vq->used_addr = used;
    assert_int_equal(virtqueue_enable(vq, &m->vm.mem, false, &err), 0);
    struct guest_bitmap dirty;
    assert_int_equal(guest_bitmap_init(&dirty, &m->vm.mem, &err), 0);
    assert_int_equal(guest_memory_dirty_start(&m->vm.mem, &err), 0);
    machine_pause(m);
    assert_int_equal(guest_memory_dirty_harvest(&m->vm.mem, &dirty, &err), 0);
    assert_int_equal(guest_bitmap_count(&dirty), 1);
    assert_true(dirty.bits[0][(used >> 12) / 64] & 1ull << ((used >> 12) % 64));
    machine_resume(m);
    guest_memory_dirty_stop(&m->vm.mem);
    guest_bitmap_free(&dirty);
    bare_destroy(m);
}

/* Host inputs pass the seam, where an observer (a recorder) sees them. */
static int seen[HOST_INPUT_BLOCK + 1];

static void count_input(void *opaque, enum host_input_source src, const void *data, size_t len)
{
    seen[src]++;
}

static void test_host_inputs_observed(void **state)
{
    struct machine *m = bare_machine(&bare_config);
    int p[2];
    uint8_t buf[8];
    memset(seen, 0, sizeof(seen));
    host_input_set_observer(count_input, NULL);
    cmos_rtc_write(&m->rtc, 0, 1, 0);               /* the seconds register */
    cmos_rtc_read(&m->rtc, 1, 1);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "hi", 2), 2);
    assert_int_equal(host_input_console(p[0], buf, sizeof(buf)), 2);
    assert_int_equal(host_input_entropy(buf, sizeof(buf)), (ssize_t)sizeof(buf));
    host_input_set_observer(NULL, NULL);
    assert_true(seen[HOST_INPUT_CLOCK] >= 1);
    assert_int_equal(seen[HOST_INPUT_CONSOLE], 1);
    assert_int_equal(seen[HOST_INPUT_ENTROPY], 1);
    close(p[0]);
    close(p[1]);
    bare_destroy(m);
}

/* ---- full machines (KVM) ---- */

static bool have_kvm(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

static struct machine_config full_config(void)
{
    return (struct machine_config){
        .kernel = getenv("COWVISOR_GUEST"), .cpus = 2, .memory = 64ull << 20, .console = "file:/dev/null",
        .nrng = 2, .rng = { TRANSPORT_MMIO, TRANSPORT_PCI }, .nvconsole = 1, .vconsole = { TRANSPORT_PCI },
    };
}

static void test_two_full_machines(void **state)
{
    if (!have_kvm() || !getenv("COWVISOR_GUEST")) {
        print_message("no /dev/kvm (or COWVISOR_GUEST): full machines skipped\n");
        skip();
    }
    struct machine_config cfg = full_config();
    struct machine *a = NULL, *b = NULL;
    struct error err = { 0 };
    struct bare_stream s;
    if (machine_create(&a, &cfg, &err) < 0 || machine_create(&b, &cfg, &err) < 0) {
        fail_msg("machine_create: %s", err.msg);
    }
    uint8_t *p = guest_memory_ptr(&a->vm.mem, 0x300000, 4096);
    memset(p, 0x3c, 4096);
    uart_write(&a->uart, 7, 1, 0x77);
    assert_sections_match_registry(a);
    bare_save(a, &s);
    if (bare_load(b, &s, &err) < 0) {
        fail_msg("load: %s", err.msg);
    }
    assert_same_machine(a, b);
    if (device_registry_reset(&b->devices, &err) < 0) {
        fail_msg("reset: %s", err.msg);
    }
    assert_false(same_device_state(a, b, "uart"));
    close(s.fd);
    machine_destroy(a);
    machine_destroy(b);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_bare_machines),
        cmocka_unit_test(test_registry_in_stream),
        cmocka_unit_test(test_reset_through_registry),
        cmocka_unit_test(test_load_failure_names_device),
        cmocka_unit_test(test_missing_device_refused),
        cmocka_unit_test(test_newer_version_refused),
        cmocka_unit_test(test_extra_device_refused),
        cmocka_unit_test(test_stream_over_socket),
        cmocka_unit_test(test_host_inputs_observed),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_pause_marks_used_rings_dirty),
        cmocka_unit_test(test_two_full_machines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
