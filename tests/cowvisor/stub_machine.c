/* A machine without a guest (see stub_machine.h). */
#include "stub_machine.h"

#include "block/block_job.h"
#include "block/blockdev.h"
#include "machine/block_nodes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "machine/console_mux.h"

#include "block/blockdev.h"

struct machine {
    const struct machine_config *cfg;
    struct event_loop loop;
    enum machine_run_state state;
    machine_event_fn hook;
    void *hook_opaque;
    int pauses, resumes, resets, quits, power_buttons;
    bool memory_lost;
    uint64_t disk_size[MACHINE_MAX_DISKS];  /* 0: 8 MiB */
    struct machine_replay_info replay;
    char replay_file[64];
    uint64_t replay_break;
    uint64_t replay_seek;
    /* Disk files that exist and open are real images (for block jobs);
     * the others are a fixed 8 MiB qcow2 layer. */
    struct blockdev *disks[MACHINE_MAX_DISKS];
    bool tried[MACHINE_MAX_DISKS];
    struct block_node_table nodes;
    /* device_add'ed devices: their ids and nodes, and whether the guest
     * was asked to eject them. */
    struct {
        char id[64];
        char path[MACHINE_QOM_PATH_MAX];
        struct block_node *node;
        bool unplugging;
        struct machine_blk_options serving;
    } hotplug[8];
    machine_device_deleted_fn deleted_hook;
    void *deleted_opaque;
    int eject_fd;               /* the guest's eject, served in the main loop as the machine's */
    char eject_id[64];
    struct console_mux mux;     /* stub_machine_console_stdio */
    bool console_tty;
    struct termios saved_termios;
};

struct block_node_table *machine_block_nodes(struct machine *m) { return &m->nodes; }

static struct blockdev *real_disk(struct machine *m, int i)
{
    const struct disk_config *d = &m->cfg->disks[i];
    if (!m->tried[i]) {
        struct blockdev_open_opts o = { .format = d->format, .flags = d->read_only ? BDEV_READ_ONLY : 0 };
        m->tried[i] = true;
        if (blockdev_open(&m->disks[i], d->file, &o, NULL) < 0) {
            m->disks[i] = NULL;
        }
    }
    return m->disks[i];
}

/* The entry id (or QOM path) names, or -1. */
static int find_device(struct machine *m, const char *name)
{
    for (int i = 0; i < 8; i++) {
        if (m->hotplug[i].path[0] && (!strcmp(m->hotplug[i].id, name) || !strcmp(m->hotplug[i].path, name))) {
            return i;
        }
    }
    return -1;
}

static void eject_in_loop(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        return;
    }
    int i = find_device(m, m->eject_id);
    if (i >= 0) {
        char id[64], path[MACHINE_QOM_PATH_MAX];
        snprintf(id, sizeof(id), "%s", m->hotplug[i].id);
        snprintf(path, sizeof(path), "%s", m->hotplug[i].path);
        block_node_detach(m->hotplug[i].node);
        memset(&m->hotplug[i], 0, sizeof(m->hotplug[i]));
        if (m->deleted_hook) {
            m->deleted_hook(m->deleted_opaque, id[0] ? id : NULL, path);
        }
    }
}

struct machine *stub_machine_create(const struct machine_config *cfg)
{
    struct machine *m = calloc(1, sizeof(*m));
    struct error err = { 0 };
    if (!m || event_loop_init(&m->loop, &err) < 0) {
        abort();
    }
    m->cfg = cfg;
    console_mux_init(&m->mux, STDOUT_FILENO);
    m->eject_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->eject_fd < 0 || event_loop_add(&m->loop, m->eject_fd, EPOLLIN, eject_in_loop, m, &err) < 0) {
        abort();
    }
    return m;
}

static void console_in(void *opaque, int fd, uint32_t events)
{
    struct machine *m = opaque;
    uint8_t buf[64];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
        event_loop_remove(&m->loop, fd);
        return;
    }
    bool quit = false;
    size_t k = console_mux_input(&m->mux, buf, (size_t)n, &quit);
    if (k && write(STDOUT_FILENO, buf, k) < 0) {
        /* the terminal is gone: nothing to echo to */
    }
    if (quit) {
        machine_quit(m);
    }
}

bool stub_machine_console_stdio(struct machine *m)
{
    struct error err = { 0 };
    if (!console_tty_raw(STDIN_FILENO, &m->saved_termios)) {
        return false;
    }
    m->console_tty = true;
    if (event_loop_add(&m->loop, STDIN_FILENO, EPOLLIN, console_in, m, &err) < 0) {
        abort();
    }
    return true;
}

