/* The x86 page-table walk (vmm/page_walk.c) on page tables built by hand
 * in guest memory, in each paging mode; and memsave through it on a bare
 * machine (no vCPU: the machine_memsave path itself must refuse clearly). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../machine/bare_machine.h"
#include "util/bswap.h"
#include "vmm/page_walk.h"

#define MEMORY (64ull << 20)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)
#define P 1ull
#define RW 2ull
#define PS (1ull << 7)
#define NX (1ull << 63)

static struct guest_memory mem;
static struct guest_memory *cur = &mem;    /* where put64/put32 build tables */

static int setup(void **state)
{
    struct error err = { 0 };
    assert_int_equal(guest_memory_create(&mem, MEMORY, &err), 0);
    return 0;
}

static int teardown(void **state)
{
    guest_memory_destroy(&mem);
    return 0;
}

static void put64(uint64_t gpa, uint64_t v)
{
    st_le64(guest_memory_ptr(cur, gpa, 8), v);
}

static void put32(uint64_t gpa, uint32_t v)
{
    st_le32(guest_memory_ptr(cur, gpa, 4), v);
}

static uint64_t translate_ok(const struct x86_paging *pg, uint64_t va, uint64_t *left)
{
    struct error err = { 0 };
    uint64_t gpa = 0, l = 0;
    if (x86_translate(&mem, pg, va, &gpa, &l, &err) < 0) {
        fail_msg("0x%llx: %s", (unsigned long long)va, err.msg);
    }
    if (left) {
        *left = l;
    }
    return gpa;
}

static void translate_fails(const struct x86_paging *pg, uint64_t va, const char *why)
{
    struct error err = { 0 };
    uint64_t gpa, l;
    assert_int_equal(x86_translate(&mem, pg, va, &gpa, &l, &err), -EFAULT);
    if (!strstr(err.msg, why)) {
        fail_msg("0x%llx: '%s' lacks '%s'", (unsigned long long)va, err.msg, why);
    }
}

/* Long mode, 4 levels: PML4 at 0x10000, PDPT 0x11000, PD 0x12000, PT 0x13000.
 *   0xffff800000201000  4 KiB page -> 0x300000 (higher half: sign-extended)
 *   0x0000000000400000  2 MiB page -> 0x800000
 *   0x0000000040000000  1 GiB page -> 0 */
static void build_long_mode(void)
{
    memset(guest_memory_ptr(&mem, 0x10000, 0x5000), 0, 0x5000);
    put64(0x10000 + 256 * 8, 0x11000 | P | RW);            /* va bits 47..39 = 256 */
    put64(0x11000 + 0 * 8, 0x12000 | P | RW);
    put64(0x12000 + 1 * 8, 0x13000 | P | RW);              /* 0x200000.. */
    put64(0x13000 + 1 * 8, 0x300000 | P | RW | NX);        /* 0x201000 */
    put64(0x10000 + 0 * 8, 0x14000 | P | RW);
    put64(0x14000 + 0 * 8, 0x15000 | P | RW);
    put64(0x15000 + 2 * 8, 0x800000 | P | RW | PS);        /* 0x400000: 2 MiB */
    put64(0x14000 + 1 * 8, 0x0 | P | RW | PS);             /* 0x40000000: 1 GiB */
}

static void test_long_mode(void **state)
{
    build_long_mode();
    struct x86_paging pg = { .cr0 = CR0_PG | 1, .cr3 = 0x10000, .cr4 = CR4_PAE, .efer = EFER_LMA | (1 << 8) };
    uint64_t left;
    assert_int_equal(translate_ok(&pg, 0xffff800000201234ull, &left), 0x300234);
    assert_int_equal(left, 4096 - 0x234);
    assert_int_equal(translate_ok(&pg, 0x4abcdeull, &left), 0x8abcde);
    assert_int_equal(left, 0x600000 - 0x4abcde);
    assert_int_equal(translate_ok(&pg, 0x40123456ull, &left), 0x123456);
    assert_int_equal(left, (1ull << 30) - 0x123456);
    translate_fails(&pg, 0xffff800000202000ull, "not present");
    translate_fails(&pg, 0x0000800000000000ull, "not canonical");
    translate_fails(&pg, 0x600000ull, "not present");
    /* A table pointer outside RAM is reported, not followed. */
    put64(0x15000 + 4 * 8, (1ull << 40) | P);
    translate_fails(&pg, 0x800000ull, "outside RAM");
}

/* 5 levels: one more table above; the same leaves. */
static void test_five_levels(void **state)
{
    build_long_mode();
    memset(guest_memory_ptr(&mem, 0x20000, 0x1000), 0, 0x1000);
    put64(0x20000 + 0x1ff * 8, 0x10000 | P | RW);          /* va bits 56..48 all ones */
    struct x86_paging pg = { .cr0 = CR0_PG | 1, .cr3 = 0x20000, .cr4 = CR4_PAE | CR4_LA57, .efer = EFER_LMA };
    assert_int_equal(translate_ok(&pg, 0xffff800000201008ull, NULL), 0x300008);
    translate_fails(&pg, 0x0000800000201008ull, "not present");     /* canonical in 57 bits, PML5[0] empty */
}

