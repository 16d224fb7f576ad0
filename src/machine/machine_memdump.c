/* Guest physical memory to a file (QMP pmemsave): for tests and debugging,
 * e.g. comparing RAM on both sides of a migration. */
#include "machine/machine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "util/io.h"

int machine_pmemsave(struct machine *m, uint64_t gpa, uint64_t size, const char *path, struct error *err)
{
    if (size && gpa + size < gpa) {
        return error_set(err, -EINVAL, "Invalid parameter 'size'");
    }
    int ret = machine_memory_intact(m, err);
    if (ret < 0) {
        return ret;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Could not open '%s'", path);
    }
    /* Page by page: a range may span regions, but never the PCI hole. */
    for (uint64_t off = 0; ret == 0 && off < size;) {
        uint64_t n = GUEST_PAGE_SIZE - ((gpa + off) & (GUEST_PAGE_SIZE - 1));
        n = n < size - off ? n : size - off;
        const void *p = guest_memory_ptr(&m->vm.mem, gpa + off, n);
        if (!p) {
            ret = error_set(err, -EINVAL, "Invalid addr 0x%llx/size %llu specified",
                            (unsigned long long)gpa, (unsigned long long)size);
        } else if ((ret = io_pwrite_full(fd, p, n, (off_t)off)) < 0) {
            error_set_errno(err, ret, "writing to file '%s'", path);
        }
        off += n;
    }
    close(fd);
    return ret < 0 ? ret : machine_memory_intact(m, err);
}
