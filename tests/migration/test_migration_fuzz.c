/* A hostile migration stream against the destination's loader: valid
 * streams from bare machines are mutated with a fixed seed
 * (fuzz_stream.c) and fed to migration_dest over a socket:
 *   pre-copy   configuration, setup, page batches with data and zero
 *              pages, the device state;
 *   post-copy  the same up to the switch, then the discard list, the
 *              device state and the discarded pages again; a stream that
 *              breaks once the guest could run pauses the destination, and
 *              the resume handshake follows on a new connection (the pages
 *              the destination reports missing, then a tail stream with
 *              them, itself mutated at times);
 *   disks      the overlay-only mode: the disks' setup, their chunks and
 *              checksums, into an empty overlay on the same base.
 * Each run must end (with an error naming what was wrong, or having loaded
 * a stream that is still valid), without a crash, a hang or a sanitizer
 * report; a resume with every page the destination asked for must
 * complete. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../machine/bare_machine.h"
#include "block/blockdev.h"
#include "fuzz_stream.h"
#include "status_events.h"
#include "machine/machine_state.h"
#include "migration/migration_int.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/zero.h"

#define MEMORY (8ull << 20)
#define PAGES (MEMORY / 4096)
/* Per stream kind (FUZZ_MUTATIONS and FUZZ_SEED for longer runs by hand);
 * fewer of the costlier kinds: a post-copy run registers RAM with a
 * userfaultfd, a disk run makes and opens an image. */
#define MUTATIONS 200
#define POSTCOPY_MUTATIONS 100
#define DISK_MUTATIONS 50
#define DATA_GPA 0x100000ull
#define LATE_GPA 0x200000ull /* post-copy: pages first sent after the switch */
#define DISK_SIZE (4ull << 20)

static const struct machine_config config = {
    .cpus = 1, .memory = MEMORY, .nrng = 1, .rng = { TRANSPORT_MMIO },
};

static void fill(struct machine *m)
{
    uint8_t *p = guest_memory_ptr(&m->vm.mem, DATA_GPA, 16 * 4096);
    for (int i = 0; i < 16 * 4096; i++) {
        p[i] = (uint8_t)(i * 13 + 5);
    }
    uart_write(&m->uart, 7, 1, 0x5a);
    cmos_rtc_write(&m->rtc, 0, 1, 0x40);
}

/* ---- the valid streams ---- */

struct writer {
    int fd;
    struct vmstate_writer w;
};

static void writer_begin(struct writer *wr)
{
    struct error err = { 0 };
    wr->fd = memfd_create("stream", MFD_CLOEXEC);
    assert_true(wr->fd >= 0);
    assert_int_equal(vmstate_writer_begin(&wr->w, vmstate_pipe_io(&wr->fd), &err), 0);
}

static struct bytes writer_end(struct writer *wr)
{
    struct error err = { 0 };
    int64_t len = vmstate_writer_finish(&wr->w, &err);
    vmstate_writer_free(&wr->w);
    struct bytes s = fuzz_read_memfd(wr->fd, len);
    close(wr->fd);
    return s;
}

/* One "mig-ram" section: n pages from gpa on, each with its data or, when
 * zero in m, as a zero page (mig_batch's encoding, in any count). */
static void ram_section(struct vmstate_writer *w, struct machine *m, uint64_t gpa, uint64_t n)
{
    struct error err = { 0 };
    uint64_t len = 4;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = guest_memory_ptr(&m->vm.mem, gpa + i * 4096, 4096);
        len += 8 + (mem_is_zero(p, 4096) ? 0 : 4096);
    }
    uint8_t b[8];
    assert_int_equal(vmstate_section_begin(w, MIG_SECTION_RAM, 1, len, &err), 0);
    st_le32(b, (uint32_t)n);
    assert_int_equal(vmstate_section_write(w, b, 4, &err), 0);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = guest_memory_ptr(&m->vm.mem, gpa + i * 4096, 4096);
        bool zero = mem_is_zero(p, 4096);
        st_le64(b, (gpa + i * 4096) | (zero ? MIG_PAGE_ZERO : 0));
        assert_int_equal(vmstate_section_write(w, b, 8, &err), 0);
        if (!zero) {
            assert_int_equal(vmstate_section_write(w, p, 4096, &err), 0);
        }
    }
    assert_int_equal(vmstate_section_end(w, &err), 0);
}

