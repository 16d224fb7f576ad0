#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/boot.h"

int boot_memory_map(const struct vm *vm, struct boot_e820 *out, int max)
{
    uint64_t low = guest_memory_low_size(&vm->mem);
    int n = 0;
    if (max < 5) {
        return 0;
    }
    out[n++] = (struct boot_e820){ 0, 0x9fc00, 1 };
    out[n++] = (struct boot_e820){ 0x9fc00, 0x400, 2 };
    out[n++] = (struct boot_e820){ BOOT_ACPI_ADDR, 0x100000 - BOOT_ACPI_ADDR, 2 };   /* ACPI tables, MP table */
    out[n++] = (struct boot_e820){ 0x100000, low - 0x100000, 1 };
    if (vm->mem.count > 1) {
        out[n++] = (struct boot_e820){ vm->mem.regions[1].gpa, vm->mem.regions[1].size, 1 };
    }
    return n;
}

int boot_read_file(const char *path, size_t max, uint8_t **out, size_t *len, struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return error_set_errno(err, -errno, "cannot open '%s'", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return error_set(err, -EINVAL, "'%s' is not a regular file of at most %zu bytes", path, max);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (buf && done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n <= 0) {
            free(buf);
            close(fd);
            return error_set_errno(err, n < 0 ? -errno : -EIO, "reading '%s'", path);
        }
        done += (size_t)n;
    }
    close(fd);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory reading '%s'", path);
    }
    *out = buf;
    *len = done;
    return 0;
}

/* Identity map of the low 4 GiB in 2 MiB pages, for the 64-bit entry. */
static int write_identity_page_tables(struct vm *vm, struct error *err)
{
    uint64_t tables[6][512] = { { 0 } };
    uint64_t pml4 = BOOT_PAGE_TABLE_ADDR, pdpt = pml4 + 0x1000, pd = pdpt + 0x1000;
    tables[0][0] = pdpt | 0x3;                                    /* present, writable */
    for (int g = 0; g < 4; g++) {
        tables[1][g] = (pd + 0x1000 * (uint64_t)g) | 0x3;
        for (int i = 0; i < 512; i++) {
            tables[2 + g][i] = ((uint64_t)g << 30 | (uint64_t)i << 21) | 0x83;  /* 2 MiB page */
        }
    }
    return guest_memory_write(&vm->mem, pml4, tables, sizeof(tables), err);
}

/* Flat segments with the selectors the boot protocols name (0x10 code, 0x18
 * data), protected mode or long mode, interrupts off. */
static int set_flat_mode(struct vm *vm, bool long_mode, struct kvm_regs regs, struct error *err)
{
    struct vcpu *c = &vm->vcpus[0];
    struct kvm_sregs sregs;
    if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0) {
        return error_set_errno(err, -errno, "KVM_GET_SREGS");
    }
    uint64_t gdt[4] = { 0, 0, long_mode ? 0x00af9a000000ffffull : 0x00cf9a000000ffffull, 0x00cf92000000ffffull };
    int ret = guest_memory_write(&vm->mem, BOOT_GDT_ADDR, gdt, sizeof(gdt), err);
    if (ret == 0 && long_mode) {
        ret = write_identity_page_tables(vm, err);
    }
    if (ret < 0) {
        return ret;
    }
    sregs.gdt.base = BOOT_GDT_ADDR;
    sregs.gdt.limit = sizeof(gdt) - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb, .present = 1,
        .dpl = 0, .db = !long_mode, .s = 1, .l = long_mode, .g = 1,
    };
    struct kvm_segment data = code;
    data.selector = 0x18;
    data.type = 0x3;
    data.db = 1;
    data.l = 0;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr.type = 0xb;
    sregs.tr.present = 1;
    sregs.tr.limit = 0x67;
    sregs.cr0 = 0x11;   /* PE, ET */
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (long_mode) {
        sregs.cr0 |= 0x80000000u;           /* PG */
        sregs.cr3 = BOOT_PAGE_TABLE_ADDR;
        sregs.cr4 = 0x20;                   /* PAE */
        sregs.efer = 0x500;                 /* LME, LMA */
    }
    if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0) {
        return error_set_errno(err, -errno, "KVM_SET_SREGS");
    }
    regs.rflags = 0x2;
    if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0) {
        return error_set_errno(err, -errno, "KVM_SET_REGS");
    }
    return 0;
}

int boot_set_protected_mode(struct vm *vm, uint32_t entry, uint32_t ebx, uint32_t esi, struct error *err)
{
    return set_flat_mode(vm, false, (struct kvm_regs){ .rip = entry, .rbx = ebx, .rsi = esi }, err);
}

int boot_set_long_mode(struct vm *vm, uint64_t entry, uint64_t rsi, struct error *err)
{
    return set_flat_mode(vm, true, (struct kvm_regs){ .rip = entry, .rsi = rsi }, err);
}

int boot_is_elf(const uint8_t *image, size_t len)
{
    return len >= 4 && memcmp(image, "\177ELF", 4) == 0;
}
