/* The sending side of a migration, on a thread of its own:
 *   setup     the configuration and RAM layout go first; the destination
 *             refuses a machine unlike its own before anything stops;
 *   pre-copy  pass 0 sends every page, each later pass the pages the dirty
 *             log saw written meanwhile, until what is left fits the
 *             downtime limit at the bandwidth the last pass measured;
 *   complete  the guest stops, the last pages and the device state (the
 *             snapshot's sections) go, and the destination says it runs;
 *   post-copy (instead of complete, when asked) the guest stops, the
 *             destination learns which pages it must forget, gets the
 *             device state and runs; pages it asks for on the return path
 *             go ahead of the background stream of the rest.
 * A failure or cancel before the destination runs leaves the guest running
 * here, as before. */
#include "migration/migration_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "machine/machine_state.h"
#include "util/bswap.h"
#include "util/log.h"

#define REQ_RING 4096
#define POSTCOPY_SNDBUF (64 << 10)

struct migration_source {
    struct machine *m;
    struct guest_memory *mem;
    int fd;
    struct migration_params p;
    struct migration_hooks h;
    pthread_t thread, rp_thread;
    bool rp_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct migration_stats st;          /* under lock */
    bool cancel, postcopy_asked, postcopy; /* under lock */
    bool committed;                     /* the last byte is going out: no cancel */
    bool finished;                      /* the thread is done (under lock) */
    bool thread_started;
    /* the return path (under lock) */
    bool rp_setup_ok, rp_done, rp_closed, rp_resume_end;
    /* post-copy recovery: the sending thread waits for the list of missing
     * pages; only then may the return path write into todo */
    bool resuming;
    bool dest_failed;                   /* the destination gave up (MIG_RP_ERROR): nothing to resume */
    int new_fd;                         /* post-copy paused: the connection to go on with, -1: none */
    uint64_t bytes_before;              /* stream bytes of connections before this one */
    struct error rp_err;
    uint64_t req[REQ_RING];
    unsigned req_head, req_tail;
    /* the sending thread's own */
    struct vmstate_writer w;
    struct guest_bitmap todo;
    struct mig_batch *batch;
    bool guest_stopped;
    int preempt_fd;                     /* post-copy preempt: the second connection, -1: none */
    struct preempt_src *preempt;        /* once in post-copy (atomic: the return path reads it) */
    bool disks_handed_over;             /* shared storage: the images are the destination's now */
    struct mig_disk_tx *disks;          /* overlay-only disks: the live copy */
    uint64_t start_ns, pass_start_ns, pass_bytes;
    /* max-bandwidth's window: from the pass's start or the last change of
     * the limit (a lower one must not make up for a whole pass at once) */
    uint64_t pace_start_ns, pace_bytes;
    uint64_t pages_before;              /* pages sent before this pass */
    struct converge_state conv;
    int throttle;                       /* percent applied now */
    /* migrate-set-parameters while running: the new values (under lock) */
    struct migration_params new_p;
    bool params_changed;
    int result;
    struct error err;
};

/* ---- status and statistics ---- */

static void set_status(struct migration_source *s, enum migration_status st)
{
    pthread_mutex_lock(&s->lock);
    s->st.status = st;
    pthread_mutex_unlock(&s->lock);
    if (s->h.status) {
        s->h.status(s->h.opaque, st);
    }
}

static void account(struct migration_source *s, uint64_t bytes)
{
    pthread_mutex_lock(&s->lock);
    s->st.transferred = s->bytes_before + s->w.pos + s->w.buf_len;     /* every byte of the stream so far */
    s->st.duplicate = s->batch->zero;
    s->st.normal = s->batch->normal;
    s->st.normal_bytes = s->batch->normal * GUEST_PAGE_SIZE;
    uint64_t ms = (mig_now_ns() - s->start_ns) / 1000000;
    s->st.total_time_ms = ms;
    s->st.mbps = ms ? (double)s->st.transferred * 8 / 1e6 / ((double)ms / 1000) : 0;
    pthread_mutex_unlock(&s->lock);
    s->pass_bytes += bytes;
    s->pace_bytes += bytes;
}

static void disk_stats_locked(struct migration_source *s)
{
    struct mig_disk_tx_stats ds = mig_disk_tx_stats(s->disks);
    s->st.disk_transferred = ds.transferred;
    s->st.disk_remaining = ds.remaining;
    s->st.disk_total = ds.total;
}

/* A flag other threads set, read under the lock. */
static bool read_flag(struct migration_source *s, const bool *flag)
{
    pthread_mutex_lock(&s->lock);
    bool c = *flag;
    pthread_mutex_unlock(&s->lock);
    return c;
}

static bool cancelled(struct migration_source *s)
{
    return read_flag(s, &s->cancel);
}

static bool postcopy_asked(struct migration_source *s)
{
    return read_flag(s, &s->postcopy_asked);
}

