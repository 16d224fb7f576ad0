/* Snapshots of the machine to files and into qcow2 disks. */
#include "machine/machine_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/size.h"

/* 2: checksums of the memory file follow. */
#define MEMORY_VERSION 2
#define MAX_CHAIN 64

void machine_forget_snapshot_chain(struct machine *m)
{
    struct snapshot_chain *s = &m->snaps;
    if (m->vm.mem.dirty_tracking) {
        guest_memory_dirty_stop(&m->vm.mem);
        s->last_dir[0] = 0;
    }
}

/* ---- snapshots to files ---- */

/* The "memory" section of a files snapshot: which memory file holds what.
 *   u64 id | u8 diff | u64 parent id | u32 n + parent directory
 *   diff only: u32 regions, then per region u64 pages + bitmap words
 *   version 2: u64 n + n checksums of the memory file's chunks. */
struct memory_image {
    uint64_t id, parent_id;
    bool diff;
    char parent[PATH_MAX];
    struct guest_bitmap present;
    struct guest_memory_sums sums;      /* count 0: none (version 1) */
};

static void memory_image_free(struct memory_image *mi)
{
    guest_bitmap_free(&mi->present);
    guest_memory_sums_free(&mi->sums);
}

static int path_in(char *out, size_t n, const char *dir, const char *file, struct error *err)
{
    if ((size_t)snprintf(out, n, "%s/%s", dir, file) >= n) {
        return error_set(err, -ENAMETOOLONG, "snapshot directory name too long");
    }
    return 0;
}

static int write_memory_section(struct vmstate_writer *w, const struct memory_image *mi, struct error *err)
{
    size_t plen = strlen(mi->parent);
    uint64_t len = 8 + 1 + 8 + 4 + plen + 8 + 8 * mi->sums.count;
    if (mi->diff) {
        len += 4;
        for (int i = 0; i < mi->present.count; i++) {
            len += 8 + (mi->present.pages[i] + 63) / 64 * 8;
        }
    }
    uint8_t h[21];
    st_le64(h, mi->id);
    h[8] = mi->diff;
    st_le64(h + 9, mi->parent_id);
    st_le32(h + 17, (uint32_t)plen);
    int ret;
    if ((ret = vmstate_section_begin(w, "memory", MEMORY_VERSION, len, err)) < 0 ||
        (ret = vmstate_section_write(w, h, sizeof(h), err)) < 0 ||
        (ret = vmstate_section_write(w, mi->parent, plen, err)) < 0) {
        return ret;
    }
    if (mi->diff) {
        st_le32(h, (uint32_t)mi->present.count);
        ret = vmstate_section_write(w, h, 4, err);
        for (int i = 0; ret == 0 && i < mi->present.count; i++) {
            st_le64(h, mi->present.pages[i]);
            ret = vmstate_section_write(w, h, 8, err);
            for (uint64_t k = 0; ret == 0 && k < (mi->present.pages[i] + 63) / 64; k++) {
                st_le64(h, mi->present.bits[i][k]);
                ret = vmstate_section_write(w, h, 8, err);
            }
        }
    }
    if (ret == 0) {
        st_le64(h, mi->sums.count);
        ret = vmstate_section_write(w, h, 8, err);
    }
    for (uint64_t c = 0; ret == 0 && c < mi->sums.count; c++) {
        st_le64(h, mi->sums.hash[c]);
        ret = vmstate_section_write(w, h, 8, err);
    }
    return ret < 0 ? ret : vmstate_section_end(w, err);
}

