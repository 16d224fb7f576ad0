/* x86 guest virtual addresses to guest physical ones, by walking the page
 * tables in guest memory as the CPU would (for QMP memsave and debugging):
 * no paging, 32-bit (4 KiB and PSE 4 MiB pages), PAE (2 MiB pages), and
 * long mode with 4 or 5 levels (2 MiB and 1 GiB pages). A debugger's read:
 * no permission checks, accessed and dirty bits left alone. */
#ifndef VMM_PAGE_WALK_H
#define VMM_PAGE_WALK_H

#include <stdint.h>

#include "util/error.h"
#include "vmm/guest_memory.h"

/* The control registers the walk depends on. */
struct x86_paging {
    uint64_t cr0, cr3, cr4, efer;
};

/* *gpa for va, and *left: bytes from va to the end of its page (the next
 * byte may map elsewhere). -EFAULT naming the address when it is not
 * mapped (not present, not canonical) or a table lies outside RAM. */
int x86_translate(const struct guest_memory *mem, const struct x86_paging *pg, uint64_t va, uint64_t *gpa,
                  uint64_t *left, struct error *err);

#endif
