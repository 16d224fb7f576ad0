/* The PVH boot protocol (Xen's HVM direct boot, also used by QEMU and
 * Firecracker): load the ELF's PT_LOAD segments at their physical addresses,
 * find XEN_ELFNOTE_PHYS32_ENTRY, and hand the kernel an hvm_start_info. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "vmm/boot.h"
#include "vmm/pvh_start_info.h"

/* The initrd goes at the top of low RAM, above kernel_end. */
static int write_start_info(struct vm *vm, const uint8_t *initrd, size_t initrd_len, uint64_t kernel_end,
                            const char *cmdline, struct error *err)
{
    struct hvm_start_info si = { .magic = HVM_START_MAGIC, .version = 1 };
    size_t cmdlen = strlen(cmdline ? cmdline : "");
    if (cmdlen >= BOOT_CMDLINE_MAX) {
        return error_set(err, -EINVAL, "kernel command line longer than %d bytes", BOOT_CMDLINE_MAX - 1);
    }
    int ret = guest_memory_write(&vm->mem, BOOT_CMDLINE_ADDR, cmdline ? cmdline : "", cmdlen + 1, err);
    if (ret < 0) {
        return ret;
    }
    si.cmdline_paddr = BOOT_CMDLINE_ADDR;
    if (initrd) {
        uint64_t low = guest_memory_low_size(&vm->mem);
        uint64_t at = initrd_len > low ? 0 : (low - initrd_len) & ~0xfffull;
        if (initrd_len > low || at < kernel_end) {
            return error_set(err, -EFBIG, "the initrd (%zu bytes) does not fit between the kernel (0x%llx) and 0x%llx",
                             initrd_len, (unsigned long long)kernel_end, (unsigned long long)low);
        }
        if ((ret = guest_memory_write(&vm->mem, at, initrd, initrd_len, err)) < 0) {
            return ret;
        }
        struct hvm_modlist_entry mod = { .paddr = at, .size = initrd_len };
        if ((ret = guest_memory_write(&vm->mem, BOOT_MODLIST_ADDR, &mod, sizeof(mod), err)) < 0) {
            return ret;
        }
        si.nr_modules = 1;
        si.modlist_paddr = BOOT_MODLIST_ADDR;
    }
    struct boot_e820 map[BOOT_E820_MAX];
    int n = boot_memory_map(vm, map, BOOT_E820_MAX);
    for (int i = 0; i < n; i++) {
        struct hvm_memmap_entry e = { map[i].addr, map[i].size, map[i].type, 0 };
        ret = guest_memory_write(&vm->mem, BOOT_MEMMAP_ADDR + (uint64_t)i * sizeof(e), &e, sizeof(e), err);
        if (ret < 0) {
            return ret;
        }
    }
    si.memmap_paddr = BOOT_MEMMAP_ADDR;
    si.rsdp_paddr = BOOT_ACPI_ADDR;
    si.memmap_entries = (uint32_t)n;
    return guest_memory_write(&vm->mem, BOOT_START_INFO_ADDR, &si, sizeof(si), err);
}

int boot_pvh(struct vm *vm, const uint8_t *elf, size_t len, const uint8_t *initrd, size_t initrd_len,
             const char *cmdline, struct error *err)
{
    struct boot_elf info;
    int ret = boot_load_elf(vm, elf, len, &info, err);
    if (ret < 0) {
        return ret;
    }
    if (!info.has_pvh_entry) {
        return error_set(err, -EINVAL, "the ELF file has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
    }
    if (info.pvh_entry >= 0x100000000ull) {
        return error_set(err, -EINVAL, "the PVH entry point 0x%llx is not a 32-bit address",
                         (unsigned long long)info.pvh_entry);
    }
    if ((ret = write_start_info(vm, initrd, initrd_len, info.end, cmdline, err)) < 0 ||
        (ret = boot_write_mptable(vm, err)) < 0) {
        return ret;
    }
    return boot_set_protected_mode(vm, (uint32_t)info.pvh_entry, BOOT_START_INFO_ADDR, 0, err);
}