/* PAE: 4 pointers at CR3, then PD and PT; 2 MiB pages. */
static void test_pae(void **state)
{
    memset(guest_memory_ptr(&mem, 0x30000, 0x3000), 0, 0x3000);
    put64(0x30020 + 3 * 8, 0x31000 | P);                   /* CR3 is 32-byte aligned */
    put64(0x31000 + 0 * 8, 0x32000 | P | RW);              /* 0xc0000000.. */
    put64(0x32000 + 5 * 8, 0x2345000 | P);                 /* 0xc0005000 */
    put64(0x31000 + 3 * 8, 0x1000000 | P | PS);            /* 0xc0600000: 2 MiB */
    struct x86_paging pg = { .cr0 = CR0_PG | 1, .cr3 = 0x30020, .cr4 = CR4_PAE };
    assert_int_equal(translate_ok(&pg, 0xc0005678ull, NULL), 0x2345678);
    assert_int_equal(translate_ok(&pg, 0xc0654321ull, NULL), 0x1054321);
    translate_fails(&pg, 0x40000000ull, "page-directory pointer not present");
}

/* 32-bit: 1024-entry tables of 4-byte entries; PSE 4 MiB pages. */
static void test_32bit(void **state)
{
    memset(guest_memory_ptr(&mem, 0x40000, 0x2000), 0, 0x2000);
    put32(0x40000 + 0x300 * 4, 0x41000 | P | RW);          /* 0xc0000000 */
    put32(0x41000 + 2 * 4, 0x00567000 | P);                /* 0xc0002000 */
    put32(0x40000 + 0x301 * 4, 0x00800000 | P | PS);       /* 0xc0400000: 4 MiB */
    struct x86_paging pg = { .cr0 = CR0_PG | 1, .cr3 = 0x40000, .cr4 = CR4_PSE };
    assert_int_equal(translate_ok(&pg, 0xc0002abcull, NULL), 0x567abc);
    assert_int_equal(translate_ok(&pg, 0xc0412345ull, NULL), 0x812345);
    pg.cr4 = 0;     /* without PSE, bit 7 is not a page size: the entry is a table */
    put32(0x800000, 0x00999000 | P);
    assert_int_equal(translate_ok(&pg, 0xc0400000ull, NULL), 0x999000);
    translate_fails(&pg, 0xc0800000ull, "not present");
    struct x86_paging off = { .cr0 = 1 };
    assert_int_equal(translate_ok(&off, 0x12345678ull, NULL), 0x12345678);      /* no paging */
}

/* memsave on a bare machine: two virtual pages that are far apart in
 * physical memory come out as one contiguous range; without a vCPU the
 * QMP path refuses; an unmapped page fails naming the address. */
static void test_memsave(void **state)
{
    static const struct machine_config cfg = { .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO } };
    struct machine *m = bare_machine(&cfg);
    struct error err = { 0 };
    char path[] = "/tmp/cowvisor-memsave.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(machine_memsave(m, 0, 0x1000, 16, path, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "cpu-index"));

    cur = &m->vm.mem;
    memset(guest_memory_ptr(cur, 0x10000, 0x4000), 0, 0x4000);
    put64(0x10000, 0x11000 | P);
    put64(0x11000, 0x12000 | P);
    put64(0x12000, 0x13000 | P);
    put64(0x13000 + 0x10 * 8, 0x700000 | P);               /* va 0x10000 -> 0x700000 */
    put64(0x13000 + 0x11 * 8, 0x200000 | P);               /* va 0x11000 -> 0x200000 */
    memset(guest_memory_ptr(cur, 0x700000, 4096), 0xa1, 4096);
    memset(guest_memory_ptr(cur, 0x200000, 4096), 0xb2, 4096);
    cur = &mem;
    struct x86_paging pg = { .cr0 = CR0_PG | 1, .cr3 = 0x10000, .cr4 = CR4_PAE, .efer = EFER_LMA };
    assert_int_equal(machine_memsave_paging(m, &pg, 0x10800, 4096, path, &err), 0);
    uint8_t buf[4096];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf), f), sizeof(buf));
    fclose(f);
    assert_int_equal(buf[0], 0xa1);
    assert_int_equal(buf[2047], 0xa1);
    assert_int_equal(buf[2048], 0xb2);
    assert_int_equal(buf[4095], 0xb2);
    assert_int_equal(machine_memsave_paging(m, &pg, 0x11800, 8192, path, &err), -EFAULT);
    assert_non_null(strstr(err.msg, "Invalid addr 0x11800/size 8192"));
    assert_non_null(strstr(err.msg, "0x12000 is not mapped"));
    unlink(path);
    bare_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_mode),
        cmocka_unit_test(test_five_levels),
        cmocka_unit_test(test_pae),
        cmocka_unit_test(test_32bit),
        cmocka_unit_test(test_memsave),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