void machine_set_console_monitor(struct machine *m, console_monitor_fn fn, void *opaque)
{
    console_mux_set_monitor(&m->mux, fn, opaque);
}

void stub_machine_destroy(struct machine *m)
{
    if (m->console_tty) {
        event_loop_remove(&m->loop, STDIN_FILENO);
        console_tty_restore(STDIN_FILENO, &m->saved_termios);
    }
    block_nodes_close_all(&m->nodes);
    for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
        blockdev_close(m->disks[i]);
    }
    event_loop_remove(&m->loop, m->eject_fd);
    close(m->eject_fd);
    event_loop_destroy(&m->loop);
    free(m);
}

int stub_machine_calls(struct machine *m, const char *what)
{
    return strcmp(what, "pause") == 0 ? m->pauses : strcmp(what, "resume") == 0 ? m->resumes
         : strcmp(what, "reset") == 0 ? m->resets : strcmp(what, "power-button") == 0 ? m->power_buttons
         : m->quits;
}

static void emit(struct machine *m, enum machine_event ev)
{
    if (m->hook) {
        m->hook(m->hook_opaque, ev, false);
    }
}

void stub_machine_set_replay(struct machine *m, enum machine_replay_mode mode, const char *file, uint64_t icount)
{
    snprintf(m->replay_file, sizeof(m->replay_file), "%s", file ? file : "");
    m->replay = (struct machine_replay_info){ mode, file ? m->replay_file : NULL, icount };
}

void machine_replay_query(struct machine *m, struct machine_replay_info *out) { *out = m->replay; }

int machine_replay_set_break(struct machine *m, uint64_t icount, struct error *err)
{
    if (m->replay.mode != MACHINE_REPLAY_PLAY) {
        return error_set(err, -EINVAL, "setting the breakpoint is allowed only in play mode");
    }
    m->replay_break = icount;
    return 0;
}

int machine_replay_seek(struct machine *m, uint64_t icount, struct error *err)
{
    if (m->replay.mode != MACHINE_REPLAY_PLAY) {
        return error_set(err, -EINVAL, "replay must be enabled to seek");
    }
    m->replay_seek = icount;
    return 0;
}

uint64_t stub_machine_replay_seek(struct machine *m) { return m->replay_seek; }

uint64_t stub_machine_replay_break(struct machine *m) { return m->replay_break; }

const struct machine_config *machine_config(const struct machine *m) { return m->cfg; }
struct event_loop *machine_loop(struct machine *m) { return &m->loop; }
enum machine_run_state machine_run_state(const struct machine *m) { return m->state; }

void machine_pause(struct machine *m)
{
    m->pauses++;
    if (m->state == MACHINE_RUNNING) {
        m->state = MACHINE_PAUSED;
        emit(m, MACHINE_EVENT_STOP);
    }
}

void machine_resume(struct machine *m)
{
    m->resumes++;
    if (m->state == MACHINE_PAUSED) {
        m->state = MACHINE_RUNNING;
        emit(m, MACHINE_EVENT_RESUME);
    }
}

void machine_request_reset(struct machine *m)
{
    m->resets++;
    __atomic_store_n(&m->memory_lost, false, __ATOMIC_SEQ_CST);
}

bool machine_needs_reset(const struct machine *m) { return __atomic_load_n(&m->memory_lost, __ATOMIC_SEQ_CST); }

void stub_machine_lose_memory(struct machine *m)
{
    machine_pause(m);
    __atomic_store_n(&m->memory_lost, true, __ATOMIC_SEQ_CST);
}

/* A device's path, or a cold-plugged disk's (device[i], never ejected here). */
static bool path_taken(void *opaque, const char *path)
{
    struct machine *m = opaque;
    for (int i = 0; i < m->cfg->ndisks; i++) {
        char cold[MACHINE_QOM_PATH_MAX];
        snprintf(cold, sizeof(cold), "/machine/peripheral-anon/device[%d]", i);
        if (!strcmp(cold, path)) {
            return true;
        }
    }
    return find_device(m, path) >= 0;
}

/* The bare machine's test (tests/machine/test_hotplug.c) checks the real
 * rules; this keeps what QMP needs: ids, nodes, the pending eject, and
 * names devices with the machine's own rule (machine_device_path). */
int machine_device_add_virtio_blk(struct machine *m, const char *id, const char *drive, struct error *err)
{
    return machine_device_add_virtio_blk_with(m, id, drive, &(struct machine_blk_options){ 0 }, err);
}

