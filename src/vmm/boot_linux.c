/* The Linux x86 boot protocol (Documentation/x86/boot.rst): the setup header
 * is copied into a zero page (boot_params) that also carries the command
 * line pointer, the initrd and the e820 map. Then either
 *  - the host decompresses the payload and loads the vmlinux inside at its
 *    physical addresses, entered at its 64-bit entry with RSI pointing at
 *    boot_params (as the kernel's own decompressor hands over), or
 *  - the protected-mode part of the bzImage goes to 1 MiB and starts at
 *    code32_start with ESI pointing at boot_params: the guest decompresses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/bswap.h"
#include "util/log.h"
#include "vmm/boot.h"

#define SETUP_HEADER_START 0x1f1
#define SETUP_HEADER_END 0x268
#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define LOADED_HIGH 0x01
#define KASLR_FLAG 0x02
#define CAN_USE_HEAP 0x80
#define KERNEL_LOAD_ADDR 0x100000
#define BOOT_PARAMS_ADDR 0x7000

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* The initrd goes as high as the kernel allows, above floor (the kernel). */
static int place_initrd(struct vm *vm, uint8_t *bp, const uint8_t *initrd, size_t len, uint64_t floor,
                        struct error *err)
{
    uint64_t max = le16(bp + HDR_VERSION) >= 0x203 ? le32(bp + HDR_INITRD_ADDR_MAX) : 0x37ffffff;
    uint64_t top = guest_memory_low_size(&vm->mem);
    if (top > max + 1) {
        top = max + 1;
    }
    uint64_t at = len > top ? 0 : (top - len) & ~0xfffull;
    if (len > top || at < floor) {
        return error_set(err, -EFBIG, "the initrd (%zu bytes) does not fit between the kernel (0x%llx) and 0x%llx",
                         len, (unsigned long long)floor, (unsigned long long)top);
    }
    int ret = guest_memory_write(&vm->mem, at, initrd, len, err);
    put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)at);
    put32(bp + HDR_RAMDISK_SIZE, (uint32_t)len);
    return ret;
}

/* The zero page: setup header, loader type, heap, command line, e820. */
static int make_boot_params(struct vm *vm, const uint8_t *image, uint8_t *bp, const char *cmdline,
                            struct error *err)
{
    uint16_t version = le16(image + HDR_VERSION);
    memcpy(bp + SETUP_HEADER_START, image + SETUP_HEADER_START, SETUP_HEADER_END - SETUP_HEADER_START);
    bp[HDR_TYPE_OF_LOADER] = 0xff;
    bp[HDR_LOADFLAGS] = (uint8_t)((bp[HDR_LOADFLAGS] | CAN_USE_HEAP) & ~KASLR_FLAG);
    bp[HDR_HEAP_END_PTR] = 0x00;
    bp[HDR_HEAP_END_PTR + 1] = 0xfe;
    size_t cmdlen = strlen(cmdline ? cmdline : "");
    uint32_t cmdmax = version >= 0x206 ? le32(image + HDR_CMDLINE_SIZE) : 255;
    if (cmdlen > cmdmax || cmdlen >= BOOT_CMDLINE_MAX) {
        return error_set(err, -EINVAL, "kernel command line longer than the kernel takes (%u bytes)", cmdmax);
    }
    int ret = guest_memory_write(&vm->mem, BOOT_CMDLINE_ADDR, cmdline ? cmdline : "", cmdlen + 1, err);
    if (ret < 0) {
        return ret;
    }
    put32(bp + HDR_CMD_LINE_PTR, BOOT_CMDLINE_ADDR);
    struct boot_e820 map[BOOT_E820_MAX];
    int n = boot_memory_map(vm, map, BOOT_E820_MAX);
    bp[BP_E820_ENTRIES] = (uint8_t)n;
    st_le64(bp + BP_ACPI_RSDP_ADDR, BOOT_ACPI_ADDR);
    for (int i = 0; i < n && i < BP_E820_MAX; i++) {
        uint8_t *e = bp + BP_E820_TABLE + 20 * i;
        memcpy(e, &map[i].addr, 8);
        memcpy(e + 8, &map[i].size, 8);
        memcpy(e + 16, &map[i].type, 4);
    }
    return 0;
}

/* Host decompression: the payload's vmlinux at its physical addresses.
 * -ENOTSUP (nothing written) when the payload is in a format we lack. */
