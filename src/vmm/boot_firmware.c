/* Firmware boot (SeaBIOS bios.bin): the image is mapped read-only so that it
 * ends at 4 GiB, and its last 128 KiB are copied to 0xe0000-0xfffff in RAM,
 * where a PC's BIOS shadow lies. The vCPU starts at the reset vector
 * (0xfffffff0), which is KVM's power-on state, so registers stay as created.
 * The firmware learns the rest (RAM size, e820, boot order, serial console)
 * from fw_cfg, which the machine sets up. */
#include <errno.h>

#include "vmm/boot.h"

#define LOW_BIOS_SIZE 0x20000ull
#define MAX_FIRMWARE (16ull << 20)

int boot_firmware(struct vm *vm, const uint8_t *image, size_t len, struct error *err)
{
    if (len < 0x10000 || len > MAX_FIRMWARE || (len & 0xffff)) {
        return error_set(err, -EINVAL, "firmware must be a multiple of 64 KiB up to 16 MiB (%zu bytes)", len);
    }
    int ret = vm_map_rom(vm, GUEST_4G - len, image, len, err);
    if (ret < 0) {
        return ret;
    }
    uint64_t low = len < LOW_BIOS_SIZE ? len : LOW_BIOS_SIZE;
    return guest_memory_write(&vm->mem, 0x100000 - low, image + len - low, low, err);
}