/* Pages DATA_GPA.. (data) and 0x120000.. (zero), in two batches, as the
 * source's mig_batch writes them. */
static void batches(struct machine *m, struct vmstate_writer *w)
{
    struct mig_batch *b = malloc(sizeof(*b));
    struct error err = { 0 };
    assert_non_null(b);
    for (uint64_t base = DATA_GPA; base <= DATA_GPA + 0x20000; base += 0x20000) {
        mig_batch_reset(b);
        for (int i = 0; i < 16; i++) {
            mig_batch_add(b, &m->vm.mem, base + (uint64_t)i * 4096);
        }
        assert_true(mig_batch_write(b, w, &err) > 0);
    }
    free(b);
}

static struct bytes precopy_stream(struct machine *m)
{
    struct error err = { 0 };
    struct writer wr;
    writer_begin(&wr);
    assert_int_equal(machine_state_save_config(m, &wr.w, &err), 0);
    assert_int_equal(mig_setup_write(&wr.w, &m->vm.mem, 0, &err), 0);
    batches(m, &wr.w);
    assert_int_equal(machine_state_save(m, &wr.w, &err), 0);
    return writer_end(&wr);
}

/* "mig-postcopy": n pages from each gpa in runs (the source's encoding). */
static void discard_section(struct vmstate_writer *w, const uint64_t *gpa, const uint64_t *n, int runs)
{
    struct error err = { 0 };
    uint64_t total = 0;
    for (int i = 0; i < runs; i++) {
        total += n[i];
    }
    uint8_t b[8];
    assert_int_equal(vmstate_section_begin(w, MIG_SECTION_POSTCOPY, 1, 4 + total * 8, &err), 0);
    st_le32(b, (uint32_t)total);
    assert_int_equal(vmstate_section_write(w, b, 4, &err), 0);
    for (int i = 0; i < runs; i++) {
        for (uint64_t k = 0; k < n[i]; k++) {
            st_le64(b, gpa[i] + k * 4096);
            assert_int_equal(vmstate_section_write(w, b, 8, &err), 0);
        }
    }
    assert_int_equal(vmstate_section_end(w, &err), 0);
}

/* Pre-copy sends every page but the late ones; at the switch the
 * destination forgets the data pages (dirtied since) and the late ones;
 * after the devices, the source sends them. */
static struct bytes postcopy_stream(struct machine *m)
{
    static const uint64_t gpa[] = { DATA_GPA, LATE_GPA }, n[] = { 16, 8 };
    struct error err = { 0 };
    struct writer wr;
    writer_begin(&wr);
    assert_int_equal(machine_state_save_config(m, &wr.w, &err), 0);
    assert_int_equal(mig_setup_write(&wr.w, &m->vm.mem, MIG_SETUP_POSTCOPY, &err), 0);
    ram_section(&wr.w, m, 0, LATE_GPA / 4096);
    ram_section(&wr.w, m, LATE_GPA + 8 * 4096, PAGES - LATE_GPA / 4096 - 8);
    discard_section(&wr.w, gpa, n, 2);
    assert_int_equal(machine_state_save(m, &wr.w, &err), 0);
    ram_section(&wr.w, m, LATE_GPA, 8);
    ram_section(&wr.w, m, DATA_GPA, 16);
    return writer_end(&wr);
}

/* ---- feeding the destination ---- */

