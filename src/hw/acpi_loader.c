/* QEMU's table-loader interface (the "linker/loader" SeaBIOS and OVMF
 * run from fw_cfg's etc/table-loader): 128-byte commands that allocate a
 * fw_cfg file in guest memory, add a file's guest address to a pointer
 * field in another, and fix a checksum. Described in QEMU's
 * hw/acpi/bios-linker-loader.c; written here from that description. */
#include "hw/acpi_tables.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/bswap.h"

#define LOADER_ENTRY_SIZE 128
#define LOADER_FILE_SIZE 56
#define CMD_ALLOCATE 1
#define CMD_ADD_POINTER 2
#define CMD_ADD_CHECKSUM 3
#define ZONE_HIGH 1             /* anywhere in RAM the firmware reserves */
#define ZONE_FSEG 2             /* the 0xe0000-0xfffff BIOS area, where OSes scan for the RSDP */

static const char *file_of(bool in_rsdp)
{
    return in_rsdp ? ACPI_RSDP_FILE : ACPI_TABLES_FILE;
}

static uint8_t *entry(uint8_t *buf, int *n, uint32_t command)
{
    uint8_t *e = buf + (size_t)(*n)++ * LOADER_ENTRY_SIZE;
    st_le32(e, command);
    return e + 4;
}

static void allocate(uint8_t *buf, int *n, const char *file, uint32_t align, uint8_t zone)
{
    uint8_t *e = entry(buf, n, CMD_ALLOCATE);
    strncpy((char *)e, file, LOADER_FILE_SIZE - 1);
    st_le32(e + LOADER_FILE_SIZE, align);
    e[LOADER_FILE_SIZE + 4] = zone;
}

int acpi_blob_loader(const struct acpi_blob *b, uint8_t **out, size_t *len, struct error *err)
{
    int max = 2 + b->nptrs + b->nsums, n = 0;
    uint8_t *buf = calloc((size_t)max, LOADER_ENTRY_SIZE);
    if (!buf) {
        return error_set(err, -ENOMEM, "out of memory building the ACPI table loader");
    }
    allocate(buf, &n, ACPI_RSDP_FILE, 16, ZONE_FSEG);
    allocate(buf, &n, ACPI_TABLES_FILE, 64, ZONE_HIGH);
    /* Every pointer points into the tables. */
    for (int i = 0; i < b->nptrs; i++) {
        uint8_t *e = entry(buf, &n, CMD_ADD_POINTER);
        strncpy((char *)e, file_of(b->ptrs[i].in_rsdp), LOADER_FILE_SIZE - 1);
        strncpy((char *)e + LOADER_FILE_SIZE, ACPI_TABLES_FILE, LOADER_FILE_SIZE - 1);
        st_le32(e + 2 * LOADER_FILE_SIZE, b->ptrs[i].offset);
        e[2 * LOADER_FILE_SIZE + 4] = b->ptrs[i].size;
    }
    /* After the pointers they cover, in order (the RSDP's extended sum
     * covers its first one). */
    for (int i = 0; i < b->nsums; i++) {
        uint8_t *e = entry(buf, &n, CMD_ADD_CHECKSUM);
        strncpy((char *)e, file_of(b->sums[i].in_rsdp), LOADER_FILE_SIZE - 1);
        st_le32(e + LOADER_FILE_SIZE, b->sums[i].offset);
        st_le32(e + LOADER_FILE_SIZE + 4, b->sums[i].start);
        st_le32(e + LOADER_FILE_SIZE + 8, b->sums[i].length);
    }
    *out = buf;
    *len = (size_t)n * LOADER_ENTRY_SIZE;
    return 0;
}