static int read_memory_sums(struct machine *m, struct vmstate_reader *r, struct guest_memory_sums *sums,
                            struct error *err)
{
    uint64_t chunk = 1ull << GUEST_MEMORY_SUM_CHUNK_SHIFT;
    uint64_t expected = (m->vm.mem.ram_size + chunk - 1) / chunk;
    uint8_t h[8];
    int ret = vmstate_section_read(r, h, 8, err);
    if (ret < 0) {
        return ret;
    }
    if (ld_le64(h) != expected) {
        return error_set(err, -EINVAL, "VM state memory section: %llu memory file checksums, this VM's RAM needs %llu",
                         (unsigned long long)ld_le64(h), (unsigned long long)expected);
    }
    sums->hash = calloc(expected ? expected : 1, sizeof(*sums->hash));
    if (!sums->hash) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    sums->count = expected;
    for (uint64_t c = 0; ret == 0 && c < expected; c++) {
        ret = vmstate_section_read(r, h, 8, err);
        sums->hash[c] = ld_le64(h);
    }
    return ret;
}

/* Reads sections up to and including "memory". */
static int read_memory_section(struct machine *m, struct vmstate_reader *r, struct memory_image *mi,
                               struct error *err)
{
    int ret;
    while ((ret = vmstate_next_section(r, err)) == 0 && strcmp(r->section, "memory") != 0) {
        if ((ret = vmstate_section_finish(r, err)) < 0) {
            return ret;
        }
    }
    if (ret != 0) {
        return ret < 0 ? ret : error_set(err, -EINVAL, "VM state has no memory section");
    }
    if (r->section_version > MEMORY_VERSION) {
        return error_set(err, -ENOTSUP, "VM state memory section version %u is not supported", r->section_version);
    }
    uint8_t h[21];
    if ((ret = vmstate_section_read(r, h, sizeof(h), err)) < 0) {
        return ret;
    }
    mi->id = ld_le64(h);
    mi->diff = h[8];
    mi->parent_id = ld_le64(h + 9);
    uint32_t plen = ld_le32(h + 17);
    if (plen >= sizeof(mi->parent)) {
        return error_set(err, -EINVAL, "VM state memory section: parent name too long");
    }
    if ((ret = vmstate_section_read(r, mi->parent, plen, err)) < 0) {
        return ret;
    }
    mi->parent[plen] = 0;
    if (mi->diff) {
        if ((ret = guest_bitmap_init(&mi->present, &m->vm.mem, err)) < 0 ||
            (ret = vmstate_section_read(r, h, 4, err)) < 0) {
            return ret;
        }
        if (ld_le32(h) != (uint32_t)m->vm.mem.count) {
            return error_set(err, -EINVAL, "diff snapshot has %u memory regions, this VM %d", ld_le32(h),
                             m->vm.mem.count);
        }
        for (int i = 0; ret == 0 && i < m->vm.mem.count; i++) {
            if ((ret = vmstate_section_read(r, h, 8, err)) < 0) {
                break;
            }
            if (ld_le64(h) != mi->present.pages[i]) {
                return error_set(err, -EINVAL, "diff snapshot memory region %d has another size", i);
            }
            for (uint64_t k = 0; ret == 0 && k < (mi->present.pages[i] + 63) / 64; k++) {
                ret = vmstate_section_read(r, h, 8, err);
                mi->present.bits[i][k] = ld_le64(h);
            }
        }
    }
    if (ret == 0 && r->section_version >= 2) {
        ret = read_memory_sums(m, r, &mi->sums, err);
    }
    return ret < 0 ? ret : vmstate_section_finish(r, err);
}

