/* The ACPI tables as built: every checksum and pointer right where a
 * kernel finds them (placed) and where firmware runs the table-loader
 * commands (a loader written here as SeaBIOS's works), the MADT's CPUs, the
 * DSDT's objects; and the AML encoder's lengths and names. iasl and
 * acpiexec check the same tables in acpi_tables.sh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hw/acpi_aml.h"
#include "hw/acpi_dsdt.h"
#include "hw/acpi_tables.h"
#include "util/bswap.h"

#define BASE 0xe0040u

static struct acpi_config config(int ncpus, uint32_t hotplug)
{
    return (struct acpi_config){ .ncpus = ncpus, .ioapic_id = (uint8_t)ncpus, .pci_mem_start = 0x80000000u,
                                 .pci_mem_end = 0xfec00000u, .hotplug_slots = hotplug, .pm_timer = true };
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--) {
        s = (uint8_t)(s + *p++);
    }
    return s;
}

/* The table at guest address gpa of tables placed at base. */
static const uint8_t *table_at(const struct acpi_blob *b, uint64_t base, uint64_t gpa, const char *sig)
{
    assert_true(gpa >= base && gpa - base + ACPI_HEADER_SIZE <= b->len);
    const uint8_t *t = b->tables + (gpa - base);
    assert_memory_equal(t, sig, 4);
    assert_true(gpa - base + ld_le32(t + 4) <= b->len);
    if (strcmp(sig, "FACS") != 0) {
        assert_int_equal(sum(t, ld_le32(t + 4)), 0);
    }
    return t;
}

/* From the RSDP as an OS walks: both root tables list FADT and MADT; the
 * FADT leads to the FACS and the DSDT. */
static void check_walk(const struct acpi_blob *b, uint64_t base, int ncpus)
{
    assert_memory_equal(b->rsdp, "RSD PTR ", 8);
    assert_int_equal(sum(b->rsdp, 20), 0);
    assert_int_equal(sum(b->rsdp, ACPI_RSDP_SIZE), 0);
    const uint8_t *rsdt = table_at(b, base, ld_le32(b->rsdp + 16), "RSDT");
    const uint8_t *xsdt = table_at(b, base, ld_le64(b->rsdp + 24), "XSDT");
    assert_int_equal(ld_le32(rsdt + 4), ACPI_HEADER_SIZE + 8);
    assert_int_equal(ld_le32(xsdt + 4), ACPI_HEADER_SIZE + 16);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ld_le32(rsdt + ACPI_HEADER_SIZE + 4 * i), ld_le64(xsdt + ACPI_HEADER_SIZE + 8 * i));
    }
    const uint8_t *fadt = table_at(b, base, ld_le64(xsdt + ACPI_HEADER_SIZE), "FACP");
    const uint8_t *madt = table_at(b, base, ld_le64(xsdt + ACPI_HEADER_SIZE + 8), "APIC");
    table_at(b, base, ld_le32(fadt + 36), "FACS");
    assert_int_equal(ld_le32(fadt + 36) % 64, 0);
    table_at(b, base, ld_le32(fadt + 40), "DSDT");
    assert_int_equal(ld_le64(fadt + 140), ld_le32(fadt + 40));
    /* What Linux reads from the FADT: the SCI, the PM blocks (as QEMU's pc). */
    assert_int_equal(ld_le16(fadt + 46), 9);
    assert_int_equal(ld_le32(fadt + 56), 0x600);
    assert_int_equal(ld_le32(fadt + 64), 0x604);
    assert_int_equal(ld_le32(fadt + 76), 0x608);
    assert_int_equal(ld_le32(fadt + 80), 0xafe0);
    assert_int_equal(ld_le32(fadt + 112) & (1u << 20), 0);     /* not hardware-reduced */
    int lapics = 0;
    for (uint32_t at = 44; at < ld_le32(madt + 4); at += madt[at + 1]) {
        assert_true(madt[at + 1] >= 2);
        if (madt[at] == 0) {
            assert_int_equal(madt[at + 3], lapics++);
        } else if (madt[at] == 1) {
            assert_int_equal(madt[at + 2], ncpus);
            assert_int_equal(ld_le32(madt + at + 4), ACPI_IOAPIC_ADDR);
        }
    }
    assert_int_equal(lapics, ncpus);
}

