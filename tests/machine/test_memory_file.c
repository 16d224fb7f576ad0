/* Snapshots to files on bare machines: the memory file is checksummed and
 * verified before a restore maps it, and a memory file truncated under a
 * restored VM pauses the machine instead of killing the process. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bare_machine.h"
#include "file_damage.h"
#include "machine/machine_int.h"
#include "migration/migration.h"

static const struct machine_config config = {
    .memory = 16 << 20,
    .cpus = 1,
};

static char dir[64], diff_dir[80], mem_path[96], diff_mem_path[112];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/cowvisor-memfile-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(diff_dir, sizeof(diff_dir), "%s/diff", dir);
    snprintf(mem_path, sizeof(mem_path), "%s/memory", dir);
    snprintf(diff_mem_path, sizeof(diff_mem_path), "%s/memory", diff_dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void fill(struct machine *m, uint64_t gpa, uint8_t byte, size_t len)
{
    struct error err = { 0 };
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, byte, len);
    assert_int_equal(guest_memory_write(&m->vm.mem, gpa, buf, len, &err), 0);
    guest_memory_mark_dirty(&m->vm.mem, gpa, len);
    free(buf);
}

/* A machine saved to dir: 0x11 at 1 MiB, 0x22 at 9 MiB. */
static struct machine *saved_machine(void)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    fill(m, 1 << 20, 0x11, 64 << 10);
    fill(m, 9 << 20, 0x22, 4096);
    if (machine_snapshot_files(m, dir, false, &err) < 0) {
        fail_msg("snapshot: %s", err.msg);
    }
    return m;
}

static void assert_same_ram(struct machine *a, struct machine *b)
{
    for (int i = 0; i < a->vm.mem.count; i++) {
        assert_memory_equal(a->vm.mem.regions[i].hva, b->vm.mem.regions[i].hva, a->vm.mem.regions[i].size);
    }
}

static void test_flipped_byte_refused(void **state)
{
    struct error err = { 0 };
    struct machine *a = saved_machine(), *b = bare_machine(&config);
    file_flip_byte(mem_path, (9 << 20) + 100);
    assert_true(machine_restore_files(b, dir, &err) < 0);
    if (!strstr(err.msg, "checksum mismatch in bytes 9437184-10485759") || !strstr(err.msg, mem_path)) {
        fail_msg("unexpected message: %s", err.msg);
    }
    /* A zero page (a hole of the file) counts as much as data. */
    error_clear(&err);
    file_flip_byte(mem_path, (9 << 20) + 100);
    file_flip_byte(mem_path, 5 << 20);
    assert_true(machine_restore_files(b, dir, &err) < 0);
    assert_non_null(strstr(err.msg, "checksum mismatch in bytes 5242880-6291455"));
    file_flip_byte(mem_path, 5 << 20);
    error_clear(&err);
    if (machine_restore_files(b, dir, &err) < 0) {
        fail_msg("restore of the intact file: %s", err.msg);
    }
    assert_same_ram(a, b);
    bare_destroy(a);
    bare_destroy(b);
}

static void test_short_file_refused(void **state)
{
    struct error err = { 0 };
    struct machine *a = saved_machine(), *b = bare_machine(&config);
    assert_int_equal(truncate(mem_path, 3 << 20), 0);
    assert_true(machine_restore_files(b, dir, &err) < 0);
    assert_non_null(strstr(err.msg, "holds 3145728 bytes"));
    bare_destroy(a);
    bare_destroy(b);
}

/* The parent of a diff snapshot is verified too, as what the diff's pages
 * are laid over. */
/* A file that cannot be read is refused, naming it and the error. */
static void test_unreadable_file_refused(void **state)
{
    struct error err = { 0 };
    struct machine *m = bare_machine(&config);
    struct guest_memory_sums sums = { 0 };
    assert_int_equal(guest_memory_sums_compute(&m->vm.mem, NULL, &sums, &err), 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);     /* pread fails with EISDIR */
    assert_true(fd >= 0);
    assert_int_equal(guest_memory_file_verify(fd, dir, &m->vm.mem, NULL, &sums, &err), -EISDIR);
    assert_non_null(strstr(err.msg, "reading memory file"));
    assert_non_null(strstr(err.msg, dir));
    close(fd);
    guest_memory_sums_free(&sums);
    bare_destroy(m);
}

static void test_diff_chain_verified(void **state)
{
    struct error err = { 0 };
    struct machine *a = saved_machine(), *b = bare_machine(&config);
    fill(a, 9 << 20, 0x33, 4096);
    if (machine_snapshot_files(a, diff_dir, true, &err) < 0) {
        fail_msg("diff snapshot: %s", err.msg);
    }
    if (machine_restore_files(b, diff_dir, &err) < 0) {
        fail_msg("restore: %s", err.msg);
    }
    assert_same_ram(a, b);
    bare_destroy(b);
    b = bare_machine(&config);
    file_flip_byte(mem_path, (1 << 20) + 7);
    assert_true(machine_restore_files(b, diff_dir, &err) < 0);
    assert_non_null(strstr(err.msg, mem_path));
    assert_non_null(strstr(err.msg, "checksum mismatch in bytes 1048576-2097151"));
    /* The diff's own pages are verified; its holes are never mapped, so
     * what they hold does not matter (and is not read). */
    error_clear(&err);
    file_flip_byte(mem_path, (1 << 20) + 7);
    file_flip_byte(diff_mem_path, (9 << 20) + 5);
    assert_true(machine_restore_files(b, diff_dir, &err) < 0);
    assert_non_null(strstr(err.msg, diff_mem_path));
    assert_non_null(strstr(err.msg, "checksum mismatch in bytes 9437184-10485759"));
    file_flip_byte(diff_mem_path, (9 << 20) + 5);
    file_flip_byte(diff_mem_path, 3 << 20);
    bare_destroy(b);
    b = bare_machine(&config);
    if (machine_restore_files(b, diff_dir, &err) < 0) {
        fail_msg("restore with a written hole: %s", err.msg);
    }
    assert_same_ram(a, b);
    bare_destroy(a);
    bare_destroy(b);
}

