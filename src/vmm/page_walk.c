/* The walk: each level takes 9 bits of the address (10 in 32-bit mode),
 * from the table whose address the level above gave. */
#include "vmm/page_walk.h"

#include <errno.h>
#include <string.h>

#include "util/bswap.h"

#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)
#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define ADDR_MASK 0x000ffffffffff000ull     /* bits 12..51 of an entry */

static int unmapped(uint64_t va, const char *why, struct error *err)
{
    return error_set(err, -EFAULT, "virtual address 0x%llx is not mapped (%s)", (unsigned long long)va, why);
}

static int read_entry(const struct guest_memory *mem, uint64_t addr, unsigned size, uint64_t va, uint64_t *out,
                      struct error *err)
{
    const uint8_t *p = guest_memory_ptr(mem, addr, size);
    if (!p) {
        return error_set(err, -EFAULT, "virtual address 0x%llx: page table entry at 0x%llx is outside RAM",
                         (unsigned long long)va, (unsigned long long)addr);
    }
    *out = size == 8 ? ld_le64(p) : ld_le32(p);
    return 0;
}

/* PAE and long mode: levels of 512 8-byte entries; a large page may end
 * the walk at the levels that have one (bit 7). */
static int walk64(const struct guest_memory *mem, uint64_t table, int levels, uint64_t va, uint64_t *gpa,
                  uint64_t *page, struct error *err)
{
    for (int level = levels; level >= 1; level--) {
        unsigned shift = 12 + 9 * (unsigned)(level - 1);
        uint64_t e = 0;
        int ret = read_entry(mem, table + ((va >> shift) & 511) * 8, 8, va, &e, err);
        if (ret < 0) {
            return ret;
        }
        if (!(e & PTE_P)) {
            return unmapped(va, "entry not present", err);
        }
        if (level == 1 || ((level == 2 || level == 3) && (e & PTE_PS))) {
            *page = 1ull << shift;
            *gpa = (e & ADDR_MASK & ~(*page - 1)) | (va & (*page - 1));
            return 0;
        }
        table = e & ADDR_MASK;
    }
    return unmapped(va, "no level", err);
}

/* PAE: 4 page-directory pointers (32 bytes at CR3), then two levels. */
static int walk_pae(const struct guest_memory *mem, uint64_t cr3, uint64_t va, uint64_t *gpa, uint64_t *page,
                    struct error *err)
{
    uint64_t pdpte = 0;
    int ret = read_entry(mem, (cr3 & 0xffffffe0ull) + ((va >> 30) & 3) * 8, 8, va, &pdpte, err);
    if (ret < 0) {
        return ret;
    }
    if (!(pdpte & PTE_P)) {
        return unmapped(va, "page-directory pointer not present", err);
    }
    return walk64(mem, pdpte & ADDR_MASK, 2, va, gpa, page, err);     /* bits 12..29 index those */
}

/* 32-bit: two levels of 1024 4-byte entries; PSE allows 4 MiB pages (with
 * PSE-36's physical bits 32..39 in entry bits 13..20). */
static int walk32(const struct guest_memory *mem, const struct x86_paging *pg, uint64_t va, uint64_t *gpa,
                  uint64_t *page, struct error *err)
{
    uint64_t pde = 0, pte = 0;
    int ret = read_entry(mem, (pg->cr3 & 0xfffff000ull) + ((va >> 22) & 1023) * 4, 4, va, &pde, err);
    if (ret < 0) {
        return ret;
    }
    if (!(pde & PTE_P)) {
        return unmapped(va, "page directory entry not present", err);
    }
    if ((pde & PTE_PS) && (pg->cr4 & CR4_PSE)) {
        *page = 4ull << 20;
        *gpa = (pde & 0xffc00000ull) | ((pde >> 13) & 0xff) << 32 | (va & (*page - 1));
        return 0;
    }
    ret = read_entry(mem, (pde & 0xfffff000ull) + ((va >> 12) & 1023) * 4, 4, va, &pte, err);
    if (ret < 0) {
        return ret;
    }
    if (!(pte & PTE_P)) {
        return unmapped(va, "page table entry not present", err);
    }
    *page = 4096;
    *gpa = (pte & 0xfffff000ull) | (va & 4095);
    return 0;
}

/* Long mode addresses must be canonical: the bits above the top one
 * translated copy it. */
static bool canonical(uint64_t va, unsigned bits)
{
    int64_t s = (int64_t)(va << (64 - bits)) >> (64 - bits);
    return (uint64_t)s == va;
}

int x86_translate(const struct guest_memory *mem, const struct x86_paging *pg, uint64_t va, uint64_t *gpa,
                  uint64_t *left, struct error *err)
{
    uint64_t page = 4096;
    int ret = 0;
    if (!(pg->cr0 & CR0_PG)) {
        *gpa = va & 0xffffffffull;       /* no paging: linear is physical (32 bits) */
    } else if (pg->efer & EFER_LMA) {
        bool la57 = pg->cr4 & CR4_LA57;
        if (!canonical(va, la57 ? 57 : 48)) {
            return unmapped(va, "not canonical", err);
        }
        ret = walk64(mem, pg->cr3 & ADDR_MASK, la57 ? 5 : 4, va, gpa, &page, err);
    } else if (pg->cr4 & CR4_PAE) {
        ret = walk_pae(mem, pg->cr3, va & 0xffffffffull, gpa, &page, err);
    } else {
        ret = walk32(mem, pg, va & 0xffffffffull, gpa, &page, err);
    }
    if (ret == 0) {
        *left = page - (va & (page - 1));
    }
    return ret;
}