static int load_payload_kernel(struct vm *vm, const uint8_t *image, size_t len, size_t kernel_off,
                               struct boot_elf *elf, struct error *err)
{
    uint64_t off = le32(image + HDR_PAYLOAD_OFFSET), plen = le32(image + HDR_PAYLOAD_LENGTH);
    if (off > len - kernel_off || plen > len - kernel_off - off) {
        return error_set(err, -EINVAL, "the bzImage payload (%llu bytes at %llu) lies outside the file",
                         (unsigned long long)plen, (unsigned long long)off);
    }
    uint8_t *vmlinux;
    size_t vmlinux_len;
    int ret = boot_payload_decompress(image + kernel_off + off, plen, guest_memory_low_size(&vm->mem), &vmlinux,
                                      &vmlinux_len, err);
    if (ret < 0) {
        return ret;
    }
    ret = boot_load_elf(vm, vmlinux, vmlinux_len, elf, err);
    free(vmlinux);
    if (ret < 0) {
        error_prefix(err, "the kernel in the bzImage payload");
    } else if (elf->entry < 0x100000 || elf->entry >= elf->end) {
        ret = error_set(err, -EINVAL, "the kernel's entry point 0x%llx lies outside what it loads",
                        (unsigned long long)elf->entry);
    } else if (elf->end > 0x100000000ull) {
        /* The entry state identity-maps the low 4 GiB only. */
        ret = error_set(err, -EINVAL, "the kernel loads up to 0x%llx, above 4 GiB",
                        (unsigned long long)elf->end);
    }
    return ret;
}

int boot_linux(struct vm *vm, const uint8_t *image, size_t len, const uint8_t *initrd, size_t initrd_len,
               const char *cmdline, enum boot_decompress how, struct error *err)
{
    if (len < 0x1000 || memcmp(image + HDR_MAGIC, "HdrS", 4) != 0 || le16(image + HDR_BOOT_FLAG) != 0xaa55) {
        return error_set(err, -EINVAL, "neither an ELF file with a PVH note nor a Linux bzImage");
    }
    uint16_t version = le16(image + HDR_VERSION);
    if (version < 0x206 || !(image[HDR_LOADFLAGS] & LOADED_HIGH)) {
        return error_set(err, -EINVAL, "bzImage boot protocol %u.%u is too old (2.06 and a high-loaded kernel needed)",
                         version >> 8, version & 0xff);
    }
    size_t setup_sects = image[HDR_SETUP_SECTS] ? image[HDR_SETUP_SECTS] : 4;
    size_t kernel_off = (setup_sects + 1) * 512;
    if (kernel_off >= len) {
        return error_set(err, -EINVAL, "bzImage setup (%zu sectors) is larger than the file", setup_sects);
    }
    uint8_t bp[4096] = { 0 };
    int ret = make_boot_params(vm, image, bp, cmdline, err);
    if (ret < 0) {
        return ret;
    }
    struct boot_elf elf = { 0 };
    bool host = how == BOOT_DECOMPRESS_HOST && version >= 0x208 && le32(image + HDR_PAYLOAD_LENGTH);
    if (host && (ret = load_payload_kernel(vm, image, len, kernel_off, &elf, err)) == -ENOTSUP) {
        log_info("%s: the guest decompresses the kernel", err ? err->msg : "unknown payload format");
        error_clear(err);
        host = false;
        ret = 0;
    }
    if (ret < 0) {
        return ret;
    }
    /* The kernel's footprint: what we loaded, or the bzImage copied to 1 MiB,
     * and at least init_size from its preferred address (bss, brk and, for
     * the guest's decompressor, its work area). Saturating: hostile headers. */
    uint64_t kernel_end = host ? elf.end : KERNEL_LOAD_ADDR + (len - kernel_off);
    uint64_t pref = version >= 0x20a ? le64(image + HDR_PREF_ADDRESS) : 0;
    uint64_t init_end = pref > UINT64_MAX - 0xffffffffull ? UINT64_MAX : pref + le32(image + HDR_INIT_SIZE);
    if (version >= 0x20a && init_end > kernel_end) {
        kernel_end = init_end;
    }
    if (!host) {
        ret = guest_memory_write(&vm->mem, KERNEL_LOAD_ADDR, image + kernel_off, len - kernel_off, err);
    }
    if (ret == 0 && initrd) {
        ret = place_initrd(vm, bp, initrd, initrd_len, kernel_end, err);
    }
    if (ret < 0 || (ret = guest_memory_write(&vm->mem, BOOT_PARAMS_ADDR, bp, sizeof(bp), err)) < 0 ||
        (ret = boot_write_mptable(vm, err)) < 0) {
        return ret;
    }
    if (!host) {
        return boot_set_protected_mode(vm, le32(image + HDR_CODE32_START), 0, BOOT_PARAMS_ADDR, err);
    }
    return elf.is64 ? boot_set_long_mode(vm, elf.entry, BOOT_PARAMS_ADDR, err)
                    : boot_set_protected_mode(vm, (uint32_t)elf.entry, 0, BOOT_PARAMS_ADDR, err);
}
