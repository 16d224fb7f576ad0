/* Checksums of memory files: one XXH3 hash per 1 MiB of the file, computed
 * from guest RAM when the file is written and compared with the file's
 * bytes before it is mapped back. A restored VM runs on the file's pages,
 * so a flipped byte or a file cut short must be caught before the guest
 * reads it, not after. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/io.h"
#include "vmm/guest_memory.h"

#define PAGE GUEST_PAGE_SIZE

static const uint8_t zero_page[PAGE];

static bool page_present(const struct guest_bitmap *present, int region, uint64_t page)
{
    return !present || (present->bits[region][page / 64] & (1ull << (page % 64)));
}

/* Calls visit on each page of file bytes [off, off + len), the file being
 * the regions laid end to end, until visit returns false. */
static void walk_file_pages(const struct guest_memory *m, uint64_t off, uint64_t len,
                            bool (*visit)(const struct guest_region *r, int region, uint64_t page, void *ctx),
                            void *ctx)
{
    uint64_t region_start = 0;
    for (int i = 0; i < m->count && len > 0; i++) {
        const struct guest_region *r = &m->regions[i];
        for (; len > 0 && off < region_start + r->size; off += PAGE, len -= PAGE) {
            if (!visit(r, i, (off - region_start) / PAGE, ctx)) {
                return;
            }
        }
        region_start += r->size;
    }
}

struct hash_walk {
    XXH3_state_t *st;
    const struct guest_bitmap *present;
};

/* Hashes a page as the file holds it: the region's page where present,
 * zeros elsewhere (a diff file's holes). */
static bool hash_page(const struct guest_region *r, int region, uint64_t page, void *ctx)
{
    struct hash_walk *h = ctx;
    XXH3_64bits_update(h->st, page_present(h->present, region, page) ? r->hva + page * PAGE : zero_page, PAGE);
    return true;
}

int guest_memory_sums_compute(const struct guest_memory *m, const struct guest_bitmap *present,
                              struct guest_memory_sums *sums, struct error *err)
{
    uint64_t chunk = 1ull << GUEST_MEMORY_SUM_CHUNK_SHIFT;
    sums->count = (m->ram_size + chunk - 1) / chunk;
    sums->hash = calloc(sums->count ? sums->count : 1, sizeof(*sums->hash));
    XXH3_state_t *st = XXH3_createState();
    if (!sums->hash || !st) {
        XXH3_freeState(st);
        guest_memory_sums_free(sums);
        return error_set(err, -ENOMEM, "out of memory for memory file checksums");
    }
    for (uint64_t c = 0; c < sums->count; c++) {
        uint64_t off = c * chunk, len = m->ram_size - off < chunk ? m->ram_size - off : chunk;
        XXH3_64bits_reset(st);
        walk_file_pages(m, off, len, hash_page, &(struct hash_walk){ st, present });
        sums->hash[c] = XXH3_64bits_digest(st);
    }
    XXH3_freeState(st);
    return 0;
}

struct present_walk {
    const struct guest_bitmap *present;
    bool found;
};

static bool find_present_page(const struct guest_region *r, int region, uint64_t page, void *ctx)
{
    struct present_walk *p = ctx;
    (void)r;
    p->found = page_present(p->present, region, page);
    return !p->found;
}

/* Whether any page of file bytes [off, off + len) is present. */
static bool range_present(const struct guest_memory *m, const struct guest_bitmap *present, uint64_t off,
                          uint64_t len)
{
    struct present_walk p = { present, false };
    walk_file_pages(m, off, len, find_present_page, &p);
    return p.found;
}

int guest_memory_file_verify(int fd, const char *path, const struct guest_memory *m,
                             const struct guest_bitmap *present, const struct guest_memory_sums *sums,
                             struct error *err)
{
    uint64_t chunk = 1ull << GUEST_MEMORY_SUM_CHUNK_SHIFT, size = m->ram_size;
    if (sums->count != (size + chunk - 1) / chunk) {
        return error_set(err, -EINVAL, "memory file '%s': %llu checksums for %llu bytes", path,
                         (unsigned long long)sums->count, (unsigned long long)size);
    }
    uint8_t *buf = malloc(chunk);
    int ret = buf ? 0 : error_set(err, -ENOMEM, "out of memory");
    for (uint64_t c = 0; ret == 0 && c < sums->count; c++) {
        uint64_t off = c * chunk;
        size_t len = (size_t)(size - off < chunk ? size - off : chunk);
        if (!range_present(m, present, off, len)) {
            continue;   /* nothing of it is mapped: a diff's holes */
        }
        ssize_t n = io_pread_full(fd, buf, len, (off_t)off);
        if (n < 0) {
            ret = error_set_errno(err, (int)n, "reading memory file '%s'", path);
        } else if ((size_t)n != len) {
            ret = error_set(err, -EIO, "memory file '%s' ends at byte %llu, it should hold %llu", path,
                            (unsigned long long)(off + (uint64_t)n), (unsigned long long)size);
        } else if (XXH3_64bits(buf, len) != sums->hash[c]) {
            ret = error_set(err, -EIO, "memory file '%s' is corrupt: checksum mismatch in bytes %llu-%llu", path,
                            (unsigned long long)off, (unsigned long long)(off + len - 1));
        }
    }
    free(buf);
    return ret;
}

void guest_memory_sums_free(struct guest_memory_sums *sums)
{
    free(sums->hash);
    sums->hash = NULL;
    sums->count = 0;
}