static void send_all(int fd, const struct bytes *b)
{
    for (size_t done = 0; done < b->len;) {
        ssize_t n = send(fd, b->data + done, b->len - done, MSG_NOSIGNAL);
        if (n <= 0) {
            return;             /* the destination gave up, or paused */
        }
        done += (size_t)n;
    }
}

struct missing {
    uint64_t pages;
    uint64_t *bits[GUEST_MEM_MAX_REGIONS];
};

/* The destination's list of missing pages on the new connection, up to
 * RESUME_END: every message well-formed, no page outside RAM. */
static void read_missing(int fd, const struct guest_memory *mem, struct missing *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < mem->count; i++) {
        out->bits[i] = calloc((mem->regions[i].size / 4096 + 63) / 64, 8);
    }
    for (;;) {
        struct mig_rp_msg msg;
        struct error err = { 0 };
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 10000) != 1) {
            fail_msg("the paused destination sent no list of missing pages in 10 s");
        }
        if (mig_rp_recv(fd, &msg, &err) < 0) {
            fail_msg("the paused destination's return path: %s", err.msg);
        }
        if (msg.type == MIG_RP_RESUME_END) {
            return;
        }
        if (msg.type != MIG_RP_RESUME_BITS) {
            continue;           /* a page request asked again: the tail brings it */
        }
        unsigned region = (unsigned)(msg.arg >> 56), n = (unsigned)(msg.arg >> 48) & 0xff;
        uint64_t first = msg.arg & 0xffffffffffffull;
        assert_true(region < (unsigned)mem->count && n >= 1 && n <= MIG_RP_RESUME_WORDS);
        uint64_t pages = mem->regions[region].size / 4096;
        assert_true(first + n <= (pages + 63) / 64);
        for (unsigned k = 0; k < n; k++) {
            uint64_t word = ld_le64((const uint8_t *)msg.text + k * 8);
            if ((first + k + 1) * 64 > pages) {
                assert_int_equal(word >> (pages % 64), 0);     /* nothing past the region */
            }
            out->bits[region][first + k] |= word;
            out->pages += (uint64_t)__builtin_popcountll(word);
        }
    }
}

/* A tail stream with the missing pages (from src), and the end. */
static struct bytes tail_stream(struct machine *src, const struct missing *miss)
{
    struct writer wr;
    writer_begin(&wr);
    const struct guest_memory *mem = &src->vm.mem;
    for (int i = 0; i < mem->count; i++) {
        for (uint64_t p = 0; p < mem->regions[i].size / 4096; p++) {
            if (miss->bits[i][p / 64] >> (p % 64) & 1) {
                ram_section(&wr.w, src, mem->regions[i].gpa + p * 4096, 1);
            }
        }
        free(miss->bits[i]);
    }
    return writer_end(&wr);
}

/* Until the destination ends or pauses once more than seen (post-copy);
 * a hang fails. */
static bool wait_end_or_pause(int seen, const char *what)
{
    int ret = status_events_wait(seen, 20000);
    if (ret < 0) {
        fail_msg("%s: the destination neither ended nor paused in 20 s", what);
    }
    return ret == 1;
}

/* Post-copy paused: the handshake on a new connection, then the missing
 * pages (a third of the time, a mutated tail). <0: given up (paused
 * again after a hostile tail). */
