/* Boot loaders: put a kernel or firmware into guest memory and set the boot
 * vCPU's registers for its entry protocol. */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "vmm/vm.h"

/* Where the boot structures live in guest memory (below 1 MiB, outside
 * anything a kernel loads over). */
#define BOOT_GDT_ADDR        0x5000
#define BOOT_START_INFO_ADDR 0x6000
#define BOOT_MEMMAP_ADDR     0x6100
#define BOOT_MODLIST_ADDR    0x6800
#define BOOT_PAGE_TABLE_ADDR 0x9000    /* PML4, PDPT, 4 PDs: 0x9000-0xefff */
#define BOOT_CMDLINE_ADDR    0x20000
#define BOOT_CMDLINE_MAX     0x10000
#define BOOT_E820_MAX        16
/* The machine's ACPI tables (the RSDP first) in the BIOS area below the MP
 * table, where Linux also scans for the RSDP; the boot protocols point at it. */
#define BOOT_ACPI_ADDR       0xe0000
#define BOOT_ACPI_SIZE       0x10000

struct boot_e820 {
    uint64_t addr;
    uint64_t size;
    uint32_t type;      /* 1 RAM, 2 reserved */
};

/* The guest-physical memory map every boot protocol reports. */
int boot_memory_map(const struct vm *vm, struct boot_e820 *out, int max);

/* Reads a whole file (at most max bytes). */
int boot_read_file(const char *path, size_t max, uint8_t **out, size_t *len, struct error *err);

/* True when the image is an ELF file. */
int boot_is_elf(const uint8_t *image, size_t len);

/* What boot_load_elf found in an ELF file it loaded. */
struct boot_elf {
    bool is64;
    uint64_t entry;         /* e_entry */
    bool has_pvh_entry;
    uint64_t pvh_entry;     /* XEN_ELFNOTE_PHYS32_ENTRY */
    uint64_t end;           /* end of the highest PT_LOAD segment */
};

/* Loads an x86 ELF file's PT_LOAD segments at their physical addresses. */
int boot_load_elf(struct vm *vm, const uint8_t *elf, size_t len, struct boot_elf *out, struct error *err);

/* PVH: an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note, entered in 32-bit
 * protected mode with EBX pointing at an hvm_start_info. */
int boot_pvh(struct vm *vm, const uint8_t *elf, size_t len, const uint8_t *initrd, size_t initrd_len,
             const char *cmdline, struct error *err);

/* Who decompresses a bzImage's kernel. The host (the default) unpacks the
 * payload the setup header points at (boot protocol 2.08+) and enters the
 * vmlinux inside directly: fast everywhere, and the only practical way where
 * kernel-mode guest code is emulated, but without KASLR. The guest runs the
 * kernel's own decompressor from the 32-bit entry point, which places the
 * kernel at a random address when the kernel was built with KASLR. */
enum boot_decompress { BOOT_DECOMPRESS_HOST, BOOT_DECOMPRESS_GUEST };

/* Linux bzImage (boot protocol 2.06+): boot_params, command line, initrd,
 * e820; the kernel decompressed as `how` says (formats the host does not
 * know fall back to the guest). */
int boot_linux(struct vm *vm, const uint8_t *image, size_t len, const uint8_t *initrd, size_t initrd_len,
               const char *cmdline, enum boot_decompress how, struct error *err);

/* Decompresses a bzImage payload (xz, lzma, gzip or zstd, as the kernel's
 * build leaves it: the stream, then its decompressed size in 4 bytes, which
 * for gzip is the stream's own ISIZE field).
 * -ENOTSUP for other formats; at most max_out bytes of output. */
int boot_payload_decompress(const uint8_t *in, size_t len, size_t max_out, uint8_t **out, size_t *out_len,
                            struct error *err);

/* Firmware (SeaBIOS bios.bin): mapped at the top of 4 GiB with its last
 * 128 KiB copied below 1 MiB; entered at the reset vector. */
int boot_firmware(struct vm *vm, const uint8_t *image, size_t len, struct error *err);

/* MP table (MPS 1.4) in the BIOS area: all vCPUs, the IOAPIC, ISA IRQs. */
int boot_write_mptable(struct vm *vm, struct error *err);

/* Flat 32-bit protected mode for vCPU 0 at entry with ebx (shared by loaders). */
int boot_set_protected_mode(struct vm *vm, uint32_t entry, uint32_t ebx, uint32_t esi, struct error *err);

/* 64-bit long mode for vCPU 0 (the boot protocol's 64-bit entry): the low
 * 4 GiB identity-mapped, flat 0x10/0x18 segments, rsi = boot_params. */
int boot_set_long_mode(struct vm *vm, uint64_t entry, uint64_t rsi, struct error *err);

#endif
