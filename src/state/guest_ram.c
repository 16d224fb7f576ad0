#include "state/guest_ram.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bswap.h"
#include "util/log.h"

#define PAGE GUEST_PAGE_SIZE
/* More separate mappings than this for one diff layer: copy instead
 * (the kernel limits a process to ~65k mappings). */
#define MAX_MAPPED_RUNS 4096

static size_t words_for(uint64_t pages)
{
    return (size_t)((pages + 63) / 64);
}

static bool test_bit(const uint64_t *bits, uint64_t i)
{
    return bits[i / 64] & (1ull << (i % 64));
}

static void set_bit(uint64_t *bits, uint64_t i)
{
    bits[i / 64] |= 1ull << (i % 64);
}

int ram_bitmap_init(struct ram_bitmap *b, const struct guest_memory *m, struct error *err)
{
    memset(b, 0, sizeof(*b));
    b->count = m->count;
    for (int i = 0; i < m->count; i++) {
        b->pages[i] = m->regions[i].size / PAGE;
        b->bits[i] = calloc(words_for(b->pages[i]) ? words_for(b->pages[i]) : 1, sizeof(uint64_t));
        if (!b->bits[i]) {
            ram_bitmap_free(b);
            return error_set(err, -ENOMEM, "out of memory for a page bitmap");
        }
    }
    return 0;
}

void ram_bitmap_free(struct ram_bitmap *b)
{
    for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
        free(b->bits[i]);
        b->bits[i] = NULL;
    }
}

uint64_t ram_bitmap_count(const struct ram_bitmap *b)
{
    uint64_t n = 0;
    for (int i = 0; i < b->count; i++) {
        for (size_t w = 0; w < words_for(b->pages[i]); w++) {
            n += (uint64_t)__builtin_popcountll(b->bits[i][w]);
        }
    }
    return n;
}

/* ---- dirty tracking ---- */

static int set_slot_logging(struct vm *vm, int i, bool on, struct error *err)
{
    struct guest_region *r = &vm->mem.regions[i];
    struct kvm_userspace_memory_region slot = {
        .slot = (uint32_t)i,
        .flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = r->gpa,
        .memory_size = r->size,
        .userspace_addr = (uintptr_t)r->hva,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
        return error_set_errno(err, -errno, "%s KVM's dirty log on memory slot %d", on ? "enabling" : "disabling", i);
    }
    return 0;
}

static int get_dirty_log(struct vm *vm, int i, uint64_t *bits, struct error *err)
{
    struct kvm_dirty_log log = { .slot = (uint32_t)i, .dirty_bitmap = bits };
    if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
        return error_set_errno(err, -errno, "KVM_GET_DIRTY_LOG (slot %d)", i);
    }
    return 0;
}

int ram_dirty_start(struct vm *vm, struct error *err)
{
    int ret = guest_memory_dirty_start(&vm->mem, err);
    for (int i = 0; ret == 0 && i < vm->mem.count; i++) {
        ret = set_slot_logging(vm, i, true, err);
    }
    if (ret < 0) {
        return ret;
    }
    /* Forget what was logged before (re-enabling may keep old bits). */
    struct ram_bitmap scratch;
    if ((ret = ram_bitmap_init(&scratch, &vm->mem, err)) < 0) {
        return ret;
    }
    ret = ram_dirty_harvest(vm, &scratch, err);
    ram_bitmap_free(&scratch);
    return ret;
}

int ram_dirty_harvest(struct vm *vm, struct ram_bitmap *b, struct error *err)
{
    for (int i = 0; i < vm->mem.count; i++) {
        size_t n = words_for(b->pages[i]);
        uint64_t *kvm_bits = calloc(n ? n : 1, sizeof(uint64_t));
        if (!kvm_bits) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        int ret = get_dirty_log(vm, i, kvm_bits, err);
        if (ret < 0) {
            free(kvm_bits);
            return ret;
        }
        for (size_t w = 0; w < n; w++) {
            b->bits[i][w] |= kvm_bits[w];
        }
        free(kvm_bits);
        guest_memory_dirty_harvest(&vm->mem, i, b->bits[i]);
    }
    return 0;
}

void ram_dirty_stop(struct vm *vm)
{
    for (int i = 0; i < vm->mem.count; i++) {
        set_slot_logging(vm, i, false, NULL);
    }
    guest_memory_dirty_stop(&vm->mem);
}