static void test_placed_tables(void **state)
{
    for (int ncpus = 1; ncpus <= 8; ncpus *= 2) {
        struct acpi_config cfg = config(ncpus, 0xfffffffeu);
        struct acpi_blob b;
        struct error err = { 0 };
        assert_int_equal(acpi_build(&b, &cfg, &err), 0);
        acpi_blob_place(&b, BASE);
        check_walk(&b, BASE, ncpus);
        acpi_blob_free(&b);
    }
}

/* ---- the table loader, run as firmware runs it ---- */

struct fw_file {
    const char *name;
    uint8_t *data;
    uint64_t addr;
};

static struct fw_file *file_named(struct fw_file *files, int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(files[i].name, name) == 0) {
            return &files[i];
        }
    }
    fail_msg("the loader names an unknown file '%s'", name);
    return NULL;
}

static void run_loader(const uint8_t *cmds, size_t len, struct fw_file *files, int n)
{
    int allocated = 0;
    assert_int_equal(len % 128, 0);
    for (const uint8_t *c = cmds; c < cmds + len; c += 128) {
        const char *a = (const char *)c + 4;
        switch (ld_le32(c)) {
        case 1: {
            struct fw_file *f = file_named(files, n, a);
            /* The RSDP where OSes scan, the tables anywhere. */
            assert_int_equal(c[4 + 60], strcmp(a, ACPI_RSDP_FILE) == 0 ? 2 : 1);
            assert_int_equal(f->addr % ld_le32(c + 4 + 56), 0);
            allocated++;
            break;
        }
        case 2: {
            struct fw_file *dst = file_named(files, n, a), *src = file_named(files, n, a + 56);
            uint8_t *p = dst->data + ld_le32(c + 4 + 112);
            if (c[4 + 116] == 4) {
                st_le32(p, (uint32_t)(ld_le32(p) + src->addr));
            } else {
                assert_int_equal(c[4 + 116], 8);
                st_le64(p, ld_le64(p) + src->addr);
            }
            break;
        }
        case 3: {
            struct fw_file *f = file_named(files, n, a);
            uint8_t *p = f->data + ld_le32(c + 4 + 56);
            *p = (uint8_t)(*p - sum(f->data + ld_le32(c + 4 + 60), ld_le32(c + 4 + 64)));
            break;
        }
        default:
            fail_msg("unknown loader command %u", ld_le32(c));
        }
    }
    assert_int_equal(allocated, n);
}

static void test_loader_commands(void **state)
{
    struct acpi_config cfg = config(2, 0x00fffff0u);
    struct acpi_blob b, placed;
    struct error err = { 0 };
    uint8_t *cmds;
    size_t len;
    assert_int_equal(acpi_build(&b, &cfg, &err), 0);
    assert_int_equal(acpi_build(&placed, &cfg, &err), 0);
    assert_int_equal(acpi_blob_loader(&b, &cmds, &len, &err), 0);
    const uint64_t tables_at = 0x7ffdf000, rsdp_at = 0xf5a10;
    struct fw_file files[] = { { ACPI_RSDP_FILE, b.rsdp, rsdp_at }, { ACPI_TABLES_FILE, b.tables, tables_at } };
    run_loader(cmds, len, files, 2);
    /* Firmware's result is what a kernel boot gets, at firmware's address. */
    acpi_blob_place(&placed, tables_at);
    assert_memory_equal(b.rsdp, placed.rsdp, ACPI_RSDP_SIZE);
    assert_memory_equal(b.tables, placed.tables, b.len);
    check_walk(&b, tables_at, 2);
    free(cmds);
    acpi_blob_free(&b);
    acpi_blob_free(&placed);
}

/* ---- the DSDT ---- */

static int count(const uint8_t *p, size_t n, const char *what)
{
    int c = 0;
    size_t w = strlen(what);
    for (size_t i = 0; i + w <= n; i++) {
        c += memcmp(p + i, what, w) == 0;
    }
    return c;
}