int machine_device_add_virtio_blk_with(struct machine *m, const char *id, const char *drive,
                                       const struct machine_blk_options *o, struct error *err)
{
    if (id && find_device(m, id) >= 0) {
        return error_set(err, -EEXIST, "Duplicate device ID '%s'", id);
    }
    int free_entry = -1;
    for (int i = 0; i < 8 && free_entry < 0; i++) {
        free_entry = m->hotplug[i].path[0] ? -1 : i;
    }
    struct block_node *n = machine_block_node_find(m, drive);
    if (!n) {
        return error_set(err, -ENOENT, "Property 'virtio-blk-device.drive' can't find value '%s'", drive);
    }
    if (free_entry < 0) {
        return error_set(err, -ENOSPC, "PCI: no slot/function available for virtio-blk-pci, all in use or reserved");
    }
    char path[MACHINE_QOM_PATH_MAX];
    machine_device_path(path, sizeof(path), id, path_taken, m);
    int ret = block_node_attach(machine_block_nodes(m), n, path, err);
    if (ret == 0) {
        snprintf(m->hotplug[free_entry].id, sizeof(m->hotplug[0].id), "%s", id ? id : "");
        snprintf(m->hotplug[free_entry].path, sizeof(m->hotplug[0].path), "%s", path);
        m->hotplug[free_entry].node = n;
        m->hotplug[free_entry].unplugging = false;
        m->hotplug[free_entry].serving = *o;
    }
    return ret;
}

bool stub_machine_device_serving(struct machine *m, const char *id, struct machine_blk_options *o)
{
    int i = find_device(m, id);
    if (i >= 0) {
        *o = m->hotplug[i].serving;
    }
    return i >= 0;
}

int machine_device_del(struct machine *m, const char *id, struct error *err)
{
    int i = find_device(m, id);
    if (i < 0) {
        return error_set(err, -ENODEV, "Device '%s' not found", id);
    }
    if (m->hotplug[i].unplugging) {
        return error_set(err, -EALREADY, "Device %s is already in the process of unplug", id);
    }
    m->hotplug[i].unplugging = true;
    return 0;
}

int machine_hotplugged_disks(struct machine *m, struct machine_hotplugged_disk *out, int max)
{
    int n = 0;
    for (int i = 0; i < 8 && n < max; i++) {
        if (m->hotplug[i].path[0]) {
            out[n++] = (struct machine_hotplugged_disk){ .id = m->hotplug[i].id[0] ? m->hotplug[i].id : NULL,
                                                         .path = m->hotplug[i].path,
                                                         .node = m->hotplug[i].node->name,
                                                         .stats = { .idle_ns = -1 } };
        }
    }
    return n;
}

void machine_set_device_deleted_hook(struct machine *m, machine_device_deleted_fn fn, void *opaque)
{
    m->deleted_hook = fn;
    m->deleted_opaque = opaque;
}

void stub_machine_guest_eject(struct machine *m, const char *id)
{
    uint64_t one = 1;
    snprintf(m->eject_id, sizeof(m->eject_id), "%s", id);
    if (write(m->eject_fd, &one, sizeof(one)) != sizeof(one)) {
        abort();
    }
}

void machine_power_button(struct machine *m)
{
    m->power_buttons++;
}

void machine_quit(struct machine *m)
{
    m->quits++;
    event_loop_stop(&m->loop);
}

void machine_set_event_hook(struct machine *m, machine_event_fn fn, void *opaque)
{
    m->hook = fn;
    m->hook_opaque = opaque;
}

int machine_cpu_count(const struct machine *m) { return m->cfg->cpus; }
int machine_cpu_thread_id(const struct machine *m, int i) { return 0; }
int machine_disk_count(const struct machine *m) { return m->cfg->ndisks; }

/* The real image when the disk's file exists (dirty bitmap commands and
 * block jobs use it). */
static struct blockdev *stub_disk(struct machine *m, int i)
{
    return real_disk(m, i);
}

int machine_disk_chain(struct machine *m, int i, struct disk_layer *out, int max, bool *read_only)
{
    const struct disk_config *d = &m->cfg->disks[i];
    if (real_disk(m, i)) {
        int n = 0;
        *read_only = blockdev_is_read_only(m->disks[i]);
        for (struct blockdev *bd = m->disks[i]; bd && n < max; bd = blockdev_backing(bd)) {
            out[n++] = (struct disk_layer){ blockdev_filename(bd), blockdev_format(bd), blockdev_backing_filename(bd),
                                            blockdev_size(bd), blockdev_cluster_size(bd), bd };
        }
        return n;
    }
    out[0] = (struct disk_layer){ .filename = d->file, .format = d->format ? d->format : "raw",
                                  .size = m->disk_size[i] ? m->disk_size[i] : 8u << 20, .cluster_size = 65536,
                                  .bd = stub_disk(m, i) };
    *read_only = d->read_only;
    return 1;
}

