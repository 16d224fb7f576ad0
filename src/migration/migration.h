/* Live migration of a machine over a connected socket: pre-copy (dirty-log
 * passes while the guest runs, then a short pause for the rest and the
 * device state) and post-copy (the destination runs at once and fetches
 * missing pages through userfaultfd on a return path).
 *
 * The migration layer sits on the machine layer: it uses guest memory's
 * dirty tracking, the machine's state stream (the same device sections a
 * snapshot stores) and, through hooks, the program's way of stopping and
 * starting the guest. Each side runs on a thread of its own; the program
 * polls its statistics (query-migrate) and gets status changes through a
 * hook (the MIGRATION event). */
#ifndef MIGRATION_MIGRATION_H
#define MIGRATION_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/migration_converge.h"
#include "util/error.h"

struct machine;

/* QEMU 7.2's MigrationStatus values cowvisor uses. */
enum migration_status {
    MIGRATION_NONE,
    MIGRATION_SETUP,
    MIGRATION_ACTIVE,
    MIGRATION_POSTCOPY_ACTIVE,
    MIGRATION_POSTCOPY_PAUSED,      /* the connection broke: waiting for a new one */
    MIGRATION_COMPLETED,
    MIGRATION_FAILED,
    MIGRATION_CANCELLING,
    MIGRATION_CANCELLED,
};
const char *migration_status_name(enum migration_status st);

struct migration_params {
    /* downtime-limit and auto-converge (QEMU's defaults: 300 ms; off,
     * 20% then +10% up to 99% when a pass dirties over 50% of what it sent) */
    struct converge_params converge;
    uint64_t max_bandwidth;         /* bytes per second, 0: unlimited */
    /* QEMU's max-postcopy-bandwidth: the background stream of post-copy,
     * bytes per second (0: unlimited); requested pages are not held back */
    uint64_t max_postcopy_bandwidth;
    bool postcopy_ram;              /* the destination must accept post-copy */
    /* QEMU's postcopy-preempt: requested pages on a second connection
     * (hooks->open_channel), never behind the bulk stream */
    bool postcopy_preempt;
    bool share_memfd;               /* same host (UNIX socket): pass guest RAM's memfds, copy no page */
    /* QMP migrate blk+inc: every disk is a qcow2 overlay on a base both
     * hosts have; the overlay's own clusters go while the guest runs, the
     * ones it writes meanwhile again, never the base's (migration_disk.c).
     * Off: disks are on shared storage. */
    bool block_incremental;
};
void migration_params_default(struct migration_params *p);
/* QEMU's range checks (migrate-set-parameters), its words included. */
int migration_params_check(const struct migration_params *p, struct error *err);

#define MIGRATION_MAX_VCPUS 64      /* VM_MAX_CPUS */

struct migration_stats {
    enum migration_status status;
    uint64_t total_time_ms;         /* so far, or in all */
    uint64_t setup_time_ms;
    uint64_t downtime_ms;           /* guest paused on neither side running */
    uint64_t expected_downtime_ms;
    uint64_t transferred;           /* bytes on the wire */
    uint64_t remaining;             /* bytes of dirty pages still to send */
    uint64_t total;                 /* guest RAM */
    uint64_t duplicate;             /* zero pages (sent as a flag only) */
    uint64_t normal;                /* pages sent with data */
    uint64_t normal_bytes;
    uint64_t dirty_pages_rate;      /* pages per second, last pass */
    uint64_t dirty_sync_count;      /* dirty-log harvests */
    /* RAM bytes on the wire by phase (QEMU's precopy-bytes, downtime-bytes,
     * postcopy-bytes: the guest running here, stopped on both sides, running
     * there; post-copy's include the preempt channel's pages) */
    uint64_t precopy_bytes, downtime_bytes, postcopy_bytes;
    uint64_t pages_per_second;      /* pages sent, last pass */
    /* overlay-only disks (QEMU's "disk"): bytes of disk ranges sent, marked
     * for the next pass, and the disks' virtual sizes */
    uint64_t disk_transferred, disk_remaining, disk_total;
    uint64_t postcopy_requests;     /* pages the destination asked for */
    uint64_t postcopy_preempt_pages;    /* source: of those, sent on the preempt channel */
    int cpu_throttle_percentage;    /* auto-converge's current throttle */
    /* destination, post-copy: time threads waited for pages from the
     * source (QEMU's postcopy-blocktime), and the fault-to-page latency */
    uint64_t postcopy_blocktime_ms;
    uint64_t postcopy_faults, fault_p50_us, fault_p99_us;   /* bucket bounds (powers of two) */
    /* destination, once post-copy began: QEMU's postcopy-blocktime (the
     * time every vCPU waited at once) and postcopy-vcpu-blocktime (each
     * vCPU's waits), in ms */
    bool postcopy_ran;
    int postcopy_vcpus;
    uint64_t postcopy_vcpu_faults;      /* of the faults, the vCPUs' */
    uint64_t postcopy_all_vcpus_blocktime_ms;
    uint64_t postcopy_vcpu_blocktime_ms[MIGRATION_MAX_VCPUS];
    double mbps;
    char error[1024];               /* failed: why */
};

/* How the migration reaches the program: called on the migration's thread.
 * stop/start pause and run the guest (the machine's vCPUs); status reports
 * every change (the MIGRATION event), pass each dirty-log pass
 * (MIGRATION_PASS). Any may be NULL. */