/* The file cut under a restored machine: the VMM's own touch of the lost
 * page (a device, a loader) gets zeros instead of SIGBUS, and the machine
 * pauses, needing a reset. */
static void test_truncated_under_running_machine(void **state)
{
    struct error err = { 0 };
    struct machine *a = saved_machine(), *b = bare_machine(&config);
    assert_int_equal(machine_restore_files(b, dir, &err), 0);
    assert_false(machine_handle_memory_fault(b));
    assert_int_equal(truncate(mem_path, 0), 0);
    guest_memory_fault_install_handler();      /* cmocka catches SIGBUS while a test runs */
    volatile uint8_t *lost = guest_memory_ptr(&b->vm.mem, 9 << 20, 4096);
    assert_int_equal(lost[17], 0);      /* was 0x22: the page is gone */
    assert_int_equal(machine_run_state(b), MACHINE_RUNNING);
    assert_true(machine_handle_memory_fault(b));
    assert_int_equal(machine_run_state(b), MACHINE_PAUSED);
    assert_true(machine_needs_reset(b));
    machine_resume(b);
    assert_int_equal(machine_run_state(b), MACHINE_PAUSED);
    /* What a reset does first: the regions leave the file. */
    assert_int_equal(guest_memory_detach_files(&b->vm.mem, &err), 0);
    for (int i = 0; i < b->vm.mem.count; i++) {
        assert_false(b->vm.mem.regions[i].file_mapped);
    }
    volatile uint8_t *p = guest_memory_ptr(&b->vm.mem, 1 << 20, 4096);
    assert_int_equal(p[0], 0);
    assert_false(machine_handle_memory_fault(b));
    bare_destroy(a);
    bare_destroy(b);
}

/* A snapshot taken while pages are lost would save the zeros standing in
 * for them, under valid checksums: refused, whether the fault was handled
 * already or is found by the snapshot's own reading of RAM. */
static void test_snapshot_of_lost_memory_refused(void **state)
{
    struct error err = { 0 };
    struct machine *a = saved_machine(), *b = bare_machine(&config);
    char other[96];
    snprintf(other, sizeof(other), "%s/other", dir);
    assert_int_equal(machine_restore_files(b, dir, &err), 0);
    assert_int_equal(truncate(mem_path, 0), 0);
    guest_memory_fault_install_handler();
    assert_true(machine_snapshot_files(b, other, false, &err) < 0);
    assert_non_null(strstr(err.msg, "guest memory was lost"));
    assert_true(machine_handle_memory_fault(b));
    error_clear(&err);
    assert_true(machine_snapshot_files(b, other, false, &err) < 0);
    assert_non_null(strstr(err.msg, "guest memory was lost"));
    error_clear(&err);
    assert_true(machine_pmemsave(b, 0, 4096, "/dev/null", &err) < 0);
    error_clear(&err);
    struct migration_params mp = { 0 };
    assert_true(migration_source_check(b, &mp, &err) < 0);     /* nor migrates them */
    assert_non_null(strstr(err.msg, "guest memory was lost"));
    bare_destroy(a);
    bare_destroy(b);
}

/* A process holds at most 8 guest memories the SIGBUS handler watches:
 * one more is refused with a message (not watched silently), and a slot
 * given back is taken again. */
static void test_fault_slots_exhausted(void **state)
{
    (void)state;
    struct guest_memory ms[9];
    struct error err = { 0 };
    int n = 0;
    memset(ms, 0, sizeof(ms));
    while (n < 9 && guest_memory_fault_init(&ms[n], &err) == 0) {
        n++;
    }
    assert_true(n < 9);
    assert_int_equal(err.code, -EMFILE);
    assert_non_null(strstr(err.msg, "more than 8 guest memories"));
    assert_int_equal(ms[n].fault_fd, -1);
    assert_false(ms[n].fault_registered);
    error_clear(&err);
    guest_memory_fault_fini(&ms[0]);
    assert_int_equal(guest_memory_fault_init(&ms[n], &err), 0);
    assert_true(ms[n].fault_registered);
    for (int i = 1; i <= n; i++) {
        guest_memory_fault_fini(&ms[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flipped_byte_refused, setup, teardown),
        cmocka_unit_test(test_fault_slots_exhausted),
        cmocka_unit_test_setup_teardown(test_short_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff_chain_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_under_running_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_of_lost_memory_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
