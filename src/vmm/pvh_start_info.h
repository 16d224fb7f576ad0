/* The PVH start-of-day structures (Xen's public arch-x86/hvm/start_info.h,
 * version 1): what a PVH loader hands the kernel in EBX. Shared by the VMM,
 * which writes them, and the freestanding test guest, which reads them, so
 * it needs nothing but <stdint.h>. */
#ifndef VMM_PVH_START_INFO_H
#define VMM_PVH_START_INFO_H

#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

#endif