static void test_dsdt_objects(void **state)
{
    struct acpi_config cfg = config(1, 1u << 3 | 1u << 7 | 1u << 31);
    uint8_t *d;
    size_t n;
    struct error err = { 0 };
    assert_int_equal(acpi_dsdt_build(&cfg, &d, &n, &err), 0);
    assert_int_equal(ld_le32(d + 4), n);
    assert_int_equal(count(d, n, "_S5_"), 1);
    assert_int_equal(count(d, n, "_PRT"), 1);
    assert_int_equal(count(d, n, "_CRS"), 1);
    assert_int_equal(count(d, n, "_E01"), 1);
    /* One slot device with _SUN and _EJ0 per hot-pluggable slot, only. */
    assert_int_equal(count(d, n, "_EJ0"), 3);
    assert_int_equal(count(d, n, "S18_"), 1 + 1);  /* the device and its Notify in DVNT */
    assert_int_equal(count(d, n, "S38_"), 2);
    assert_int_equal(count(d, n, "SF8_"), 2);
    assert_int_equal(count(d, n, "S08_"), 0);
    /* PNP0A03 as its EISA id DWord. */
    assert_int_equal(count(d, n, "\x0c\x41\xd0\x0a\x03"), 1);
    free(d);
}

/* ---- the AML encoder ---- */

static void test_aml_pkglength(void **state)
{
    struct aml a;
    struct error err = { 0 };
    /* Content of 62 bytes: PkgLength 63 fits one byte; 63 bytes: two. */
    for (size_t content = 60; content < 70; content++) {
        aml_init(&a);
        aml_open(&a, AML_SCOPE);
        for (size_t i = 0; i < content; i++) {
            aml_bytes(&a, "\x00", 1);
        }
        aml_close(&a);
        assert_int_equal(aml_finish(&a, &err), 0);
        size_t n = content + 1 <= 63 ? 1 : 2;
        assert_int_equal(a.len, 1 + n + content);
        if (n == 1) {
            assert_int_equal(a.data[1], content + 1);
        } else {
            assert_int_equal(a.data[1] >> 6, 1);
            assert_int_equal((a.data[1] & 0xf) | a.data[2] << 4, content + 2);
        }
        aml_free(&a);
    }
    /* Three bytes past 4 KiB, nested. */
    aml_init(&a);
    aml_open(&a, AML_SCOPE);
    aml_open(&a, AML_SCOPE);
    for (int i = 0; i < 5000; i++) {
        aml_bytes(&a, "\x00", 1);
    }
    aml_close(&a);
    aml_close(&a);
    assert_int_equal(aml_finish(&a, &err), 0);
    assert_int_equal(a.data[1] >> 6, 2);
    assert_int_equal((a.data[1] & 0xf) | a.data[2] << 4 | a.data[3] << 12, a.len - 1);
    aml_free(&a);
}

static void test_aml_names_and_ints(void **state)
{
    struct aml a;
    struct error err = { 0 };
    aml_init(&a);
    aml_name(&a, "\\_SB.PCI0");
    aml_name(&a, "S8");
    aml_name(&a, "\\_SB.PCI0.S08");
    aml_int(&a, 0);
    aml_int(&a, 1);
    aml_int(&a, 0x12);
    aml_int(&a, 0x1234);
    aml_int(&a, 0x12345678);
    aml_int(&a, 0x123456789ull);
    aml_int(&a, UINT64_MAX);
    assert_int_equal(aml_finish(&a, &err), 0);
    static const uint8_t want[] = { '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'S', '8', '_', '_',
                                    '\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'S', '0', '8', '_',
                                    0x00, 0x01, 0x0a, 0x12, 0x0b, 0x34, 0x12, 0x0c, 0x78, 0x56, 0x34, 0x12,
                                    0x0e, 0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0, 0xff };
    assert_int_equal(a.len, sizeof(want));
    assert_memory_equal(a.data, want, sizeof(want));
    aml_free(&a);
    /* Bad names and unbalanced objects are errors, not bytes. */
    const char *bad[] = { "TOOLONG", "1ABC", "A..B", "lower" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        aml_init(&a);
        aml_name(&a, bad[i]);
        assert_int_equal(aml_finish(&a, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "bad AML name"));
        aml_free(&a);
    }
    aml_init(&a);
    aml_scope(&a, "\\_SB");
    assert_int_equal(aml_finish(&a, &err), -EINVAL);
    aml_close(&a);
    aml_free(&a);
    aml_init(&a);
    aml_close(&a);
    assert_int_equal(aml_finish(&a, &err), -EINVAL);
    aml_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placed_tables),
        cmocka_unit_test(test_loader_commands),
        cmocka_unit_test(test_dsdt_objects),
        cmocka_unit_test(test_aml_pkglength),
        cmocka_unit_test(test_aml_names_and_ints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
