/* savevm/loadvm/delvm: internal snapshots of every writable qcow2 disk,
 * with the VM-state stream (RAM included) in the VM-state area of the
 * first one, as QEMU does. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/blockdev.h"
#include "machine/machine_state.h"
#include "util/size.h"
#include "vmm/guest_memory_stream.h"

struct vmstate_area {
    struct blockdev *bd;
    const char *snapshot;       /* read the snapshot's own area; NULL: the active one */
};

static int area_write(void *opaque, uint64_t pos, const void *buf, size_t len, struct error *err)
{
    struct vmstate_area *a = opaque;
    return blockdev_vmstate_write(a->bd, pos, buf, len, err);
}

static int area_read(void *opaque, uint64_t pos, void *buf, size_t len, struct error *err)
{
    struct vmstate_area *a = opaque;
    if (a->snapshot) {
        return blockdev_snapshot_vmstate_read(a->bd, a->snapshot, pos, buf, len, err);
    }
    return blockdev_vmstate_read(a->bd, pos, buf, len, err);
}

static const char *disk_name(struct machine *m, int i, char *buf, size_t n)
{
    snprintf(buf, n, "disk%d", i);
    (void)m;
    return buf;
}

/* The writable disks must all be qcow2; returns the first (the one that
 * takes the VM state) or -errno. */
static int snapshot_disks(struct machine *m, struct error *err)
{
    int first = -1;
    char name[16];
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct blockdev *bd = m->disks[i];
        if (!bd || blockdev_is_read_only(bd)) {
            continue;
        }
        if (!blockdev_has_snapshots(bd)) {
            return error_set(err, -ENOTSUP, "Device '%s' is writable but does not support snapshots "
                             "(%s is %s, not qcow2)", disk_name(m, i, name, sizeof(name)), blockdev_filename(bd),
                             blockdev_format(bd));
        }
        if (first < 0) {
            first = i;
        }
    }
    if (first < 0) {
        return error_set(err, -ENOTSUP, "No block device can accept snapshots");
    }
    return first;
}

/* Index in list of the snapshot called id_or_name (id first), or -1. */
static int find_snapshot(const struct blockdev_snapshot_info *list, int n, const char *id_or_name)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i].id, id_or_name) == 0) {
            return i;
        }
    }
    for (int i = 0; i < n; i++) {
        if (list[i].name && strcmp(list[i].name, id_or_name) == 0) {
            return i;
        }
    }
    return -1;
}

static int has_snapshot(struct blockdev *bd, const char *name, struct blockdev_snapshot_info *out, struct error *err)
{
    struct blockdev_snapshot_info *list = NULL;
    int n = 0;
    int ret = blockdev_snapshot_list(bd, &list, &n, err);
    if (ret < 0) {
        return ret;
    }
    int i = find_snapshot(list, n, name);
    if (i >= 0 && out) {
        *out = list[i];
        out->name = NULL;
    }
    blockdev_snapshot_list_free(list, n);
    return i >= 0;
}

int machine_savevm(struct machine *m, const char *name, struct error *err)
{
    int intact = machine_memory_intact(m, err);
    if (intact < 0) {
        return intact;
    }
    int first = snapshot_disks(m, err);
    if (first < 0) {
        return first;
    }
    int ret;
    /* Like QEMU, a snapshot of the same name is replaced. */
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct blockdev *bd = m->disks[i];
        if (bd && !blockdev_is_read_only(bd) && (ret = has_snapshot(bd, name, NULL, err)) != 0) {
            if (ret < 0 || (ret = blockdev_snapshot_delete(bd, name, err)) < 0) {
                return ret;
            }
        }
    }
    struct vmstate_area area = { m->disks[first], NULL };
    struct vmstate_writer w;
    struct vmstate_io io = { area_write, area_read, &area, false };
    int64_t size = 0;
    if ((ret = vmstate_writer_begin(&w, io, err)) == 0 && (ret = machine_state_save(m, &w, err)) == 0 &&
        (ret = guest_memory_stream_write(&m->vm.mem, &w, err)) == 0 && (ret = machine_memory_intact(m, err)) == 0) {
        size = vmstate_writer_finish(&w, err);
        ret = size < 0 ? (int)size : 0;
    }
    vmstate_writer_free(&w);
    if (ret < 0) {
        error_prefix(err, "Error while writing VM state");
        return ret;
    }
    uint64_t clock_ns = 0;
    vm_clock_ns(&m->vm, &clock_ns, NULL);    /* 0 when unknown, as before */
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct blockdev *bd = m->disks[i];
        if (!bd || blockdev_is_read_only(bd)) {
            continue;
        }
        struct blockdev_snapshot_vm vm = { (uint64_t)size, clock_ns, -1 };
        if ((ret = blockdev_flush(bd, err)) < 0 ||
            (ret = blockdev_snapshot_create(bd, name, i == first && size ? &vm : NULL, err)) < 0) {
            error_prefix(err, "Error while creating snapshot on '%s'", blockdev_filename(bd));
            return ret;
        }
    }
    return 0;
}

