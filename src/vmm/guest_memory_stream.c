/* The "ram" section (version 1):
 *   u32 regions, then per region: u64 gpa | u64 size | u64 pages present
 *   | bitmap words (u64, one bit per page) | the present pages in order.
 * Pages that hold only zeros are left out. */
#include "vmm/guest_memory_stream.h"

#include <errno.h>
#include <stdlib.h>

#include "util/bswap.h"

#define PAGE GUEST_PAGE_SIZE
#define RAM_VERSION 1

static size_t words_for(uint64_t pages)
{
    return (size_t)((pages + 63) / 64);
}

static bool test_bit(const uint64_t *bits, uint64_t i)
{
    return bits[i / 64] & (1ull << (i % 64));
}

static uint64_t section_length(const struct guest_memory *m, const struct guest_bitmap *present)
{
    uint64_t len = 4 + (uint64_t)m->count * 24 + guest_bitmap_count(present) * PAGE;
    for (int i = 0; i < m->count; i++) {
        len += words_for(present->pages[i]) * 8;
    }
    return len;
}

static int write_region(struct vmstate_writer *w, const struct guest_region *r, const struct guest_bitmap *present,
                        int i, struct error *err)
{
    size_t nw = words_for(present->pages[i]);
    uint64_t npresent = 0;
    for (size_t k = 0; k < nw; k++) {
        npresent += (uint64_t)__builtin_popcountll(present->bits[i][k]);
    }
    uint8_t hdr[24];
    st_le64(hdr, r->gpa);
    st_le64(hdr + 8, r->size);
    st_le64(hdr + 16, npresent);
    int ret = vmstate_section_write(w, hdr, 24, err);
    for (size_t k = 0; k < nw && ret == 0; k++) {
        uint8_t word[8];
        st_le64(word, present->bits[i][k]);
        ret = vmstate_section_write(w, word, 8, err);
    }
    for (uint64_t p = 0; p < present->pages[i] && ret == 0; p++) {
        if (test_bit(present->bits[i], p)) {
            ret = vmstate_section_write(w, r->hva + p * PAGE, PAGE, err);
        }
    }
    return ret;
}

int guest_memory_stream_write(struct guest_memory *m, struct vmstate_writer *w, struct error *err)
{
    struct guest_bitmap present;
    int ret = guest_bitmap_init(&present, m, err);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < m->count; i++) {
        guest_memory_find_data(m, i, present.bits[i]);
    }
    uint8_t hdr[4];
    st_le32(hdr, (uint32_t)m->count);
    if ((ret = vmstate_section_begin(w, "ram", RAM_VERSION, section_length(m, &present), err)) == 0) {
        ret = vmstate_section_write(w, hdr, 4, err);
    }
    for (int i = 0; ret == 0 && i < m->count; i++) {
        ret = write_region(w, &m->regions[i], &present, i, err);
    }
    if (ret == 0) {
        ret = vmstate_section_end(w, err);
    }
    guest_bitmap_free(&present);
    return ret;
}

static int load_region(struct guest_memory *m, struct vmstate_reader *r, int i, uint64_t *bits, struct error *err)
{
    struct guest_region *g = &m->regions[i];
    uint8_t hdr[24];
    int ret = vmstate_section_read(r, hdr, 24, err);
    if (ret < 0) {
        return ret;
    }
    if (ld_le64(hdr) != g->gpa || ld_le64(hdr + 8) != g->size) {
        return error_set(err, -EINVAL, "VM state RAM region %d (0x%llx, %llu bytes) does not match this VM's",
                         i, (unsigned long long)ld_le64(hdr), (unsigned long long)ld_le64(hdr + 8));
    }
    size_t nw = words_for(g->size / PAGE);
    for (size_t k = 0; k < nw && ret == 0; k++) {
        uint8_t word[8];
        ret = vmstate_section_read(r, word, 8, err);
        bits[k] = ld_le64(word);
    }
    if (ret == 0) {
        ret = guest_memory_region_reset(m, i, err);
    }
    for (uint64_t p = 0; p < g->size / PAGE && ret == 0; p++) {
        if (test_bit(bits, p)) {
            ret = vmstate_section_read(r, g->hva + p * PAGE, PAGE, err);
        }
    }
    return ret;
}

int guest_memory_stream_load(struct guest_memory *m, struct vmstate_reader *r, struct error *err)
{
    uint8_t hdr[4];
    int ret = vmstate_section_read(r, hdr, 4, err);
    if (ret < 0) {
        return ret;
    }
    if (ld_le32(hdr) != (uint32_t)m->count) {
        return error_set(err, -EINVAL, "VM state has %u RAM regions, this VM has %d", ld_le32(hdr), m->count);
    }
    struct guest_bitmap scratch;
    if ((ret = guest_bitmap_init(&scratch, m, err)) < 0) {
        return ret;
    }
    for (int i = 0; i < m->count && ret == 0; i++) {
        ret = load_region(m, r, i, scratch.bits[i], err);
    }
    guest_bitmap_free(&scratch);
    return ret < 0 ? ret : vmstate_section_finish(r, err);
}