static int resume(struct migration_dest *d, struct machine *src, const struct guest_memory *mem, const char *what,
                  int *resumed, struct error *err)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    if (migration_dest_resume(d, fds[1], err) < 0) {
        fail_msg("%s: migrate-recover refused on a paused destination: %s", what, err->msg);
    }
    struct missing miss;
    read_missing(fds[0], mem, &miss);
    struct bytes tail = tail_stream(src, &miss);
    /* Only the end: nothing to mutate but the end itself. */
    bool hostile = fuzz_rnd(3) == 0 && miss.pages > 0;
    if (hostile) {
        char how[96];
        struct bytes m = fuzz_mutate(&tail, MEMORY, NULL, how, sizeof(how));
        free(tail.data);
        tail = m;
    }
    send_all(fds[0], &tail);
    shutdown(fds[0], SHUT_WR);
    free(tail.data);
    (*resumed)++;
    int ret = 0;
    if (!wait_end_or_pause(1, what)) {
        if (!hostile) {
            fail_msg("%s: paused again after a tail with every missing page", what);
        }
        ret = error_set(err, -EPIPE, "paused again");
    } else {
        ret = migration_dest_wait(d, err);
        if (ret < 0 && !hostile) {
            fail_msg("%s: the resume with every missing page failed: %s", what, err->msg);
        }
    }
    close(fds[0]);
    return ret;
}

/* The stream to a destination loading into m; its result, err filled.
 * src: the post-copy source's machine, for the pages a resume sends. */
static int feed(struct machine *m, struct machine *src, const struct bytes *b, const char *what, int *resumed,
                struct error *err)
{
    int fds[2];
    struct migration_dest *d;
    struct migration_hooks h = { .status = status_events_hook };
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    status_events_reset();
    assert_int_equal(migration_dest_start(&d, m, fds[1], &h, err), 0);
    send_all(fds[0], b);
    shutdown(fds[0], SHUT_WR);
    int ret;
    if (wait_end_or_pause(0, what)) {
        ret = migration_dest_wait(d, err);
    } else {
        ret = resume(d, src, &m->vm.mem, what, resumed, err);
    }
    migration_dest_free(d);
    close(fds[0]);
    return ret;
}

typedef struct bytes (*stream_fn)(struct machine *m);

static void valid_stream_loads(stream_fn make)
{
    struct machine *a = bare_machine(&config), *b = bare_machine(&config);
    struct error err = { 0 };
    int resumed = 0;
    fill(a);
    struct bytes s = make(a);
    if (feed(b, a, &s, "the valid stream", &resumed, &err) < 0) {
        fail_msg("the valid stream failed: %s", err.msg);
    }
    assert_int_equal(resumed, 0);
    assert_memory_equal(guest_memory_ptr(&a->vm.mem, DATA_GPA, 16 * 4096),
                        guest_memory_ptr(&b->vm.mem, DATA_GPA, 16 * 4096), 16 * 4096);
    free(s.data);
    bare_destroy(a);
    bare_destroy(b);
}

static void mutated_streams(stream_fn make, int count, const char *prefer, bool expect_resumes)
{
    struct machine *a = bare_machine(&config), *b = bare_machine(&config);
    int mutations = fuzz_mutations(count), refused = 0, resumed = 0;
    fuzz_seed_from_env();
    fill(a);
    struct bytes valid = make(a);
    for (int i = 0; i < mutations; i++) {
        char what[128];
        struct error err = { 0 };
        struct bytes s = fuzz_mutate(&valid, MEMORY, prefer, what, sizeof(what));
        char where[160];
        snprintf(where, sizeof(where), "mutation %d (%s)", i, what);
        int ret = feed(b, a, &s, where, &resumed, &err);
        if (ret < 0 && !err.msg[0]) {
            fail_msg("%s failed with no message", where);
        }
        refused += ret < 0;
        free(s.data);
    }
    print_message("%d mutated streams: %d refused, %d loaded, %d resumed\n", mutations, refused,
                  mutations - refused, resumed);
    assert_true(refused > mutations / 3);
    if (expect_resumes) {
        assert_true(resumed > 0);
    }
    free(valid.data);
    bare_destroy(a);
    bare_destroy(b);
}

static void test_precopy_valid(void **state)
{
    valid_stream_loads(precopy_stream);
}

static void test_precopy_mutated(void **state)
{
    mutated_streams(precopy_stream, MUTATIONS, NULL, false);
}

static void test_postcopy_valid(void **state)
{
    valid_stream_loads(postcopy_stream);
}