int machine_loadvm(struct machine *m, const char *name, bool *changed, struct error *err)
{
    bool dummy;
    changed = changed ? changed : &dummy;
    *changed = false;
    int first = snapshot_disks(m, err);
    if (first < 0) {
        return first;
    }
    struct blockdev_snapshot_info info;
    int ret;
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct blockdev *bd = m->disks[i];
        if (bd && !blockdev_is_read_only(bd)) {
            ret = has_snapshot(bd, name, i == first ? &info : NULL, err);
            if (ret < 0) {
                return ret;
            }
            if (ret == 0) {
                return error_set(err, -ENOENT, "Snapshot '%s' does not exist in one or more devices", name);
            }
        }
    }
    if (info.vm_state_size == 0) {
        return error_set(err, -EINVAL, "Snapshot '%s' is a disk-only snapshot. Revert to it offline using qemu-img",
                         name);
    }
    bool was_quiesced = m->quiesced;
    machine_quiesce(m);
    /* Read and check everything but RAM before the disks change. */
    struct vmstate_area area = { m->disks[first], name };
    struct vmstate_io io = { area_write, area_read, &area, false };
    struct vmstate_reader r;
    struct machine_state_image img;
    memset(&img, 0, sizeof(img));
    if ((ret = vmstate_reader_begin(&r, io, info.vm_state_size, err)) == 0) {
        ret = machine_state_read(m, &r, &img, err);
    }
    for (int i = 0; ret == 0 && i < m->cfg->ndisks; i++) {
        struct blockdev *bd = m->disks[i];
        *changed = true;
        if (bd && !blockdev_is_read_only(bd) && (ret = blockdev_snapshot_apply(bd, name, err)) < 0) {
            error_prefix(err, "Could not apply snapshot '%s' on '%s'", name, blockdev_filename(bd));
        }
    }
    if (ret == 0) {
        ret = vmstate_next_section(&r, err);
        if (ret == 0 && strcmp(r.section, "ram") == 0) {
            ret = guest_memory_stream_load(&m->vm.mem, &r, err);
        } else if (ret >= 0) {
            ret = error_set(err, -EINVAL, "VM state has section '%s' where 'ram' was expected",
                            ret == 1 ? "end" : r.section);
        }
        if (ret == 0 && (ret = vmstate_next_section(&r, err)) == 0) {
            ret = error_set(err, -EINVAL, "VM state has an unexpected section '%s'", r.section);
        } else if (ret == 1) {
            ret = 0;
        }
    }
    if (ret == 0) {
        ret = machine_state_apply(m, &img, err);
    }
    if (ret == 0) {
        /* A later diff snapshot has no parent that matches this RAM. */
        machine_forget_snapshot_chain(m);
    }
    machine_state_image_free(&img);
    vmstate_reader_free(&r);
    if (!was_quiesced) {
        machine_unquiesce(m);
    }
    if (ret < 0) {
        error_prefix(err, "Error while loading VM state");
    }
    return ret;
}

int machine_delvm(struct machine *m, const char *name, struct error *err)
{
    int first = snapshot_disks(m, err);
    if (first < 0) {
        return first;
    }
    for (int i = 0; i < m->cfg->ndisks; i++) {
        struct blockdev *bd = m->disks[i];
        if (!bd || blockdev_is_read_only(bd)) {
            continue;
        }
        int ret = has_snapshot(bd, name, NULL, err);
        if (ret > 0) {
            ret = blockdev_snapshot_delete(bd, name, err);
        }
        if (ret < 0) {
            error_prefix(err, "Error while deleting snapshot on '%s'", blockdev_filename(bd));
            return ret;
        }
    }
    /* Like QEMU 7.2, deleting a snapshot no disk has is not an error. */
    return 0;
}

static void append(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *piece = NULL;
    int n = vasprintf(&piece, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    char *nb = realloc(*buf, *len + (size_t)n + 1);
    if (nb) {
        memcpy(nb + *len, piece, (size_t)n + 1);
        *buf = nb;
        *len += (size_t)n;
    }
    free(piece);
}

/* The layout of QEMU 7.2's "info snapshots". */
char *machine_info_snapshots(struct machine *m, struct error *err)
{
    int first = snapshot_disks(m, err);
    if (first < 0) {
        return NULL;
    }
    struct blockdev_snapshot_info *list = NULL;
    int n = 0;
    if (blockdev_snapshot_list(m->disks[first], &list, &n, err) < 0) {
        return NULL;
    }
    char *out = NULL;
    size_t len = 0;
    append(&out, &len, "%s", "");
    if (n == 0) {
        append(&out, &len, "There is no snapshot available.\r\n");
    } else {
        append(&out, &len, "List of snapshots present on all disks:\r\n");
        append(&out, &len, "%-10s%-17s%8s%20s%13s%11s\r\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
        for (int i = 0; i < n; i++) {
            char size[32], date[32], clock[32];
            size_format(list[i].vm_state_size, size, sizeof(size));
            time_t t = (time_t)list[i].date_sec;
            struct tm tm;
            localtime_r(&t, &tm);
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
            uint64_t ns = list[i].vm_clock_nsec;
            snprintf(clock, sizeof(clock), "%02u:%02u:%02u.%03u", (unsigned)(ns / 3600000000000ull),
                     (unsigned)(ns / 60000000000ull % 60), (unsigned)(ns / 1000000000ull % 60),
                     (unsigned)(ns / 1000000ull % 1000));
            append(&out, &len, "%-9s %-16s %8s%20s%13s%11s\r\n", "--", list[i].name ? list[i].name : "", size,
                   date, clock, "");
        }
    }
    blockdev_snapshot_list_free(list, n);
    return out;
}