int machine_snapshot_files(struct machine *m, const char *dir, bool diff, struct error *err)
{
    struct snapshot_chain *s = &m->snaps;
    char mem_path[PATH_MAX], state_path[PATH_MAX], tmp_path[PATH_MAX], real[PATH_MAX];
    struct memory_image mi;
    memset(&mi, 0, sizeof(mi));
    if (diff && !m->vm.mem.dirty_tracking) {
        return error_set(err, -EINVAL, "a diff snapshot needs an earlier snapshot to files (or a restore) of this VM");
    }
    int ret = machine_memory_intact(m, err);
    if (ret < 0) {
        return ret;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        return error_set_errno(err, -errno, "cannot create snapshot directory '%s'", dir);
    }
    if (!realpath(dir, real)) {
        return error_set_errno(err, -errno, "snapshot directory '%s'", dir);
    }
    if (diff && strcmp(real, s->last_dir) == 0) {
        return error_set(err, -EINVAL, "a diff snapshot cannot replace its parent '%s': give another directory", dir);
    }
    if ((ret = path_in(mem_path, sizeof(mem_path), real, "memory", err)) < 0 ||
        (ret = path_in(state_path, sizeof(state_path), real, "state", err)) < 0 ||
        (ret = path_in(tmp_path, sizeof(tmp_path), real, "state.tmp", err)) < 0) {
        return ret;
    }
    if (getrandom(&mi.id, sizeof(mi.id), 0) != sizeof(mi.id)) {
        mi.id = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    }
    mi.diff = diff;
    if (diff) {
        mi.parent_id = s->last_id;
        snprintf(mi.parent, sizeof(mi.parent), "%s", s->last_dir);
        if ((ret = guest_bitmap_init(&mi.present, &m->vm.mem, err)) < 0) {
            return ret;
        }
    }
    /* Devices first: saving them drains requests in flight, whose data
     * must be in the memory file. Nothing new starts until we return to
     * the main loop. */
    int fd = open(tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        ret = error_set_errno(err, -errno, "cannot create '%s'", tmp_path);
    }
    struct vmstate_writer w;
    bool tracking_moved = false;
    memset(&w, 0, sizeof(w));
    if (ret == 0 && (ret = vmstate_writer_begin(&w, vmstate_fd_io(&fd), err)) == 0) {
        ret = machine_state_save(m, &w, err);
    }
    if (ret == 0 && diff) {
        /* Device rings are written by the VMM all the time. */
        machine_mark_rings_dirty(m);
        ret = guest_memory_dirty_harvest(&m->vm.mem, &mi.present, err);
        tracking_moved = true;
    } else if (ret == 0) {
        ret = guest_memory_dirty_start(&m->vm.mem, err);
        tracking_moved = true;
    }
    if (ret == 0) {
        ret = guest_memory_file_write(&m->vm.mem, mem_path, diff ? &mi.present : NULL, err);
    }
    if (ret == 0) {
        ret = guest_memory_sums_compute(&m->vm.mem, diff ? &mi.present : NULL, &mi.sums, err);
    }
    if (ret == 0) {
        ret = machine_memory_intact(m, err);    /* the file may hold zeros for lost pages */
    }
    if (ret == 0 && (ret = write_memory_section(&w, &mi, err)) == 0) {
        int64_t n = vmstate_writer_finish(&w, err);
        ret = n < 0 ? (int)n : 0;
    }
    vmstate_writer_free(&w);
    if (fd >= 0 && close(fd) < 0 && ret == 0) {
        ret = error_set_errno(err, -errno, "writing '%s'", tmp_path);
    }
    if (ret == 0 && rename(tmp_path, state_path) < 0) {
        ret = error_set_errno(err, -errno, "renaming '%s'", tmp_path);
    }
    memory_image_free(&mi);
    if (ret < 0) {
        unlink(tmp_path);
        if (tracking_moved) {
            /* The dirty pages since the parent are gone with this failure. */
            machine_forget_snapshot_chain(m);
        }
        return ret;
    }
    snprintf(s->last_dir, sizeof(s->last_dir), "%s", real);
    s->last_id = mi.id;
    return 0;
}