static void test_postcopy_mutated(void **state)
{
    mutated_streams(postcopy_stream, POSTCOPY_MUTATIONS, MIG_SECTION_POSTCOPY, true);
}

/* ---- disks: the overlay-only mode ---- */

static char dir[64], base[96], src_ovl[96], dst_ovl[96];
static struct machine_config disk_cfg_a, disk_cfg_b;

static void create_image(const char *file, const char *backing, uint64_t size)
{
    struct blockdev_create_opts o;
    struct error err = { 0 };
    blockdev_create_opts_init(&o);
    o.size = size;
    o.backing_file = backing;
    o.backing_format = backing ? "qcow2" : NULL;
    if (blockdev_create(file, &o, &err) < 0) {
        fail_msg("create %s: %s", file, err.msg);
    }
}

static struct blockdev *open_image(const char *file, unsigned flags)
{
    struct blockdev *bd = NULL;
    struct blockdev_open_opts o = { .format = "qcow2", .flags = flags };
    struct error err = { 0 };
    if (blockdev_open(&bd, file, &o, &err) < 0) {
        fail_msg("open %s: %s", file, err.msg);
    }
    return bd;
}

static void write_pattern(struct blockdev *bd, uint64_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = malloc(len);
    struct error err = { 0 };
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 7 + i / 4096);
    }
    assert_int_equal(blockdev_pwrite(bd, off, buf, len, &err), 0);
    free(buf);
}

static struct machine_config disk_config(const char *file)
{
    struct machine_config c = config;
    c.ndisks = 1;
    c.disks[0] = (struct disk_config){ .file = file, .format = "qcow2", .transport = TRANSPORT_MMIO };
    return c;
}

/* A base both sides have; the source's overlay defines data, zeros and a
 * cluster past the base's end. */
