/* Firmware boot: not implemented yet (a stretch goal). */
#include <errno.h>

#include "vmm/boot.h"

int boot_firmware(struct vm *vm, const uint8_t *image, size_t len, struct error *err)
{
    return error_set(err, -ENOTSUP, "firmware boot is not supported yet");
}