struct migration_hooks {
    void (*stop)(void *opaque);
    void (*start)(void *opaque);
    void (*status)(void *opaque, enum migration_status st);
    void (*pass)(void *opaque, uint64_t pass);
    /* Auto-converge: the vCPUs get (100 - percent)% of their time; NULL:
     * machine_throttle_cpus. */
    void (*throttle)(void *opaque, int percent);
    /* postcopy_preempt: a second connection to the destination (the
     * program connects to the same URI again), or <0 with the reason. */
    int (*open_channel)(void *opaque, struct error *err);
    /* The destination: runs fn(arg) where the machine's device set may
     * change (the program's main loop, which otherwise may be using the
     * devices) and waits for it; NULL: fn runs on the migration's thread
     * (nothing else touches the machine). */
    int (*on_main_loop)(void *opaque, int (*fn)(void *arg, struct error *err), void *arg, struct error *err);
    void *opaque;
};

/* ---- the source ---- */

struct migration_source;

/* Starts migrating m over the connected socket fd (taken over: closed by
 * migration_source_free) on a thread of its own. The guest runs meanwhile;
 * after success it stays stopped. */
int migration_source_start(struct migration_source **out, struct machine *m, int fd,
                           const struct migration_params *p, const struct migration_hooks *h, struct error *err);
/* Whether m can migrate with p (block_incremental: every disk an overlay). */
int migration_source_check(struct machine *m, const struct migration_params *p, struct error *err);
void migration_source_stats(struct migration_source *s, struct migration_stats *out);
/* Asks the thread to stop; a pre-copy that has not finished leaves the
 * guest running. -EBUSY in post-copy (the destination already runs). */
int migration_source_cancel(struct migration_source *s);
/* migrate-set-parameters during a migration: downtime-limit, the throttle
 * settings, max-bandwidth and max-postcopy-bandwidth apply from the next
 * batch on, as in QEMU (the capabilities stay). -EINVAL: out of range. */
int migration_source_set_params(struct migration_source *s, const struct migration_params *p, struct error *err);
/* Switches to post-copy at the end of the current batch (-EINVAL without
 * postcopy_ram). */
int migration_source_start_postcopy(struct migration_source *s, struct error *err);
/* Post-copy paused (the connection broke): goes on over fd, a new
 * connection to the destination (QMP migrate resume=true). -EINVAL when
 * not paused. */
int migration_source_resume(struct migration_source *s, int fd, struct error *err);
/* QMP migrate-pause: breaks the post-copy connection on purpose (it then
 * pauses as if it broke). -EINVAL outside post-copy. */
int migration_source_pause(struct migration_source *s, struct error *err);
/* Waits for the thread: 0 when completed, <0 (with the reason) otherwise. */
int migration_source_wait(struct migration_source *s, struct error *err);
bool migration_source_done(struct migration_source *s);
void migration_source_free(struct migration_source *s);

/* ---- the destination ---- */

struct migration_dest;

/* Receives a machine over fd (taken over) on a thread of its own into m,
 * which must be built from the same configuration and not running. Calls
 * hooks->start when the guest may run: after the whole stream (pre-copy)
 * or as soon as the devices are loaded (post-copy; pages then arrive on
 * demand through userfaultfd and in the background). */
int migration_dest_start(struct migration_dest **out, struct machine *m, int fd, const struct migration_hooks *h,
                         struct error *err);
void migration_dest_stats(struct migration_dest *d, struct migration_stats *out);
/* A further connection for this migration (post-copy preempt): taken over.
 * -EBUSY when it has one already. */
int migration_dest_add_channel(struct migration_dest *d, int fd, struct error *err);
/* Post-copy's self-fetch view (migration_selffetch.c): guest RAM mapped a
 * second time, where a missing page fails at once (SIGBUS in a user-space
 * thread, KVM_RUN -EFAULT in a vCPU whose slots use it) instead of waiting
 * for the fault thread. gpa's address there, NULL without a view (not in
 * post-copy, or the kernel refused). */
uint8_t *migration_dest_view(struct migration_dest *d, uint64_t gpa);
/* The calling thread missed gpa on the view: asks the source itself and
 * sleeps until the page is here (0; the access can be retried), or until
 * post-copy ends without it (<0: the view reads zeros then). Goes through
 * guest memory's fetch hook (as a vCPU does), whose release waits for the
 * threads inside. */
int migration_dest_fetch(struct migration_dest *d, uint64_t gpa);
/* Post-copy paused: goes on over fd (QMP migrate-recover's connection). */
int migration_dest_resume(struct migration_dest *d, int fd, struct error *err);
int migration_dest_wait(struct migration_dest *d, struct error *err);
bool migration_dest_done(struct migration_dest *d);
/* After a post-copy that broke off, guest RAM stays registered until
 * this: the guest must be stopped before. */
void migration_dest_free(struct migration_dest *d);

/* ---- sockets (migration_socket.c) ---- */

/* tcp:HOST:PORT or unix:PATH: a connected socket, or -errno. */
int migration_connect(const char *uri, struct error *err);
/* A listening socket for --incoming / migrate-incoming. */
int migration_listen(const char *uri, struct error *err);

#endif