static int disk_setup(void **state)
{
    /* tmpfs where there is one: every run makes an image (its syncs cost
     * nothing there) */
    snprintf(dir, sizeof(dir), "%s/cowvisor-migfuzz.XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(base, sizeof(base), "%s/base.qcow2", dir);
    snprintf(src_ovl, sizeof(src_ovl), "%s/src.qcow2", dir);
    snprintf(dst_ovl, sizeof(dst_ovl), "%s/dst.qcow2", dir);
    create_image(base, NULL, DISK_SIZE / 2);
    struct blockdev *bd = open_image(base, 0);
    write_pattern(bd, 0, DISK_SIZE / 2, 1);
    blockdev_close(bd);
    create_image(src_ovl, base, DISK_SIZE);
    bd = open_image(src_ovl, 0);
    struct error err = { 0 };
    write_pattern(bd, 65536, 3 * 65536, 9);
    assert_int_equal(blockdev_pwrite_zeroes(bd, 5 * 65536, 65536, 0, &err), 0);
    write_pattern(bd, DISK_SIZE - 65536, 4096, 17);
    blockdev_close(bd);
    disk_cfg_a = disk_config(src_ovl);
    disk_cfg_b = disk_config(dst_ovl);
    return 0;
}

static int disk_teardown(void **state)
{
    unlink(base);
    unlink(src_ovl);
    unlink(dst_ovl);
    rmdir(dir);
    return 0;
}

/* The destination's disk: a new empty overlay on the base, not active
 * until the stream hands it over. */
static void fresh_dest_disk(struct machine *b)
{
    machine_close_disks(b);
    unlink(dst_ovl);
    create_image(dst_ovl, base, DISK_SIZE);
    b->disks[0] = open_image(dst_ovl, BDEV_INACTIVE);
}

static void no_progress(void *opaque, uint64_t bytes)
{
}

static struct machine *disk_source(void)
{
    struct machine *a = bare_machine(&disk_cfg_a);
    a->disks[0] = open_image(src_ovl, 0);
    fill(a);
    return a;
}

/* As the source writes it: disk setup after the setup, the overlay's
 * clusters after the pages (one pass, then the last with the sums). */
static struct bytes disk_stream(struct machine *a)
{
    struct error err = { 0 };
    struct writer wr;
    struct mig_disk_tx *tx;
    writer_begin(&wr);
    assert_int_equal(machine_state_save_config(a, &wr.w, &err), 0);
    assert_int_equal(mig_setup_write(&wr.w, &a->vm.mem, MIG_SETUP_DISKS, &err), 0);
    assert_int_equal(mig_disk_setup_write(&wr.w, a, &err), 0);
    batches(a, &wr.w);
    assert_int_equal(mig_disk_tx_new(&tx, a, no_progress, NULL, &err), 0);
    assert_int_equal(mig_disk_tx_pass(tx, &wr.w, &err), 0);
    mig_disk_tx_harvest(tx);
    assert_int_equal(mig_disk_tx_finish(tx, &wr.w, &err), 0);
    mig_disk_tx_free(tx);
    assert_int_equal(machine_state_save(a, &wr.w, &err), 0);
    return writer_end(&wr);
}

static void assert_same_disk(struct blockdev *x, struct blockdev *y)
{
    uint8_t *p = malloc(DISK_SIZE), *q = malloc(DISK_SIZE);
    struct error err = { 0 };
    assert_int_equal(blockdev_pread(x, 0, p, DISK_SIZE, &err), 0);
    assert_int_equal(blockdev_pread(y, 0, q, DISK_SIZE, &err), 0);
    assert_memory_equal(p, q, DISK_SIZE);
    free(p);
    free(q);
}

static void test_disks_valid(void **state)
{
    struct machine *a = disk_source(), *b = bare_machine(&disk_cfg_b);
    struct error err = { 0 };
    int resumed = 0;
    struct bytes s = disk_stream(a);
    fresh_dest_disk(b);
    if (feed(b, a, &s, "the valid disk stream", &resumed, &err) < 0) {
        fail_msg("the valid disk stream failed: %s", err.msg);
    }
    assert_same_disk(a->disks[0], b->disks[0]);
    free(s.data);
    machine_close_disks(a);
    machine_close_disks(b);
    bare_destroy(a);
    bare_destroy(b);
}

/* Half the mutations hit the disk sections: the others have their own runs. */
static void test_disks_mutated(void **state)
{
    struct machine *a = disk_source(), *b = bare_machine(&disk_cfg_b);
    int mutations = fuzz_mutations(DISK_MUTATIONS), refused = 0, resumed = 0;
    fuzz_seed_from_env();
    struct bytes valid = disk_stream(a);
    for (int i = 0; i < mutations; i++) {
        char what[128], where[160];
        struct error err = { 0 };
        struct bytes s = fuzz_mutate(&valid, DISK_SIZE, "mig-disk", what, sizeof(what));
        snprintf(where, sizeof(where), "disk mutation %d (%s)", i, what);
        fresh_dest_disk(b);
        int ret = feed(b, a, &s, where, &resumed, &err);
        if (ret < 0 && !err.msg[0]) {
            fail_msg("%s failed with no message", where);
        }
        refused += ret < 0;
        free(s.data);
    }
    print_message("%d mutated disk streams: %d refused, %d loaded\n", mutations, refused, mutations - refused);
    assert_true(refused > mutations / 3);
    free(valid.data);
    machine_close_disks(a);
    machine_close_disks(b);
    bare_destroy(a);
    bare_destroy(b);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precopy_valid),
        cmocka_unit_test(test_precopy_mutated),
        cmocka_unit_test(test_postcopy_valid),
        cmocka_unit_test(test_postcopy_mutated),
        cmocka_unit_test_setup_teardown(test_disks_valid, disk_setup, disk_teardown),
        cmocka_unit_test_setup_teardown(test_disks_mutated, disk_setup, disk_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