/* ---- the return path ---- */

/* Pages the destination lacks after a break: sent again (under lock; the
 * sending thread waits for RESUME_END meanwhile). */
static void resume_bits(struct migration_source *s, const struct mig_rp_msg *msg)
{
    unsigned region = (unsigned)(msg->arg >> 56), n = (unsigned)(msg->arg >> 48) & 0xff;
    uint64_t first = msg->arg & 0xffffffffffffull;
    /* Out of turn (the sending thread writes todo unlocked then) or
     * malformed: ignored (a page stays unsent; the destination that
     * lacks it fails rather than reading zeros). */
    if (!s->resuming || region >= (unsigned)s->todo.count || n > MIG_RP_RESUME_WORDS ||
        first + n > (s->todo.pages[region] + 63) / 64) {
        return;
    }
    uint64_t pages = s->todo.pages[region];
    for (unsigned i = 0; i < n; i++) {
        uint64_t word = ld_le64((const uint8_t *)msg->text + i * 8);
        if ((first + i + 1) * 64 > pages) {
            word &= (1ull << (pages % 64)) - 1;     /* no page past the region: counted, never sent */
        }
        s->todo.bits[region][first + i] |= word;
    }
}

/* Post-copy preempt: the page goes out on its own connection at once,
 * outside the lock (only this thread writes there). No lock at all on the
 * way: the sending thread, niced, may be preempted holding s->lock, and a
 * fault would wait for it; the channel counts its pages (the requests
 * served here, added in the statistics). */
static bool preempt_page(struct migration_source *s, const struct mig_rp_msg *msg)
{
    struct preempt_src *p = __atomic_load_n(&s->preempt, __ATOMIC_ACQUIRE);
    return msg->type == MIG_RP_PAGE_REQ && p && preempt_src_request(p, msg->arg);
}

static void *rp_main(void *opaque)
{
    struct migration_source *s = opaque;
    struct mig_rp_msg msg;
    struct error err = { 0 };
    mig_thread_latency();       /* it sends requested pages on the preempt channel itself */
    for (;;) {
        int ret = mig_rp_recv(s->fd, &msg, &err);
        if (ret == 0 && preempt_page(s, &msg)) {
            continue;
        }
        pthread_mutex_lock(&s->lock);
        if (ret < 0) {
            s->rp_closed = true;
            if (!s->rp_err.code) {
                s->rp_err = err;
            }
        } else if (msg.type == MIG_RP_SETUP_OK) {
            s->rp_setup_ok = true;
        } else if (msg.type == MIG_RP_DONE) {
            s->rp_done = true;
        } else if (msg.type == MIG_RP_ERROR) {
            error_set(&s->rp_err, msg.arg && (int64_t)msg.arg < 0 && (int64_t)msg.arg > -4096 ? (int)msg.arg : -EIO,
                      "destination: %s", msg.text);
            s->dest_failed = true;
            /* Nobody reads on there: a send blocked on it fails now. */
            shutdown(s->fd, SHUT_RDWR);
        } else if (msg.type == MIG_RP_RESUME_BITS) {
            resume_bits(s, &msg);
        } else if (msg.type == MIG_RP_RESUME_END) {
            s->rp_resume_end = true;
        } else if (s->req_head - s->req_tail < REQ_RING) {
            /* A full ring drops the request: the background stream still
             * brings the page. */
            s->req[s->req_head++ % REQ_RING] = msg.arg;
            s->st.postcopy_requests++;
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        if (ret < 0) {
            return NULL;
        }
    }
}

/* Waits until *flag or the return path failed or closed. */
static int rp_wait(struct migration_source *s, bool *flag, const char *what, bool cancellable)
{
    pthread_mutex_lock(&s->lock);
    while (!*flag && !s->rp_err.code && !s->rp_closed && !(cancellable && s->cancel)) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    int ret = 0;
    if (!*flag) {
        if (cancellable && s->cancel) {
            ret = error_set(&s->err, -ECANCELED, "migration cancelled");
        } else {
            s->err = s->rp_err;
            ret = s->err.code ? s->err.code : error_set(&s->err, -EPIPE, "no %s from the destination", what);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* ---- sending pages ---- */

/* RAM bytes by phase, as QEMU counts them. */
static void count_ram_bytes(struct migration_source *s, uint64_t n)
{
    pthread_mutex_lock(&s->lock);
    uint64_t *phase = s->postcopy ? &s->st.postcopy_bytes : s->guest_stopped ? &s->st.downtime_bytes
                                                                              : &s->st.precopy_bytes;
    *phase += n;
    pthread_mutex_unlock(&s->lock);
}

static int send_batch(struct migration_source *s)
{
    if (s->batch->count == 0) {
        return 0;
    }
    int64_t n = mig_batch_write(s->batch, &s->w, &s->err);
    mig_batch_reset(s->batch);
    if (n < 0) {
        return (int)n;
    }
    count_ram_bytes(s, (uint64_t)n);
    account(s, (uint64_t)n);
    return 0;
}

static void pace_restart(struct migration_source *s)
{
    s->pace_start_ns = mig_now_ns();
    s->pace_bytes = 0;
}

/* Parameters changed while running take effect here, between batches:
 * the ones QEMU applies to a running migration (downtime-limit, the
 * bandwidths, the throttle's); capabilities stay as they were. */
static void apply_new_params(struct migration_source *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->params_changed) {
        bool auto_converge = s->p.converge.auto_converge;
        s->p.converge = s->new_p.converge;
        s->p.converge.auto_converge = auto_converge;
        s->p.max_bandwidth = s->new_p.max_bandwidth;
        s->p.max_postcopy_bandwidth = s->new_p.max_postcopy_bandwidth;
        s->params_changed = false;
        pace_restart(s);
    }
    pthread_mutex_unlock(&s->lock);
}

/* max-bandwidth: sleeps until the bytes sent are within the limit. */
static void throttle(struct migration_source *s)
{
    apply_new_params(s);
    uint64_t ns = converge_pace_ns(s->pace_bytes, mig_now_ns() - s->pace_start_ns, s->p.max_bandwidth);
    if (ns) {
        struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
        nanosleep(&ts, NULL);
    }
}

/* Pages the destination asked for, each at once and alone (post-copy). */
static int serve_requests(struct migration_source *s)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool any = s->req_tail != s->req_head;
        uint64_t gpa = any ? s->req[s->req_tail++ % REQ_RING] : 0;
        pthread_mutex_unlock(&s->lock);
        if (!any) {
            return 0;
        }
        int region;
        uint64_t page;
        /* Already sent (it is on its way) or not RAM: nothing to do. */
        if (!mig_page_index(s->mem, gpa, &region, &page) || !bitmap_test(s->todo.bits[region], page)) {
            continue;
        }
        s->todo.bits[region][page / 64] &= ~(1ull << (page % 64));
        mig_batch_add(s->batch, s->mem, gpa);
        int ret = send_batch(s);
        if (ret == 0) {
            ret = vmstate_writer_flush(&s->w, &s->err);
        }
        if (ret < 0) {
            return ret;
        }
    }
}

/* Waits up to ns for a page request (or the return path to end, or new
 * parameters). */
static void wait_request(struct migration_source *s, uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);     /* the condition's clock */
    uint64_t at = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(at / 1000000000ull);
    ts.tv_nsec = (long)(at % 1000000000ull);
    pthread_mutex_lock(&s->lock);
    while (s->req_tail == s->req_head && !s->rp_closed && !s->params_changed &&
           pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0) {
    }
    pthread_mutex_unlock(&s->lock);
}

