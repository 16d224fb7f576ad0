/* ELF loading shared by the PVH protocol (an ELF kernel on the command line)
 * and the bzImage loader (the vmlinux decompressed from a bzImage's payload):
 * PT_LOAD segments go to their physical addresses; the PVH entry note is
 * picked up on the way. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "vmm/boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

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

static int check_header(const uint8_t *elf, size_t len, struct boot_elf *out, struct error *err)
{
    if (len < sizeof(Elf64_Ehdr) || !boot_is_elf(elf, len)) {
        return error_set(err, -EINVAL, "not an ELF file");
    }
    out->is64 = elf[EI_CLASS] == ELFCLASS64;
    if (!out->is64 && elf[EI_CLASS] != ELFCLASS32) {
        return error_set(err, -EINVAL, "unknown ELF class %u", elf[EI_CLASS]);
    }
    if (elf[EI_DATA] != ELFDATA2LSB) {
        return error_set(err, -EINVAL, "not a little-endian ELF file");
    }
    uint16_t machine;
    memcpy(&machine, elf + offsetof(Elf64_Ehdr, e_machine), 2);
    if (machine != (out->is64 ? EM_X86_64 : EM_386)) {
        return error_set(err, -EINVAL, "the ELF file is not for x86 (machine %u)", machine);
    }
    return 0;
}

int boot_load_elf(struct vm *vm, const uint8_t *elf, size_t len, struct boot_elf *out, struct error *err)
{
    *out = (struct boot_elf){ 0 };
    int ret = check_header(elf, len, out, err);
    if (ret < 0) {
        return ret;
    }
    const Elf64_Ehdr *eh64 = (const void *)elf;
    const Elf32_Ehdr *eh32 = (const void *)elf;
    int phnum = out->is64 ? eh64->e_phnum : eh32->e_phnum;
    out->entry = out->is64 ? eh64->e_entry : eh32->e_entry;
    for (int i = 0; i < phnum; i++) {
        struct segment s;
        if (get_segment(elf, len, out->is64, i, &s) < 0) {
            return error_set(err, -EINVAL, "ELF program header %d lies outside the file", i);
        }
        if ((s.type == PT_LOAD || s.type == PT_NOTE) &&
            (s.offset > len || s.filesz > len - s.offset || s.filesz > s.memsz)) {
            return error_set(err, -EINVAL, "ELF segment %d lies outside the file", i);
        }
        if (s.type == PT_NOTE && !out->has_pvh_entry) {
            out->has_pvh_entry = find_pvh_note(elf + s.offset, s.filesz, &out->pvh_entry);
        } else if (s.type == PT_LOAD && s.memsz) {
            uint8_t *dst = guest_memory_ptr(&vm->mem, s.paddr, s.memsz);
            if (!dst || s.paddr < 0x100000 / 2) {
                return error_set(err, -EINVAL, "ELF segment %d (0x%llx, %llu bytes) does not fit in guest RAM",
                                 i, (unsigned long long)s.paddr, (unsigned long long)s.memsz);
            }
            memcpy(dst, elf + s.offset, s.filesz);
            memset(dst + s.filesz, 0, s.memsz - s.filesz);
            if (s.paddr + s.memsz > out->end) {
                out->end = s.paddr + s.memsz;
            }
        }
    }
    return 0;
}
