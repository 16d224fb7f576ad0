/* The PVH boot protocol (Xen's HVM direct boot, also used by QEMU and
 * Firecracker): load the ELF's PT_LOAD segments at their physical addresses,
 * find XEN_ELFNOTE_PHYS32_ENTRY, and hand the kernel an hvm_start_info. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "vmm/boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
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

/* One program header, whatever the ELF class. */
struct segment {
    uint32_t type;
    uint64_t offset, paddr, filesz, memsz;
};

static int get_segment(const uint8_t *elf, size_t len, bool is64, int i, struct segment *s)
{
    if (is64) {
        const Elf64_Ehdr *eh = (const void *)elf;
        uint64_t off = eh->e_phoff + (uint64_t)i * eh->e_phentsize;
        if (eh->e_phentsize < sizeof(Elf64_Phdr) || off > len || len - off < sizeof(Elf64_Phdr)) {
            return -EINVAL;
        }
        Elf64_Phdr ph;
        memcpy(&ph, elf + off, sizeof(ph));
        *s = (struct segment){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
    } else {
        const Elf32_Ehdr *eh = (const void *)elf;
        uint64_t off = eh->e_phoff + (uint64_t)i * eh->e_phentsize;
        if (eh->e_phentsize < sizeof(Elf32_Phdr) || off > len || len - off < sizeof(Elf32_Phdr)) {
            return -EINVAL;
        }
        Elf32_Phdr ph;
        memcpy(&ph, elf + off, sizeof(ph));
        *s = (struct segment){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
    }
    return 0;
}

/* Walks the notes of one PT_NOTE segment for the PVH entry point. */
static bool find_pvh_note(const uint8_t *p, uint64_t n, uint64_t *entry)
{
    uint64_t pos = 0;
    while (n - pos >= 12) {
        uint32_t namesz, descsz, type;
        memcpy(&namesz, p + pos, 4);
        memcpy(&descsz, p + pos + 4, 4);
        memcpy(&type, p + pos + 8, 4);
        uint64_t name_off = pos + 12;
        uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
        uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ull);
        if (next > n) {
            return false;
        }
        if (namesz == 4 && memcmp(p + name_off, "Xen", 4) == 0 && type == XEN_ELFNOTE_PHYS32_ENTRY &&
            (descsz == 4 || descsz == 8)) {
            uint64_t v = 0;
            memcpy(&v, p + desc_off, descsz);
            *entry = v;
            return true;
        }
        pos = next;
    }
    return false;
}

static int load_segments(struct vm *vm, const uint8_t *elf, size_t len, bool is64, int phnum,
                         uint64_t *entry, struct error *err)
{
    bool found = false;
    for (int i = 0; i < phnum; i++) {
        struct segment s;
        if (get_segment(elf, len, is64, i, &s) < 0) {
            return error_set(err, -EINVAL, "ELF program header %d lies outside the file", i);
        }
        if ((s.type == PT_LOAD || s.type == PT_NOTE) &&
            (s.offset > len || s.filesz > len - s.offset || s.filesz > s.memsz)) {
            return error_set(err, -EINVAL, "ELF segment %d lies outside the file", i);
        }
        if (s.type == PT_NOTE && !found) {
            found = find_pvh_note(elf + s.offset, s.filesz, entry);
        } else if (s.type == PT_LOAD && s.memsz) {
            uint8_t *dst = guest_memory_ptr(&vm->mem, s.paddr, s.memsz);
            if (!dst || s.paddr < 0x100000 / 2) {
                return error_set(err, -EINVAL, "ELF segment %d (0x%llx, %llu bytes) does not fit in guest RAM",
                                 i, (unsigned long long)s.paddr, (unsigned long long)s.memsz);
            }
            memcpy(dst, elf + s.offset, s.filesz);
            memset(dst + s.filesz, 0, s.memsz - s.filesz);
        }
    }
    if (!found) {
        return error_set(err, -EINVAL, "the ELF file has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
    }
    if (*entry >= 0x100000000ull) {
        return error_set(err, -EINVAL, "the PVH entry point 0x%llx is not a 32-bit address",
                         (unsigned long long)*entry);
    }
    return 0;
}

static int write_start_info(struct vm *vm, const uint8_t *initrd, size_t initrd_len, const char *cmdline,
                            struct error *err)
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
        uint64_t at = (low - initrd_len) & ~0xfffull;
        if (initrd_len > low / 2) {
            return error_set(err, -EFBIG, "the initrd (%zu bytes) does not fit in guest RAM", initrd_len);
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
    si.memmap_entries = (uint32_t)n;
    return guest_memory_write(&vm->mem, BOOT_START_INFO_ADDR, &si, sizeof(si), err);
}

int boot_pvh(struct vm *vm, const uint8_t *elf, size_t len, const uint8_t *initrd, size_t initrd_len,
             const char *cmdline, struct error *err)
{
    if (len < sizeof(Elf64_Ehdr) || !boot_is_elf(elf, len)) {
        return error_set(err, -EINVAL, "not an ELF file");
    }
    bool is64 = elf[EI_CLASS] == ELFCLASS64;
    if (!is64 && elf[EI_CLASS] != ELFCLASS32) {
        return error_set(err, -EINVAL, "unknown ELF class %u", elf[EI_CLASS]);
    }
    if (elf[EI_DATA] != ELFDATA2LSB) {
        return error_set(err, -EINVAL, "not a little-endian ELF file");
    }
    uint16_t machine, phnum;
    memcpy(&machine, elf + offsetof(Elf64_Ehdr, e_machine), 2);
    phnum = is64 ? ((const Elf64_Ehdr *)(const void *)elf)->e_phnum : ((const Elf32_Ehdr *)(const void *)elf)->e_phnum;
    if (machine != EM_X86_64 && machine != EM_386) {
        return error_set(err, -EINVAL, "the ELF file is not for x86 (machine %u)", machine);
    }
    uint64_t entry = 0;
    int ret = load_segments(vm, elf, len, is64, phnum, &entry, err);
    if (ret == 0) {
        ret = write_start_info(vm, initrd, initrd_len, cmdline, err);
    }
    if (ret == 0) {
        ret = boot_write_mptable(vm, err);
    }
    if (ret == 0) {
        ret = boot_set_protected_mode(vm, (uint32_t)entry, BOOT_START_INFO_ADDR, 0, err);
    }
    return ret;
}