/* max-postcopy-bandwidth: the background stream waits until this pass's
 * bytes are within the limit; a page asked for meanwhile goes at once. */
static int postcopy_pace(struct migration_source *s)
{
    apply_new_params(s);
    while (!read_flag(s, &s->rp_closed)) {
        uint64_t ns = converge_pace_ns(s->pace_bytes, mig_now_ns() - s->pace_start_ns, s->p.max_postcopy_bandwidth);
        if (!ns) {
            return 0;
        }
        wait_request(s, ns);
        int ret = serve_requests(s);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Sends the pages in todo (clearing them). A pre-copy pass stops early when
 * post-copy or a cancel is asked for; the rest stays in todo. */
static int send_pass(struct migration_source *s, bool final)
{
    s->pass_start_ns = mig_now_ns();
    s->pass_bytes = 0;
    pace_restart(s);
    for (int i = 0; i < s->todo.count; i++) {
        uint64_t *bits = s->todo.bits[i];
        for (uint64_t p = 0; p < s->todo.pages[i]; p++) {
            if (!(bits[p / 64] >> (p % 64) & 1)) {
                if ((p % 64) == 0 && bits[p / 64] == 0) {
                    p += 63;
                }
                continue;
            }
            bits[p / 64] &= ~(1ull << (p % 64));
            mig_batch_add(s->batch, s->mem, s->mem->regions[i].gpa + p * GUEST_PAGE_SIZE);
            if (!mig_batch_full(s->batch)) {
                continue;
            }
            int ret = send_batch(s);
            if (ret < 0) {
                return ret;
            }
            /* Post-copy: a requested page waits behind what is queued
             * already, so nothing sits in the writer's buffer. */
            if (s->postcopy && ((ret = vmstate_writer_flush(&s->w, &s->err)) < 0 || (ret = serve_requests(s)) < 0)) {
                return ret;
            }
            if (!final && (cancelled(s) || postcopy_asked(s))) {
                return send_batch(s);
            }
            if (!s->postcopy) {
                throttle(s);
            } else if ((ret = postcopy_pace(s)) < 0) {
                return ret;
            }
        }
    }
    return send_batch(s);
}

/* ---- auto-converge ---- */

static void set_throttle(struct migration_source *s, int pct)
{
    if (pct == s->throttle) {
        return;
    }
    s->throttle = pct;
    if (s->h.throttle) {
        s->h.throttle(s->h.opaque, pct);
    } else {
        machine_throttle_cpus(s->m, pct, NULL);
    }
    pthread_mutex_lock(&s->lock);
    s->st.cpu_throttle_percentage = pct;
    pthread_mutex_unlock(&s->lock);
}

/* After a pass: harvest the dirty log into todo; the convergence rules
 * (migration_converge.c) say whether the rest fits the downtime limit,
 * and how hard to throttle the guest if not. */
static int next_pass(struct migration_source *s, uint64_t pass, bool *fits)
{
    uint64_t ns = mig_now_ns() - s->pass_start_ns;
    int ret = guest_memory_dirty_harvest(s->mem, &s->todo, &s->err);
    if (ret < 0) {
        return ret;
    }
    apply_new_params(s);
    uint64_t dirty = guest_bitmap_count(&s->todo);
    uint64_t disk_dirty = s->disks ? mig_disk_tx_harvest(s->disks) : 0;
    /* The downtime sends the last pages and the last disk ranges. */
    struct converge_pass cp = { .sent_bytes = s->pass_bytes, .ns = ns,
                                .dirty_bytes = dirty * GUEST_PAGE_SIZE + disk_dirty };
    struct converge_decision d = converge_after_pass(&s->conv, &s->p.converge, &cp);
    pthread_mutex_lock(&s->lock);
    if (s->disks) {
        disk_stats_locked(s);
    }
    s->st.dirty_sync_count++;
    s->st.remaining = dirty * GUEST_PAGE_SIZE;
    s->st.expected_downtime_ms = d.expected_downtime_ms;
    s->st.dirty_pages_rate = ns ? dirty * 1000000000ull / ns : 0;
    uint64_t pages = s->batch->zero + s->batch->normal;
    s->st.pages_per_second = ns ? (pages - s->pages_before) * 1000000000ull / ns : 0;
    s->pages_before = pages;
    pthread_mutex_unlock(&s->lock);
    if (s->h.pass) {
        s->h.pass(s->h.opaque, pass);
    }
    set_throttle(s, d.throttle);
    *fits = d.stop;
    return 0;
}

/* ---- the guest ---- */

static void stop_guest(struct migration_source *s)
{
    if (s->h.stop) {
        s->h.stop(s->h.opaque);
    } else {
        machine_pause(s->m);
    }
    s->guest_stopped = true;
}

static void start_guest(struct migration_source *s)
{
    if (s->h.start) {
        s->h.start(s->h.opaque);
    } else {
        machine_resume(s->m);
    }
    s->guest_stopped = false;
}

/* ---- disks ---- */

/* A chunk of an overlay went: counted into the pass's bandwidth, and held
 * to max-bandwidth as pages are. */
static void disk_progress(void *opaque, uint64_t bytes)
{
    struct migration_source *s = opaque;
    account(s, bytes);
    pthread_mutex_lock(&s->lock);
    disk_stats_locked(s);
    pthread_mutex_unlock(&s->lock);
    throttle(s);
}

static int start_disks(struct migration_source *s)
{
    if (!s->p.block_incremental) {
        return 0;
    }
    int ret = mig_disk_tx_new(&s->disks, s->m, disk_progress, s, &s->err);
    if (ret == 0) {
        pthread_mutex_lock(&s->lock);
        disk_stats_locked(s);
        pthread_mutex_unlock(&s->lock);
    }
    return ret;
}

/* A pre-copy pass over the overlays, after the pages' (the guest runs). */
static int send_disks(struct migration_source *s)
{
    return s->disks ? mig_disk_tx_pass(s->disks, &s->w, &s->err) : 0;
}

/* At switchover, with the guest stopped: the destination takes the images
 * over before its guest runs (shared storage), or gets the overlays'
 * clusters the guest wrote since the last pass. */
static int hand_disks_over(struct migration_source *s)
{
    s->disks_handed_over = true;    /* even part way: finish takes back what went */
    int ret = machine_disks_inactivate(s->m, &s->err);
    if (ret == 0 && s->disks) {
        ret = mig_disk_tx_finish(s->disks, &s->w, &s->err);     /* the overlays are final now */
    }
    return ret;
}

/* The destination never ran: the images are this side's again. */
static void take_disks_back(struct migration_source *s)
{
    struct error err = { 0 };
    if (s->disks_handed_over && machine_disks_activate(s->m, &err) < 0) {
        log_error("migration failed and the disks cannot be taken back: %s", err.msg);
    }
    s->disks_handed_over = false;
}

/* ---- post-copy preempt ---- */

static bool preempt_wanted(const struct migration_source *s)
{
    return s->p.postcopy_ram && s->p.postcopy_preempt;
}

static int open_preempt(struct migration_source *s)
{
    if (!preempt_wanted(s)) {
        return 0;
    }
    if (!s->h.open_channel) {
        return error_set(&s->err, -EINVAL, "postcopy-preempt needs a second connection and the program has none");
    }
    s->preempt_fd = s->h.open_channel(s->h.opaque, &s->err);
    return s->preempt_fd < 0 ? s->preempt_fd : preempt_src_hello(s->preempt_fd, &s->err);
}

/* The destination runs: requests from now on go to the channel's thread. */
static void start_preempt(struct migration_source *s)
{
    struct preempt_src *p = NULL;
    struct error err = { 0 };
    if (s->preempt_fd < 0) {
        return;
    }
    if (preempt_src_start(&p, s->preempt_fd, s->mem, &err) < 0) {
        log_warn("post-copy: %s; requested pages go on the main stream", err.msg);
        return;
    }
    __atomic_store_n(&s->preempt, p, __ATOMIC_RELEASE);
}

/* After the return path ended: nobody asks the channel for pages. */
static void stop_preempt(struct migration_source *s)
{
    struct preempt_src *p = s->preempt;
    if (!p) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->st.postcopy_preempt_pages += preempt_src_pages(p);     /* a recovery starts a new channel */
    s->preempt = NULL;
    pthread_mutex_unlock(&s->lock);
    preempt_src_stop(p);
}

/* ---- phases ---- */

static int setup(struct migration_source *s)
{
    int ret;
    if ((ret = vmstate_writer_begin(&s->w, mig_socket_io(&s->fd), &s->err)) < 0 ||
        (ret = machine_state_save_config(s->m, &s->w, &s->err)) < 0 ||
        (ret = mig_setup_write(&s->w, s->mem, (s->p.postcopy_ram ? MIG_SETUP_POSTCOPY : 0) |
                               (s->p.share_memfd ? MIG_SETUP_MEMFD : 0) |
                               (s->p.block_incremental ? MIG_SETUP_DISKS : 0) |
                               (preempt_wanted(s) ? MIG_SETUP_PREEMPT : 0), &s->err)) < 0 ||
        (s->p.block_incremental && (ret = mig_disk_setup_write(&s->w, s->m, &s->err)) < 0) ||
        (ret = vmstate_writer_flush(&s->w, &s->err)) < 0) {
        return ret;
    }
    if (pthread_create(&s->rp_thread, NULL, rp_main, s) != 0) {
        return error_set(&s->err, -EAGAIN, "cannot start the return-path thread");
    }
    s->rp_started = true;
    if ((ret = rp_wait(s, &s->rp_setup_ok, "answer to the setup", true)) < 0 ||
        (ret = guest_bitmap_init(&s->todo, s->mem, &s->err)) < 0 || (ret = open_preempt(s)) < 0) {
        return ret;
    }
    if (s->p.share_memfd) {
        /* Same host: both sides map the same pages; none is copied (the
         * overlays go whole at switchover). */
        ret = mig_send_memfds(s->fd, s->mem, &s->err);
        return ret < 0 ? ret : start_disks(s);
    }
    if ((ret = guest_memory_dirty_start(s->mem, &s->err)) < 0 || (ret = start_disks(s)) < 0) {
        return ret;
    }
    for (int i = 0; i < s->todo.count; i++) {      /* pass 0: every page */
        for (uint64_t p = 0; p < s->todo.pages[i]; p++) {
            s->todo.bits[i][p / 64] |= 1ull << (p % 64);
        }
    }
    pthread_mutex_lock(&s->lock);
    s->st.setup_time_ms = (mig_now_ns() - s->start_ns) / 1000000;
    s->st.remaining = s->st.total;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void set_downtime(struct migration_source *s, uint64_t since_ns)
{
    pthread_mutex_lock(&s->lock);
    s->st.downtime_ms = (mig_now_ns() - since_ns) / 1000000;
    pthread_mutex_unlock(&s->lock);
}

static int complete(struct migration_source *s)
{
    uint64_t t0 = mig_now_ns();
    stop_guest(s);
    int ret;
    if ((!s->p.share_memfd && (ret = guest_memory_dirty_harvest(s->mem, &s->todo, &s->err)) < 0) ||
        (ret = send_pass(s, true)) < 0 || (ret = machine_memory_intact(s->m, &s->err)) < 0 ||
        (ret = hand_disks_over(s)) < 0 ||
        (ret = machine_state_save(s->m, &s->w, &s->err)) < 0) {
        return ret;
    }
    /* The whole stream is out: a cancel no longer stops the destination,
     * so it waits for its answer too. */
    pthread_mutex_lock(&s->lock);
    s->committed = true;
    pthread_mutex_unlock(&s->lock);
    int64_t n = vmstate_writer_finish(&s->w, &s->err);
    if (n < 0) {
        return (int)n;
    }
    account(s, 0);
    if ((ret = rp_wait(s, &s->rp_done, "confirmation", false)) < 0) {
        return ret;
    }
    set_downtime(s, t0);
    return 0;
}

/* The destination forgets the pages in todo (sent before, written since,
 * or not sent yet): it asks for them when they are touched. */
static int send_discards(struct migration_source *s)
{
    uint64_t n = guest_bitmap_count(&s->todo);
    /* The guest is stopped on both sides meanwhile: the entries go in
     * chunks, not one write each (131072 of them for 512 MiB took 0.3 to
     * 1.2 s under load). */
    enum { CHUNK = 8192 };
    uint8_t *b = malloc(CHUNK * 8);
    size_t len = 0;
    int ret = b ? vmstate_section_begin(&s->w, MIG_SECTION_POSTCOPY, 1, 4 + n * 8, &s->err)
                : error_set(&s->err, -ENOMEM, "out of memory");
    if (ret == 0) {
        st_le32(b, (uint32_t)n);
        ret = vmstate_section_write(&s->w, b, 4, &s->err);
    }
    for (int i = 0; ret == 0 && i < s->todo.count; i++) {
        for (uint64_t p = 0; ret == 0 && p < s->todo.pages[i]; p++) {
            if (s->todo.bits[i][p / 64] >> (p % 64) & 1) {
                st_le64(b + len, s->mem->regions[i].gpa + p * GUEST_PAGE_SIZE);
                len += 8;
            }
            if (len == CHUNK * 8) {
                ret = vmstate_section_write(&s->w, b, len, &s->err);
                len = 0;
            }
        }
    }
    if (ret == 0 && len) {
        ret = vmstate_section_write(&s->w, b, len, &s->err);
    }
    free(b);
    return ret < 0 ? ret : vmstate_section_end(&s->w, &s->err);
}

/* ---- post-copy recovery ---- */

static void end_return_path(struct migration_source *s)
{
    shutdown(s->fd, SHUT_RDWR);
    if (s->rp_started) {
        pthread_join(s->rp_thread, NULL);
        s->rp_started = false;
    }
}

/* The destination said it failed (it will not recover): its reason is
 * the migration's. */
static int dest_failure(struct migration_source *s)
{
    pthread_mutex_lock(&s->lock);
    int ret = 0;
    if (s->dest_failed) {
        s->err = s->rp_err;
        ret = s->err.code;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The connection broke in post-copy: the destination runs the guest, so
 * neither side may give up. Waits for migration_source_resume (or a
 * cancel), then learns from the destination what it still lacks. A
 * destination that failed instead fails the migration here too. */
static int postcopy_pause(struct migration_source *s)
{
    int failed = dest_failure(s);
    if (failed < 0) {
        return failed;
    }
    log_warn("post-copy paused: %s", s->err.msg);
    end_return_path(s);
    s->bytes_before += s->w.pos;
    vmstate_writer_free(&s->w);
    set_status(s, MIGRATION_POSTCOPY_PAUSED);
    pthread_mutex_lock(&s->lock);
    while (s->new_fd < 0 && !s->cancel) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    int fd = s->new_fd;
    s->new_fd = -1;
    s->rp_done = s->rp_closed = s->rp_resume_end = false;
    s->resuming = true;
    error_clear(&s->rp_err);
    s->req_tail = s->req_head;      /* requests of before: the destination asks again */
    pthread_mutex_unlock(&s->lock);
    if (fd < 0) {
        return error_set(&s->err, -ECANCELED, "post-copy paused and cancelled: the guest is lost");
    }
    close(s->fd);
    s->fd = fd;
    error_clear(&s->err);
    int ret = vmstate_writer_begin(&s->w, mig_socket_io(&s->fd), &s->err);
    if (ret < 0) {
        return ret;
    }
    if (pthread_create(&s->rp_thread, NULL, rp_main, s) != 0) {
        return error_set(&s->err, -EAGAIN, "cannot start the return-path thread");
    }
    s->rp_started = true;
    ret = rp_wait(s, &s->rp_resume_end, "list of missing pages", false);
    pthread_mutex_lock(&s->lock);
    s->resuming = false;
    pthread_mutex_unlock(&s->lock);
    if (ret < 0) {
        return postcopy_pause(s);
    }
    set_status(s, MIGRATION_POSTCOPY_ACTIVE);
    return 0;
}

static int postcopy(struct migration_source *s)
{
    uint64_t t0 = mig_now_ns();
    stop_guest(s);
    int ret;
    if ((ret = guest_memory_dirty_harvest(s->mem, &s->todo, &s->err)) < 0 || (ret = send_discards(s)) < 0 ||
        (ret = hand_disks_over(s)) < 0 ||
        (ret = machine_state_save(s->m, &s->w, &s->err)) < 0 || (ret = vmstate_writer_flush(&s->w, &s->err)) < 0) {
        return ret;
    }
    /* Little in flight: a page the destination asks for goes out behind
     * at most this much of the background stream. */
    int sndbuf = POSTCOPY_SNDBUF;
    setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    /* From here the destination runs the guest: there is no going back. */
    pthread_mutex_lock(&s->lock);
    s->postcopy = true;
    pthread_mutex_unlock(&s->lock);
    start_preempt(s);
    mig_thread_background();
    set_downtime(s, t0);
    set_status(s, MIGRATION_POSTCOPY_ACTIVE);
    for (;;) {
        ret = send_pass(s, true);
        if (ret == 0) {
            int64_t n = vmstate_writer_finish(&s->w, &s->err);
            ret = n < 0 ? (int)n : 0;
        }
        if (ret == 0) {
            account(s, 0);
            ret = rp_wait(s, &s->rp_done, "confirmation", false);
        }
        if (ret == 0 || (ret = postcopy_pause(s)) < 0) {
            return ret;
        }
    }
}

static int precopy(struct migration_source *s)
{
    if (s->p.share_memfd) {
        return complete(s);     /* no page to send: only the device state */
    }
    for (uint64_t pass = 0;; pass++) {
        int ret = send_pass(s, false);
        bool fits = false;
        if (ret == 0 && !cancelled(s) && !postcopy_asked(s)) {
            ret = send_disks(s);
        }
        if (ret < 0) {
            return ret;
        }
        if (cancelled(s)) {
            return error_set(&s->err, -ECANCELED, "migration cancelled");
        }
        if (postcopy_asked(s)) {
            return postcopy(s);
        }
        if ((ret = next_pass(s, pass + 1, &fits)) < 0) {
            return ret;
        }
        if (fits) {
            return complete(s);
        }
    }
}

static void finish(struct migration_source *s, int ret)
{
    guest_memory_dirty_stop(s->mem);
    mig_disk_tx_free(s->disks);     /* its trackers go before the images may close */
    s->disks = NULL;
    set_throttle(s, 0);
    if (ret < 0 && s->guest_stopped && !s->postcopy) {
        take_disks_back(s);
        start_guest(s);     /* the destination never ran: go on here */
    }
    /* Last of the machine's use: ending the migrating state serves the
     * ejects deferred meanwhile, which close disks on the main loop. */
    machine_set_migrating(s->m, false);
    bool was_cancel = ret == -ECANCELED;
    pthread_mutex_lock(&s->lock);
    s->result = ret;
    s->st.total_time_ms = (mig_now_ns() - s->start_ns) / 1000000;
    if (ret < 0) {
        memcpy(s->st.error, s->err.msg, sizeof(s->st.error));
    } else {
        s->st.remaining = 0;
    }
    pthread_mutex_unlock(&s->lock);
    set_status(s, ret == 0 ? MIGRATION_COMPLETED : was_cancel ? MIGRATION_CANCELLED : MIGRATION_FAILED);
    /* Ends the return path (and tells the destination on errors). */
    end_return_path(s);
    stop_preempt(s);
    pthread_mutex_lock(&s->lock);
    s->finished = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *source_main(void *opaque)
{
    struct migration_source *s = opaque;
    int ret = setup(s);
    if (ret == 0) {
        set_status(s, MIGRATION_ACTIVE);
        ret = precopy(s);
    }
    if (ret < 0 && cancelled(s)) {
        ret = error_set(&s->err, -ECANCELED, "migration cancelled");
    } else if (ret < 0 && dest_failure(s) < 0) {
        ret = s->err.code;      /* the destination's reason, not the broken pipe it left */
    }
    if (ret < 0) {
        log_warn("migration failed: %s", s->err.msg);
    }
    vmstate_writer_free(&s->w);
    finish(s, ret);
    return NULL;
}

/* ---- the interface ---- */

int migration_source_check(struct machine *m, const struct migration_params *p, struct error *err)
{
    int ret = machine_memory_intact(m, err);     /* lost pages would go out as zeros */
    if (ret == 0 && p->block_incremental) {
        ret = mig_disk_check(m, err);
    }
    return ret;
}

int migration_source_start(struct migration_source **out, struct machine *m, int fd,
                           const struct migration_params *p, const struct migration_hooks *h, struct error *err)
{
    int ret = migration_params_check(p, err);
    if (ret == 0) {
        ret = migration_source_check(m, p, err);
    }
    if (ret < 0) {
        close(fd);
        return ret;
    }
    struct migration_source *s = calloc(1, sizeof(*s));
    struct mig_batch *b = malloc(sizeof(*b));
    if (!s || !b) {
        free(s);
        free(b);
        close(fd);
        return error_set(err, -ENOMEM, "out of memory");
    }
    /* The migration takes over guest memory's dirty tracking: the next
     * diff snapshot to files has no parent. */
    machine_forget_snapshot_chain(m);
    s->m = m;
    s->mem = &m->vm.mem;
    s->fd = fd;
    s->p = *p;
    if (h) {
        s->h = *h;
    }
    s->batch = b;
    s->new_fd = -1;
    s->preempt_fd = -1;
    b->zero = b->normal = 0;
    mig_batch_reset(b);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->start_ns = mig_now_ns();
    s->st.total = s->mem->ram_size;
    s->st.status = MIGRATION_SETUP;
    if (s->h.status) {
        s->h.status(s->h.opaque, MIGRATION_SETUP);
    }
    machine_set_migrating(m, true);
    if (pthread_create(&s->thread, NULL, source_main, s) != 0) {
        machine_set_migrating(m, false);
        s->finished = true;
        migration_source_free(s);
        return error_set(err, -EAGAIN, "cannot start the migration thread");
    }
    s->thread_started = true;
    *out = s;
    return 0;
}

void migration_source_stats(struct migration_source *s, struct migration_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    struct preempt_src *p = __atomic_load_n(&s->preempt, __ATOMIC_ACQUIRE);
    if (p) {
        out->postcopy_preempt_pages += preempt_src_pages(p);    /* freed only under lock */
    }
    out->postcopy_bytes += out->postcopy_preempt_pages * GUEST_PAGE_SIZE;
    out->postcopy_requests += out->postcopy_preempt_pages;
    if (!s->finished) {
        out->total_time_ms = (mig_now_ns() - s->start_ns) / 1000000;
    }
    pthread_mutex_unlock(&s->lock);
}

int migration_source_cancel(struct migration_source *s)
{
    pthread_mutex_lock(&s->lock);
    bool paused = s->st.status == MIGRATION_POSTCOPY_PAUSED;
    int ret = (s->postcopy && !paused) || s->committed ? -EBUSY : 0;
    bool act = ret == 0 && !s->finished && !s->cancel;
    if (act) {
        s->cancel = true;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (act && !paused) {
        set_status(s, MIGRATION_CANCELLING);
        shutdown(s->fd, SHUT_RDWR);     /* a thread blocked in send wakes */
    }
    return ret;
}

int migration_source_set_params(struct migration_source *s, const struct migration_params *p, struct error *err)
{
    int ret = migration_params_check(p, err);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&s->lock);
    s->new_p = *p;
    s->params_changed = true;
    pthread_cond_broadcast(&s->cond);   /* post-copy's pacing waits on it */
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int migration_source_start_postcopy(struct migration_source *s, struct error *err)
{
    if (!s->p.postcopy_ram) {
        return error_set(err, -EINVAL, "Enable postcopy with migrate_set_capability before the start of migration");
    }
    pthread_mutex_lock(&s->lock);
    s->postcopy_asked = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int migration_source_resume(struct migration_source *s, int fd, struct error *err)
{
    pthread_mutex_lock(&s->lock);
    bool paused = s->st.status == MIGRATION_POSTCOPY_PAUSED && s->new_fd < 0;
    if (paused) {
        s->new_fd = fd;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (!paused) {
        close(fd);
        return error_set(err, -EINVAL, "migrate resume: the migration is not in postcopy-paused");
    }
    return 0;
}

int migration_source_pause(struct migration_source *s, struct error *err)
{
    pthread_mutex_lock(&s->lock);
    bool active = s->st.status == MIGRATION_POSTCOPY_ACTIVE;
    if (active) {
        shutdown(s->fd, SHUT_RDWR);     /* s->fd changes only while paused */
    }
    pthread_mutex_unlock(&s->lock);
    return active ? 0 : error_set(err, -EINVAL, "migrate-pause is currently only supported during postcopy-active state");
}

bool migration_source_done(struct migration_source *s)
{
    pthread_mutex_lock(&s->lock);
    bool d = s->finished;
    pthread_mutex_unlock(&s->lock);
    return d;
}

int migration_source_wait(struct migration_source *s, struct error *err)
{
    pthread_mutex_lock(&s->lock);
    while (!s->finished) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    int ret = s->result;
    if (ret < 0 && err) {
        *err = s->err;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void migration_source_free(struct migration_source *s)
{
    if (!s) {
        return;
    }
    if (s->thread_started) {
        migration_source_wait(s, NULL);
        pthread_join(s->thread, NULL);
    }
    guest_bitmap_free(&s->todo);
    close(s->fd);
    if (s->preempt_fd >= 0) {
        close(s->preempt_fd);
    }
    free(s->batch);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
