/* The migration stream: a VM-state stream (state/vmstate_stream.h, the
 * framing snapshots use, with its checksums) over the socket, plus fixed
 * messages from the destination back to the source (the return path).
 *
 * Forward stream, in order:
 *   "config"        the machine's configuration, checked by the destination
 *   "mig-setup"     protocol version, guest RAM layout, post-copy wanted;
 *                   the source waits for MIG_RP_SETUP_OK before going on
 *   "mig-ram" ...   batches of pages (pre-copy passes)
 *   pre-copy end:   "mig-ram" ... (the last pass), "config" + one section
 *                   per device (exactly what a snapshot stores), end
 *   overlay-only disks (migration_disk.c): "mig-disk-setup" right after
 *                   "mig-setup"; "mig-disk" ... and "mig-disk-end" after the
 *                   last pass (or "mig-postcopy"), before the devices
 *   post-copy:      "mig-postcopy" (pages the destination must discard),
 *                   "config" + devices, "mig-ram" ... (requested pages first,
 *                   then the rest), end
 *
 * "mig-ram" payload: u32 count, then count entries of u64 (gpa | flags)
 * and, unless MIG_PAGE_ZERO, the page's 4096 bytes. */
#ifndef MIGRATION_MIGRATION_WIRE_H
#define MIGRATION_MIGRATION_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/vmstate_stream.h"
#include "vmm/guest_memory.h"

#define MIG_PROTOCOL_VERSION 1
#define MIG_SECTION_SETUP "mig-setup"
#define MIG_SECTION_RAM "mig-ram"
#define MIG_SECTION_POSTCOPY "mig-postcopy"
#define MIG_SECTION_DISK_SETUP "mig-disk-setup"     /* migration_disk.c */
#define MIG_SECTION_DISK "mig-disk"
#define MIG_SECTION_DISK_END "mig-disk-end"
#define MIG_PAGE_ZERO 1ull
#define MIG_PAGE_FLAGS 0xfffull
#define MIG_BATCH_PAGES 32

/* The socket as a sequential vmstate_io (no SIGPIPE). */
struct vmstate_io mig_socket_io(int *fd);

/* Return path: fixed 128-byte messages. */
enum mig_rp_type {
    MIG_RP_SETUP_OK = 1,        /* the destination accepts the machine */
    MIG_RP_PAGE_REQ = 2,        /* arg: gpa of a page a vCPU waits for */
    MIG_RP_DONE = 3,            /* everything loaded; the guest runs here */
    MIG_RP_ERROR = 4,           /* arg: -errno, text: why */
    /* Post-copy recovery, on the new connection: the pages the destination
     * still lacks, as bitmap words (arg: region << 56 | words << 48 | first
     * word; text: the words), then RESUME_END. */
    MIG_RP_RESUME_BITS = 5,
    MIG_RP_RESUME_END = 6,
};
#define MIG_RP_RESUME_WORDS 14
#define MIG_RP_SIZE 128
/* text goes whole, as bytes (initialize it all); ERROR's is a string. */
struct mig_rp_msg {
    uint32_t type;
    uint64_t arg;
    char text[MIG_RP_SIZE - 16];
};
int mig_rp_send(int fd, const struct mig_rp_msg *msg, struct error *err);
/* 0, or <0 on EOF, errors and malformed messages. */
int mig_rp_recv(int fd, struct mig_rp_msg *msg, struct error *err);

/* ---- setup ---- */
#define MIG_SETUP_POSTCOPY 1u
#define MIG_SETUP_MEMFD 2u      /* guest RAM's memfds follow SETUP_OK (SCM_RIGHTS) */
#define MIG_SETUP_DISKS 4u      /* "mig-disk-setup" follows: the overlay-only disk mode */
#define MIG_SETUP_PREEMPT 8u    /* post-copy's requested pages come on a second connection */
struct mig_setup {
    int count;
    uint64_t gpa[GUEST_MEM_MAX_REGIONS], size[GUEST_MEM_MAX_REGIONS];
    bool postcopy, memfd, disks, preempt;
};
int mig_setup_write(struct vmstate_writer *w, const struct guest_memory *mem, unsigned flags, struct error *err);

/* Same-host migration: the regions' memfds as SCM_RIGHTS on one byte. */
int mig_send_memfds(int sock, const struct guest_memory *mem, struct error *err);
/* Receives them and maps each over this side's region (shared). */
int mig_recv_memfds(int sock, struct guest_memory *mem, struct error *err);
/* Reads the section (its header already read) and checks it against mem. */
int mig_setup_read(struct vmstate_reader *r, const struct guest_memory *mem, struct mig_setup *out,
                   struct error *err);

/* ---- page batches ---- */
struct mig_batch {
    int count;
    uint64_t entry[MIG_BATCH_PAGES];            /* gpa | flags */
    uint8_t data[MIG_BATCH_PAGES][GUEST_PAGE_SIZE];
    uint64_t zero, normal;
};
void mig_batch_reset(struct mig_batch *b);
/* Copies the page at gpa now (later writes show in the dirty log). */
void mig_batch_add(struct mig_batch *b, const struct guest_memory *mem, uint64_t gpa);
static inline bool mig_batch_full(const struct mig_batch *b)
{
    return b->count == MIG_BATCH_PAGES;
}
/* Writes the batch as one "mig-ram" section; returns bytes or <0. */
int64_t mig_batch_write(struct mig_batch *b, struct vmstate_writer *w, struct error *err);

/* Reads one "mig-ram" section (its header already read) and hands each
 * page to place; every address is checked against mem first. data is NULL
 * for a zero page. */
typedef int (*mig_place_fn)(void *opaque, uint64_t gpa, const uint8_t *data, struct error *err);
int mig_ram_read(struct vmstate_reader *r, const struct guest_memory *mem, mig_place_fn place, void *opaque,
                 struct error *err);

/* ---- small helpers ---- */
uint64_t mig_now_ns(void);
/* Post-copy: the calling thread moves the bulk stream; it yields the CPU
 * to the threads a faulting vCPU waits for (nice +10, this thread only). */
void mig_thread_background(void);
/* Post-copy: the calling thread is on a fault's way (the fault thread,
 * the source's return-path reader, the preempt receiver): nice -10 where
 * the process may raise priorities (CAP_SYS_NICE or RLIMIT_NICE), so that
 * on a busy host it runs as soon as its message arrives. Nothing without. */
void mig_thread_latency(void);
/* Region and page index of gpa; false when gpa is not a RAM page. */
bool mig_page_index(const struct guest_memory *mem, uint64_t gpa, int *region, uint64_t *page);

static inline bool bitmap_test(const uint64_t *bits, uint64_t i)
{
    return (__atomic_load_n(&bits[i / 64], __ATOMIC_ACQUIRE) >> (i % 64)) & 1;
}
static inline void bitmap_set_atomic(uint64_t *bits, uint64_t i)
{
    __atomic_fetch_or(&bits[i / 64], 1ull << (i % 64), __ATOMIC_ACQ_REL);
}
static inline void bitmap_clear_atomic(uint64_t *bits, uint64_t i)
{
    __atomic_fetch_and(&bits[i / 64], ~(1ull << (i % 64)), __ATOMIC_ACQ_REL);
}

#endif