/* ---- which pages hold data ---- */

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < PAGE / 8; i++) {
        if (w[i]) {
            return false;
        }
    }
    return true;
}

/* Marks the non-zero pages of region i. A memfd-backed region is only read
 * where the memfd has data: its holes are zero and touching them would
 * allocate memory. */
static void find_data_pages(const struct guest_memory *m, const struct ram_backing *bk, int i, uint64_t *bits)
{
    const struct guest_region *r = &m->regions[i];
    off_t pos = 0, size = (off_t)r->size;
    while (pos < size) {
        off_t data = pos, hole = size;
        if (!bk->file_mapped[i]) {
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
            if (!page_is_zero(r->hva + p * PAGE)) {
                set_bit(bits, p);
            }
        }
        pos = hole;
    }
}

/* ---- the "ram" section ---- */

int ram_section_write(struct vmstate_writer *w, struct guest_memory *m, const struct ram_backing *bk,
                      struct error *err)
{
    struct ram_bitmap present;
    int ret = ram_bitmap_init(&present, m, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t len = 4;
    for (int i = 0; i < m->count; i++) {
        find_data_pages(m, bk, i, present.bits[i]);
    }
    len += (uint64_t)m->count * 24 + ram_bitmap_count(&present) * PAGE;
    for (int i = 0; i < m->count; i++) {
        len += words_for(present.pages[i]) * 8;
    }
    uint8_t hdr[24];
    st_le32(hdr, (uint32_t)m->count);
    ret = vmstate_section_begin(w, "ram", 1, len, err);
    if (ret == 0) {
        ret = vmstate_section_write(w, hdr, 4, err);
    }
    for (int i = 0; ret == 0 && i < m->count; i++) {
        const struct guest_region *r = &m->regions[i];
        uint64_t npresent = 0;
        size_t nw = words_for(present.pages[i]);
        for (size_t k = 0; k < nw; k++) {
            npresent += (uint64_t)__builtin_popcountll(present.bits[i][k]);
        }
        st_le64(hdr, r->gpa);
        st_le64(hdr + 8, r->size);
        st_le64(hdr + 16, npresent);
        if ((ret = vmstate_section_write(w, hdr, 24, err)) < 0) {
            break;
        }
        for (size_t k = 0; k < nw && ret == 0; k++) {
            uint8_t word[8];
            st_le64(word, present.bits[i][k]);
            ret = vmstate_section_write(w, word, 8, err);
        }
        for (uint64_t p = 0; p < present.pages[i] && ret == 0; p++) {
            if (test_bit(present.bits[i], p)) {
                ret = vmstate_section_write(w, r->hva + p * PAGE, PAGE, err);
            }
        }
    }
    if (ret == 0) {
        ret = vmstate_section_end(w, err);
    }
    ram_bitmap_free(&present);
    return ret;
}

int ram_region_reset(struct guest_memory *m, struct ram_backing *bk, int i, struct error *err)
{
    struct guest_region *r = &m->regions[i];
    if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)r->size) < 0) {
        return error_set_errno(err, -errno, "clearing guest memory");
    }
    if (bk->file_mapped[i]) {
        void *p = mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE,
                       r->memfd, 0);
        if (p == MAP_FAILED) {
            return error_set_errno(err, -errno, "mapping guest memory back");
        }
        bk->file_mapped[i] = false;
    }
    return 0;
}

