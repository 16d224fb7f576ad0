/* Guest memory to and from memory files (snapshots to files): written
 * whole or as a diff of the dirty pages, mapped back copy-on-write so a
 * restore reads nothing until the guest touches it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/io.h"
#include "util/zero.h"
#include "vmm/guest_memory.h"

#define PAGE GUEST_PAGE_SIZE
/* More separate mappings than this for one diff layer: copy instead
 * (the kernel limits a process to ~65k mappings). */
#define MAX_MAPPED_RUNS 4096
/* Pages written with one pwrite. */
#define MAX_RUN 256

static bool test_bit(const uint64_t *bits, uint64_t i)
{
    return bits[i / 64] & (1ull << (i % 64));
}

/* A memfd-backed region is only read where the memfd has data: its holes
 * are zero and touching them would allocate memory. */
void guest_memory_find_data(const struct guest_memory *m, int i, uint64_t *bits)
{
    const struct guest_region *r = &m->regions[i];
    off_t pos = 0, size = (off_t)r->size;
    while (pos < size) {
        off_t data = pos, hole = size;
        if (!r->file_mapped) {
            data = lseek(r->memfd, pos, SEEK_DATA);
            if (data < 0) {
                break;      /* ENXIO: no data after pos */
            }
            hole = lseek(r->memfd, data, SEEK_HOLE);
            if (hole < 0 || hole > size) {
                hole = size;
            }
        }
        for (uint64_t p = (uint64_t)data / PAGE; p * PAGE < (uint64_t)hole; p++) {
            if (!mem_is_zero(r->hva + p * PAGE, PAGE)) {
                bits[p / 64] |= 1ull << (p % 64);
            }
        }
        pos = hole;
    }
}

int guest_memory_region_reset(struct guest_memory *m, int i, struct error *err)
{
    struct guest_region *r = &m->regions[i];
    if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)r->size) < 0) {
        return error_set_errno(err, -errno, "clearing guest memory");
    }
    if (r->file_mapped) {
        void *p = mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE,
                       r->memfd, 0);
        if (p == MAP_FAILED) {
            return error_set_errno(err, -errno, "mapping guest memory back");
        }
        r->file_mapped = false;
    }
    return 0;
}

int guest_memory_detach_files(struct guest_memory *m, struct error *err)
{
    int ret = 0;
    for (int i = 0; i < m->count && ret == 0; i++) {
        if (m->regions[i].file_mapped) {
            ret = guest_memory_region_reset(m, i, err);
        }
    }
    return ret;
}

/* ---- writing ---- */

static int write_pages(int fd, const struct guest_memory *m, const struct guest_bitmap *dirty)
{
    uint64_t file_off = 0;
    int ret = 0;
    for (int i = 0; i < m->count && ret == 0; i++) {
        const struct guest_region *r = &m->regions[i];
        uint64_t pages = r->size / PAGE;
        for (uint64_t p = 0; p < pages && ret == 0;) {
            if (!test_bit(dirty->bits[i], p)) {
                p++;
                continue;
            }
            uint64_t q = p;
            while (q < pages && test_bit(dirty->bits[i], q) && q - p < MAX_RUN) {
                q++;
            }
            ret = io_pwrite_full(fd, r->hva + p * PAGE, (size_t)((q - p) * PAGE), (off_t)(file_off + p * PAGE));
            p = q;
        }
        file_off += r->size;
    }
    return ret;
}

int guest_memory_file_write(struct guest_memory *m, const char *path, const struct guest_bitmap *dirty,
                            struct error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return error_set(err, -ENAMETOOLONG, "memory file name too long");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return error_set_errno(err, -errno, "cannot create memory file '%s'", tmp);
    }
    int ret = ftruncate(fd, (off_t)m->ram_size) < 0 ? -errno : 0;
    struct guest_bitmap present = { 0 };
    if (ret == 0 && !dirty) {
        if ((ret = guest_bitmap_init(&present, m, err)) < 0) {
            close(fd);
            unlink(tmp);
            return ret;
        }
        for (int i = 0; i < m->count; i++) {
            guest_memory_find_data(m, i, present.bits[i]);
        }
        dirty = &present;
    }
    if (ret == 0) {
        ret = write_pages(fd, m, dirty);
    }
    guest_bitmap_free(&present);
    if (close(fd) < 0 && ret == 0) {
        ret = -errno;
    }
    if (ret == 0 && rename(tmp, path) < 0) {
        ret = -errno;
    }
    if (ret < 0) {
        unlink(tmp);
        return error_set_errno(err, ret, "writing memory file '%s'", path);
    }
    return 0;
}

/* ---- mapping back ---- */

static uint64_t count_runs(const uint64_t *bits, uint64_t pages)
{
    uint64_t runs = 0;
    for (uint64_t p = 0; p < pages; p++) {
        if (test_bit(bits, p) && (p == 0 || !test_bit(bits, p - 1))) {
            runs++;
        }
    }
    return runs;
}

static int map_whole(int fd, struct guest_region *r, uint64_t file_off, const char *path, struct error *err)
{
    void *p = mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
                   (off_t)file_off);
    r->file_mapped = true;
    return p == MAP_FAILED ? error_set_errno(err, -errno, "mapping memory file '%s'", path) : 0;
}

/* The pages in present, mapped when they form few runs, else copied. */
static int map_present(int fd, struct guest_region *r, uint64_t file_off, const uint64_t *present,
                       const char *path, struct error *err)
{
    uint64_t pages = r->size / PAGE;
    bool map = count_runs(present, pages) <= MAX_MAPPED_RUNS;
    int ret = 0;
    for (uint64_t p = 0; p < pages && ret == 0;) {
        if (!test_bit(present, p)) {
            p++;
            continue;
        }
        uint64_t q = p;
        while (q < pages && test_bit(present, q)) {
            q++;
        }
        uint8_t *dst = r->hva + p * PAGE;
        off_t off = (off_t)(file_off + p * PAGE);
        size_t len = (size_t)((q - p) * PAGE);
        if (map) {
            if (mmap(dst, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, off) ==
                MAP_FAILED) {
                ret = error_set_errno(err, -errno, "mapping memory file '%s'", path);
            }
            r->file_mapped = true;
        } else {
            ssize_t n = io_pread_full(fd, dst, len, off);
            if (n < 0 || (size_t)n != len) {
                ret = error_set_errno(err, n < 0 ? (int)n : -EIO, "reading memory file '%s'", path);
            }
        }
        p = q;
    }
    return ret;
}

int guest_memory_file_map(struct guest_memory *m, const char *path, const struct guest_bitmap *present,
                          const struct guest_memory_sums *sums, struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "cannot open memory file '%s'", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != m->ram_size) {
        close(fd);
        return error_set(err, -EINVAL, "memory file '%s' holds %lld bytes, guest RAM is %llu", path,
                         (long long)st.st_size, (unsigned long long)m->ram_size);
    }
    int ret = sums && sums->count ? guest_memory_file_verify(fd, path, m, present, sums, err) : 0;
    uint64_t file_off = 0;
    for (int i = 0; i < m->count && ret == 0; i++) {
        struct guest_region *r = &m->regions[i];
        ret = present ? map_present(fd, r, file_off, present->bits[i], path, err)
                      : map_whole(fd, r, file_off, path, err);
        file_off += r->size;
    }
    close(fd);
    return ret;
}
