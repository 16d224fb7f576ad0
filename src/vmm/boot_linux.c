/* Linux bzImage boot: not implemented yet (the boot protocol is a stretch
 * goal); PVH ELF kernels boot through boot_pvh.c. */
#include <errno.h>

#include "vmm/boot.h"

int boot_linux(struct vm *vm, const uint8_t *image, size_t len, const uint8_t *initrd, size_t initrd_len,
               const char *cmdline, struct error *err)
{
    return error_set(err, -ENOTSUP, "not an ELF file with a PVH entry note, and bzImage boot is not supported yet");
}
