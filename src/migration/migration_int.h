/* Inside the migration layer: the machine's parts it works on, and the
 * destination's post-copy machinery (migration_postcopy.c). */
#ifndef MIGRATION_MIGRATION_INT_H
#define MIGRATION_MIGRATION_INT_H

#include <pthread.h>

#include "machine/machine_int.h"
#include "migration/migration.h"
#include "migration/migration_wire.h"

/* Pages of the destination's guest RAM, one bit each per region. */
struct page_bits {
    uint64_t *bits[GUEST_MEM_MAX_REGIONS];
};

/* The destination's side of post-copy: guest RAM registered with a
 * userfaultfd, and a fault thread that asks the source (on the return
 * path, rp_fd under rp_lock) for each page a thread touches that has not
 * arrived yet. received: pages whose content is here (present, or known
 * to be zero). */
struct postcopy_dest;
/* A userfaultfd with the UFFD_FEATURE_* features asked for, taking kernel
 * faults too (from /dev/userfaultfd where the syscall is restricted). */
int mig_uffd_open(uint64_t features, struct error *err);
/* vcpus: the machine's ncpus vCPUs, whose threads' faults count in their
 * own blocktime (QEMU's postcopy-vcpu-blocktime). */
int postcopy_dest_start(struct postcopy_dest **out, struct guest_memory *mem, const struct vcpu *vcpus, int ncpus,
                        struct page_bits *received, int rp_fd, pthread_mutex_t *rp_lock, struct error *err);
/* Places a page that arrived (data NULL: zero) and wakes its waiters. */
int postcopy_dest_place(struct postcopy_dest *pc, uint64_t gpa, const uint8_t *data, struct error *err);
/* Every page is here: unregisters guest RAM and ends the fault thread. */
void postcopy_dest_stop(struct postcopy_dest *pc);
uint64_t postcopy_dest_requests(struct postcopy_dest *pc);
/* Recovery: the return path is a new connection (caller holds rp_lock);
 * the faults still waiting ask again on it. */
void postcopy_dest_set_rp(struct postcopy_dest *pc, int rp_fd);
void postcopy_dest_rerequest(struct postcopy_dest *pc);
/* Thread tid faulted on gpa and waits for the source (blocktime): the
 * fault thread's faults, and post-copy's self-fetch (migration_selffetch.c). */
void postcopy_dest_wait_begin(struct postcopy_dest *pc, uint64_t gpa, int tid);
/* Faults that waited for the source, from the fault to the page placed
 * (blocktime_ms: every thread's waits added); per vCPU, and the time all
 * vCPUs waited at once (QEMU's postcopy-blocktime). */
struct postcopy_latency {
    uint64_t faults, blocktime_ms, p50_us, p99_us;
    int vcpus;
    uint64_t vcpu_blocktime_ms[VM_MAX_CPUS], all_vcpus_blocktime_ms, vcpu_faults;
};
void postcopy_dest_latency(struct postcopy_dest *pc, struct postcopy_latency *out);
/* The overlay-only disk mode (migration_disk.c). The source: every disk a
 * qcow2 overlay on an open base (checked when the migration starts); its
 * description, then its overlay's clusters and checksums. */
int mig_disk_count(const struct machine *m);
int mig_disk_check(struct machine *m, struct error *err);
int mig_disk_setup_write(struct vmstate_writer *w, struct machine *m, struct error *err);
/* Each "mig-disk" chunk: MIG_DISK_CHUNK_HEADER bytes, then at most
 * MIG_DISK_CHUNK of data; a crc32 over every chunk sent, per disk. */
#define MIG_DISK_CHUNK (1u << 20)
#define MIG_DISK_CHUNK_HEADER 17
struct mig_disk_sum {
    uint64_t bytes;
    uint32_t crc;
};
void mig_disk_sum_init(struct mig_disk_sum *s);
void mig_disk_sum_add(struct mig_disk_sum *s, const uint8_t *head, const uint8_t *data, uint32_t len);
/* The source's live copy (migration_disk_src.c): tracking the guest's
 * writes starts at new; each pass sends what is marked (all the overlay's
 * clusters first), harvest marks what the guest wrote since, finish (guest
 * stopped) sends the rest and the checksums. progress gets the stream
 * bytes of each chunk (bandwidth accounting and max-bandwidth). */
struct mig_disk_tx;
typedef void (*mig_disk_progress_fn)(void *opaque, uint64_t bytes);
struct mig_disk_tx_stats {
    uint64_t transferred;   /* bytes of disk ranges sent (zero ranges count) */
    uint64_t remaining;     /* bytes marked for the next pass */
    uint64_t total;         /* the disks' virtual sizes, as QEMU counts */
};
int mig_disk_tx_new(struct mig_disk_tx **out, struct machine *m, mig_disk_progress_fn progress, void *opaque,
                    struct error *err);
int mig_disk_tx_pass(struct mig_disk_tx *tx, struct vmstate_writer *w, struct error *err);
uint64_t mig_disk_tx_harvest(struct mig_disk_tx *tx);
uint64_t mig_disk_tx_dirty(const struct mig_disk_tx *tx);
struct mig_disk_tx_stats mig_disk_tx_stats(const struct mig_disk_tx *tx);
int mig_disk_tx_finish(struct mig_disk_tx *tx, struct vmstate_writer *w, struct error *err);
void mig_disk_tx_free(struct mig_disk_tx *tx);
/* The destination: refuses a different base or a non-empty overlay; then
 * writes each "mig-disk" section (disks active) and checks the sums. */
struct mig_disk_rx;
int mig_disk_setup_read(struct vmstate_reader *r, struct machine *m, struct error *err);
int mig_disk_rx_new(struct mig_disk_rx **out, struct error *err);
void mig_disk_rx_free(struct mig_disk_rx *rx);
int mig_disk_receive(struct vmstate_reader *r, struct machine *m, struct mig_disk_rx *rx, struct error *err);
int mig_disk_end_read(struct vmstate_reader *r, struct machine *m, struct mig_disk_rx *rx, struct error *err);
/* Whether the checksums came (and matched): the devices may load. */
bool mig_disk_rx_complete(const struct mig_disk_rx *rx);

/* Post-copy's preempt channel (migration_preempt.c): requested pages on a
 * connection of their own. The source says hello on the new connection,
 * then its return-path thread sends each page asked for (false: the
 * channel is gone, send it on the main stream). The destination's thread checks the hello
 * and places each page through place. Both leave the fd to the caller. */
struct preempt_src;
int preempt_src_hello(int fd, struct error *err);
int preempt_src_start(struct preempt_src **out, int fd, const struct guest_memory *mem, struct error *err);
bool preempt_src_request(struct preempt_src *p, uint64_t gpa);
uint64_t preempt_src_pages(struct preempt_src *p);
void preempt_src_stop(struct preempt_src *p);
struct preempt_dest;
int preempt_dest_start(struct preempt_dest **out, int fd, const struct guest_memory *mem, mig_place_fn place,
                       void *opaque, struct error *err);
void preempt_dest_stop(struct preempt_dest *p);

/* Drops pages pages of guest RAM from gpa on, all in one region (they
 * fault from now on). */
int postcopy_discard(struct guest_memory *mem, uint64_t gpa, uint64_t pages, struct error *err);

#endif