static int open_state(const char *dir, int *fd, uint64_t *size, struct error *err)
{
    char path[PATH_MAX];
    int ret = path_in(path, sizeof(path), dir, "state", err);
    if (ret < 0) {
        return ret;
    }
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (*fd < 0 || fstat(*fd, &st) < 0) {
        return error_set_errno(err, -errno, "cannot open snapshot state '%s'", path);
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* The memory files from the newest (layers[0]) back to the full one. */
struct layer {
    char dir[PATH_MAX];
    struct memory_image mi;
};

static int read_chain(struct machine *m, struct layer *layers, int *n, struct error *err)
{
    while (layers[*n - 1].mi.diff) {
        if (*n == MAX_CHAIN) {
            return error_set(err, -ELOOP, "diff snapshot chain longer than %d", MAX_CHAIN);
        }
        struct layer *child = &layers[*n - 1], *l = &layers[*n];
        memset(l, 0, sizeof(*l));
        snprintf(l->dir, sizeof(l->dir), "%s", child->mi.parent);
        int fd = -1;
        uint64_t size;
        struct vmstate_reader r;
        memset(&r, 0, sizeof(r));
        int ret = open_state(l->dir, &fd, &size, err);
        if (ret == 0 && (ret = vmstate_reader_begin(&r, vmstate_fd_io(&fd), size, err)) == 0) {
            ret = read_memory_section(m, &r, &l->mi, err);
        }
        vmstate_reader_free(&r);
        if (fd >= 0) {
            close(fd);
        }
        (*n)++;
        if (ret < 0) {
            error_prefix(err, "parent snapshot '%s'", l->dir);
            return ret;
        }
        if (l->mi.id != child->mi.parent_id) {
            return error_set(err, -EINVAL, "parent snapshot '%s' was replaced by another snapshot since the diff "
                             "snapshot '%s' was taken", l->dir, child->dir);
        }
    }
    return 0;
}

int machine_restore_files(struct machine *m, const char *dir, struct error *err)
{
    struct snapshot_chain *s = &m->snaps;
    struct layer *layers = calloc(MAX_CHAIN, sizeof(*layers));
    if (!layers) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    if (!realpath(dir, layers[0].dir)) {
        free(layers);
        return error_set_errno(err, -errno, "snapshot directory '%s'", dir);
    }
    int n = 1, fd = -1;
    uint64_t size;
    struct vmstate_reader r;
    struct machine_state_image img;
    memset(&r, 0, sizeof(r));
    memset(&img, 0, sizeof(img));
    int ret = open_state(layers[0].dir, &fd, &size, err);
    if (ret == 0 && (ret = vmstate_reader_begin(&r, vmstate_fd_io(&fd), size, err)) == 0 &&
        (ret = machine_state_read(m, &r, &img, err)) == 0 &&
        (ret = read_memory_section(m, &r, &layers[0].mi, err)) == 0) {
        /* Nothing may follow but the end. */
        ret = vmstate_next_section(&r, err);
        if (ret == 0) {
            ret = error_set(err, -EINVAL, "VM state has an unexpected section '%s'", r.section);
        } else if (ret == 1) {
            ret = 0;
        }
    }
    if (ret == 0) {
        ret = read_chain(m, layers, &n, err);
    }
    for (int i = n - 1; ret == 0 && i >= 0; i--) {
        char mem_path[PATH_MAX];
        if ((ret = path_in(mem_path, sizeof(mem_path), layers[i].dir, "memory", err)) < 0) {
            break;
        }
        /* Verified before the guest runs on the file's pages: they are read
         * only when touched, and a corrupt page found then could not be
         * refused. */
        if (layers[i].mi.sums.count == 0) {
            log_warn("memory file '%s' has no checksums (a snapshot of an older cowvisor): not verified",
                     mem_path);
        }
        ret = guest_memory_file_map(&m->vm.mem, mem_path, layers[i].mi.diff ? &layers[i].mi.present : NULL,
                                    &layers[i].mi.sums, err);
    }
    if (ret == 0) {
        ret = machine_state_apply(m, &img, err);
    }
    if (ret == 0 && (ret = guest_memory_dirty_start(&m->vm.mem, err)) == 0) {
            snprintf(s->last_dir, sizeof(s->last_dir), "%s", layers[0].dir);
        s->last_id = layers[0].mi.id;
    }
    for (int i = 0; i < n; i++) {
        memory_image_free(&layers[i].mi);
    }
    machine_state_image_free(&img);
    vmstate_reader_free(&r);
    if (fd >= 0) {
        close(fd);
    }
    free(layers);
    return ret;
}