int ram_section_load(struct vmstate_reader *r, struct guest_memory *m, struct ram_backing *bk,
                     struct error *err)
{
    uint8_t hdr[24];
    int ret = vmstate_section_read(r, hdr, 4, err);
    if (ret < 0) {
        return ret;
    }
    if (ld_le32(hdr) != (uint32_t)m->count) {
        return error_set(err, -EINVAL, "VM state has %u RAM regions, this VM has %d", ld_le32(hdr), m->count);
    }
    uint64_t *bits = NULL;
    for (int i = 0; i < m->count && ret == 0; i++) {
        struct guest_region *g = &m->regions[i];
        if ((ret = vmstate_section_read(r, hdr, 24, err)) < 0) {
            break;
        }
        if (ld_le64(hdr) != g->gpa || ld_le64(hdr + 8) != g->size) {
            ret = error_set(err, -EINVAL, "VM state RAM region %d (0x%llx, %llu bytes) does not match this VM's",
                            i, (unsigned long long)ld_le64(hdr), (unsigned long long)ld_le64(hdr + 8));
            break;
        }
        size_t nw = words_for(g->size / PAGE);
        free(bits);
        bits = calloc(nw ? nw : 1, sizeof(uint64_t));
        if (!bits) {
            ret = error_set(err, -ENOMEM, "out of memory");
            break;
        }
        for (size_t k = 0; k < nw && ret == 0; k++) {
            uint8_t word[8];
            ret = vmstate_section_read(r, word, 8, err);
            bits[k] = ld_le64(word);
        }
        if (ret == 0) {
            ret = ram_region_reset(m, bk, i, err);
        }
        for (uint64_t p = 0; p < g->size / PAGE && ret == 0; p++) {
            if (test_bit(bits, p)) {
                ret = vmstate_section_read(r, g->hva + p * PAGE, PAGE, err);
            }
        }
    }
    free(bits);
    return ret < 0 ? ret : vmstate_section_finish(r, err);
}

/* ---- memory files ---- */

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int ram_file_write(const char *path, struct guest_memory *m, const struct ram_backing *bk,
                   const struct ram_bitmap *dirty, struct error *err)
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
    struct ram_bitmap present = { 0 };
    if (ret == 0 && !dirty) {
        if ((ret = ram_bitmap_init(&present, m, err)) < 0) {
            close(fd);
            unlink(tmp);
            return ret;
        }
        for (int i = 0; i < m->count; i++) {
            find_data_pages(m, bk, i, present.bits[i]);
        }
        dirty = &present;
    }
    uint64_t file_off = 0;
    for (int i = 0; i < m->count && ret == 0; i++) {
        const struct guest_region *r = &m->regions[i];
        uint64_t pages = r->size / PAGE;
        for (uint64_t p = 0; p < pages && ret == 0;) {
            if (!test_bit(dirty->bits[i], p)) {
                p++;
                continue;
            }
            uint64_t q = p;
            while (q < pages && test_bit(dirty->bits[i], q) && q - p < 256) {
                q++;
            }
            ret = pwrite_all(fd, r->hva + p * PAGE, (size_t)((q - p) * PAGE), (off_t)(file_off + p * PAGE));
            p = q;
        }
        file_off += r->size;
    }
    ram_bitmap_free(&present);
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

static int copy_pages(int fd, uint8_t *dst, uint64_t len, off_t off)
{
    while (len) {
        ssize_t n = pread(fd, dst, (size_t)len, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        dst += n;
        off += n;
        len -= (uint64_t)n;
    }
    return 0;
}

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

int ram_file_map(const char *path, struct guest_memory *m, struct ram_backing *bk,
                 const struct ram_bitmap *present, struct error *err)
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
    int ret = 0;
    uint64_t file_off = 0;
    for (int i = 0; i < m->count && ret == 0; i++) {
        struct guest_region *r = &m->regions[i];
        uint64_t pages = r->size / PAGE;
        if (!present) {
            void *p = mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
                           (off_t)file_off);
            if (p == MAP_FAILED) {
                ret = error_set_errno(err, -errno, "mapping memory file '%s'", path);
            }
            bk->file_mapped[i] = true;
            file_off += r->size;
            continue;
        }
        bool map = count_runs(present->bits[i], pages) <= MAX_MAPPED_RUNS;
        for (uint64_t p = 0; p < pages && ret == 0;) {
            if (!test_bit(present->bits[i], p)) {
                p++;
                continue;
            }
            uint64_t q = p;
            while (q < pages && test_bit(present->bits[i], q)) {
                q++;
            }
            uint8_t *dst = r->hva + p * PAGE;
            off_t off = (off_t)(file_off + p * PAGE);
            if (map) {
                if (mmap(dst, (q - p) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
                         off) == MAP_FAILED) {
                    ret = error_set_errno(err, -errno, "mapping memory file '%s'", path);
                }
                bk->file_mapped[i] = true;
            } else if ((ret = copy_pages(fd, dst, (q - p) * PAGE, off)) < 0) {
                error_set_errno(err, ret, "reading memory file '%s'", path);
            }
            p = q;
        }
        file_off += r->size;
    }
    close(fd);
    return ret;
}