static int no_guest(struct error *err)
{
    return error_set(err, -ENOTSUP, "the stub machine has no guest");
}

int machine_disk_overlay(struct machine *m, int i, const char *file, struct error *err) { return no_guest(err); }
int machine_snapshot_files(struct machine *m, const char *dir, bool diff, struct error *err) { return no_guest(err); }
int machine_savevm(struct machine *m, const char *name, struct error *err) { return no_guest(err); }
int machine_loadvm(struct machine *m, const char *name, bool *changed, struct error *err)
{
    if (changed) {
        *changed = false;
    }
    return no_guest(err);
}
int machine_delvm(struct machine *m, const char *name, struct error *err) { return no_guest(err); }

char *machine_info_snapshots(struct machine *m, struct error *err)
{
    no_guest(err);
    return NULL;
}

/* Counters a guest would have made: 3 reads of 4 KiB, 1 write, 1 flush. */
int machine_disk_stats(struct machine *m, int i, struct machine_disk_stats *out)
{
    *out = (struct machine_disk_stats){ .rd_bytes = 12288, .wr_bytes = 4096, .rd_ops = 3, .wr_ops = 1,
                                        .flush_ops = 1, .idle_ns = 1000 };
    return 0;
}

/* The host bridge and one virtio-blk-pci function with a 16 KiB BAR. */
int machine_pci_list(struct machine *m, struct machine_pci_function *out, int max)
{
    static const uint8_t bridge[] = { 0x86, 0x80, 0x37, 0x12 };
    static const uint8_t blk[] = { 0xf4, 0x1a, 0x42, 0x10 };
    memset(out, 0, 2 * sizeof(*out));
    memcpy(out[0].config, bridge, 4);
    out[0].config[0x0b] = 0x06;
    out[1].slot = 1;
    memcpy(out[1].config, blk, 4);
    out[1].config[0x0b] = 0x01;
    out[1].config[0x10] = 0x00;
    out[1].config[0x13] = 0xe0;         /* BAR0 at 0xe0000000 */
    out[1].config[0x3c] = 11;
    out[1].config[0x3d] = 1;
    out[1].bar_size[0] = 16384;
    return 2;
}

/* Registers of a vCPU in 64-bit mode; refused while running, as the
 * machine does. */
int machine_cpu_registers(struct machine *m, int i, struct machine_cpu_regs *out, struct error *err)
{
    if (m->state == MACHINE_RUNNING) {
        return error_set(err, -EBUSY, "the machine is running (pause it first)");
    }
    *out = (struct machine_cpu_regs){ .rip = 0x100000 + (uint64_t)i, .rflags = 2, .cr0 = 0x80000011,
                                      .efer = 0x500, .cs = { .selector = 8, .limit = 0xffffffff, .flags = 0xa09b00 } };
    out->gpr[0] = 0x1234;
    return 0;
}

/* As a qcow2 image: sizes are whole sectors. */
int machine_disk_resize(struct machine *m, int i, uint64_t size, struct error *err)
{
    if (size % 512) {
        return error_set(err, -EINVAL, "The new size must be a multiple of 512");
    }
    if (real_disk(m, i)) {
        return blockdev_truncate(m->disks[i], size, true, PREALLOC_OFF, err);
    }
    m->disk_size[i] = size;
    return 0;
}

/* A block job's host over the real image: no guest to drain. */
struct disk_ref {
    struct machine *m;
    int i;
};
static struct disk_ref refs[MACHINE_MAX_DISKS];

static struct blockdev *job_top(void *opaque)
{
    struct disk_ref *r = opaque;
    return r->m->disks[r->i];
}

static void no_guest_to_drain(void *opaque)
{
}

static int job_replace(void *opaque, const char *filename, const char *format, struct error *err)
{
    struct disk_ref *r = opaque;
    blockdev_close(r->m->disks[r->i]);
    r->m->disks[r->i] = NULL;
    struct blockdev_open_opts o = { .format = format };
    return blockdev_open(&r->m->disks[r->i], filename, &o, err);
}

int machine_disk_job_host(struct machine *m, int i, struct block_job_host *out, struct error *err)
{
    if (!real_disk(m, i)) {
        return error_set(err, -ENODEV, "the stub machine's disk %d is no image it could open", i);
    }
    refs[i] = (struct disk_ref){ m, i };
    *out = (struct block_job_host){ .top = job_top, .drain_begin = no_guest_to_drain, .drain_end = no_guest_to_drain,
                                    .replace = job_replace, .opaque = &refs[i] };
    return 0;
}
