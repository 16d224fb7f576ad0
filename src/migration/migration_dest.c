/* The receiving side of a migration, on a thread of its own. It checks the
 * source's configuration and RAM layout against this machine (and says no
 * on the return path before the source stops), writes pages into guest RAM
 * while the guest is stopped, then loads the device state with the same
 * code a snapshot restore uses and lets the guest run. In post-copy the
 * guest runs as soon as the devices are loaded; pages then arrive through
 * migration_postcopy.c. A truncated or corrupt stream fails with the
 * reason and the guest never runs. */
#include "migration/migration_int.h"
#include "migration/migration_selffetch.h"

#include <assert.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine/machine_state.h"
#include "util/bswap.h"
#include "util/log.h"
#include "util/zero.h"

static_assert(MIGRATION_MAX_VCPUS == VM_MAX_CPUS, "query-migrate's vCPU blocktimes: one per vCPU");

struct migration_dest {
    struct machine *m;
    struct guest_memory *mem;
    int fd;
    struct migration_hooks h;
    pthread_t thread;
    bool joined;
    pthread_cond_t cond;            /* post-copy paused: a new connection or the end */
    int new_fd;                     /* under lock */
    bool abort;                     /* under lock: migration_dest_free gives up waiting */
    pthread_mutex_t lock;           /* stats, result, finished */
    pthread_mutex_t rp_lock;        /* return-path writes: this thread and the fault thread */
    struct migration_stats st;
    bool finished;
    int result;
    struct error err;
    struct vmstate_reader r;
    struct page_bits has_data;      /* pages that may hold non-zero bytes here */
    struct page_bits received;
    struct postcopy_dest *pc;
    struct selffetch *sf;           /* post-copy's self-fetch view (set once, under lock), NULL: none */
    uint64_t self_requests;         /* atomic: pages asked for by the threads that missed them */
    bool disks_taken;               /* the images are ours now (activated) */
    struct mig_disk_rx *disk_rx;    /* overlay-only disks: what arrived */
    int preempt_fd;                 /* post-copy preempt: the second connection (under lock), -1: none */
    struct preempt_dest *preempt;   /* its thread, once post-copy began (under lock) */
    uint64_t start_ns;
    /* post-copy: device state loaded by a thread of its own, since loading
     * may touch guest pages that only this thread can bring in */
    pthread_t loader;
    bool loader_started;
    struct machine_state_image img;
    int load_result;
    struct error load_err;
};

static void set_status(struct migration_dest *d, enum migration_status st)
{
    pthread_mutex_lock(&d->lock);
    d->st.status = st;
    pthread_mutex_unlock(&d->lock);
    if (d->h.status) {
        d->h.status(d->h.opaque, st);
    }
}

static int rp_send(struct migration_dest *d, enum mig_rp_type type, uint64_t arg, const char *text)
{
    struct mig_rp_msg msg = { .type = type, .arg = arg };
    struct error err = { 0 };
    snprintf(msg.text, sizeof(msg.text), "%s", text ? text : "");
    pthread_mutex_lock(&d->rp_lock);
    int ret = mig_rp_send(d->fd, &msg, &err);
    pthread_mutex_unlock(&d->rp_lock);
    return ret;
}

static void start_guest(struct migration_dest *d)
{
    if (d->h.start) {
        d->h.start(d->h.opaque);
    }
}

/* ---- page bitmaps ---- */

static int bits_init(struct page_bits *b, const struct guest_memory *mem, struct error *err)
{
    memset(b, 0, sizeof(*b));
    for (int i = 0; i < mem->count; i++) {
        uint64_t words = (mem->regions[i].size / GUEST_PAGE_SIZE + 63) / 64;
        if (!(b->bits[i] = calloc(words ? words : 1, sizeof(uint64_t)))) {
            return error_set(err, -ENOMEM, "out of memory for a page bitmap");
        }
    }
    return 0;
}

static void bits_free(struct page_bits *b)
{
    for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
        free(b->bits[i]);
        b->bits[i] = NULL;
    }
}

/* ---- placing pages ---- */

/* Atomics, no lock: in post-copy the preempt receiver counts too, and
 * must not wait for the niced receiving thread preempted holding d->lock
 * (a fault waits for that page). The receiving thread alone moves
 * transferred (its reader's position). */
static void count_page(struct migration_dest *d, bool zero)
{
    if (zero) {
        __atomic_add_fetch(&d->st.duplicate, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_add_fetch(&d->st.normal, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&d->st.normal_bytes, GUEST_PAGE_SIZE, __ATOMIC_RELAXED);
    }
}

static void count_transferred(struct migration_dest *d)
{
    __atomic_store_n(&d->st.transferred, d->r.pos, __ATOMIC_RELAXED);
}

/* The counters count_page moves, read as atomics too. */
static void read_counters(struct migration_dest *d, struct migration_stats *out)
{
    out->duplicate = __atomic_load_n(&d->st.duplicate, __ATOMIC_RELAXED);
    out->normal = __atomic_load_n(&d->st.normal, __ATOMIC_RELAXED);
    out->normal_bytes = __atomic_load_n(&d->st.normal_bytes, __ATOMIC_RELAXED);
    out->transferred = __atomic_load_n(&d->st.transferred, __ATOMIC_RELAXED);
}

/* Pre-copy: the guest is stopped, so pages are plain writes. A zero page
 * is written only where this RAM may hold data (the boot image loaded at
 * start, a page sent earlier): untouched RAM stays unallocated. */
static int place_precopy(void *opaque, uint64_t gpa, const uint8_t *data, struct error *err)
{
    struct migration_dest *d = opaque;
    int region;
    uint64_t page;
    mig_page_index(d->mem, gpa, &region, &page);   /* checked by the reader */
    uint8_t *p = d->mem->regions[region].hva + page * GUEST_PAGE_SIZE;
    if (data) {
        memcpy(p, data, GUEST_PAGE_SIZE);
        bitmap_set_atomic(d->has_data.bits[region], page);
    } else if (bitmap_test(d->has_data.bits[region], page)) {
        if (!mem_is_zero(p, GUEST_PAGE_SIZE)) {
            memset(p, 0, GUEST_PAGE_SIZE);
        }
        bitmap_clear_atomic(d->has_data.bits[region], page);
    }
    bitmap_set_atomic(d->received.bits[region], page);
    count_page(d, !data);
    return 0;
}

static int place_postcopy(void *opaque, uint64_t gpa, const uint8_t *data, struct error *err)
{
    struct migration_dest *d = opaque;
    count_page(d, !data);
    int ret = postcopy_dest_place(d->pc, gpa, data, err);
    if (ret == 0 && d->sf) {
        selffetch_placed(d->sf);
    }
    return ret;
}

/* ---- self-fetch (migration_selffetch.c) ---- */

uint8_t *migration_dest_view(struct migration_dest *d, uint64_t gpa)
{
    struct selffetch *sf = __atomic_load_n(&d->sf, __ATOMIC_ACQUIRE);
    int region;
    uint64_t page;
    if (!sf || !mig_page_index(d->mem, gpa, &region, &page)) {
        return NULL;
    }
    return selffetch_view(sf, region) + page * GUEST_PAGE_SIZE;
}

/* The hook's body: the thread that missed gpa asks for it and waits. */
static int fetch_page(struct migration_dest *d, uint64_t gpa)
{
    struct selffetch *sf = __atomic_load_n(&d->sf, __ATOMIC_ACQUIRE);
    int region;
    uint64_t page;
    gpa &= ~(GUEST_PAGE_SIZE - 1);
    if (!sf || !mig_page_index(d->mem, gpa, &region, &page)) {
        return -EINVAL;
    }
    for (;;) {
        struct error err = { 0 };
        if (bitmap_test(d->received.bits[region], page)) {
            /* Here (the view's next access finds it) or known zero. */
            int ret = selffetch_fill_zero(sf, region, page, &err);
            if (ret < 0) {
                log_warn("post-copy: %s", err.msg);
            }
            return ret;
        }
        struct postcopy_dest *pc = __atomic_load_n(&d->pc, __ATOMIC_ACQUIRE);
        if (pc) {
            postcopy_dest_wait_begin(pc, gpa, gettid());      /* counted in postcopy-blocktime as the fault thread's */
        }
        struct mig_rp_msg msg = { .type = MIG_RP_PAGE_REQ, .arg = gpa };
        pthread_mutex_lock(&d->rp_lock);
        int ret = mig_rp_send(d->fd, &msg, &err);    /* paused: the recovery's kick asks again */
        pthread_mutex_unlock(&d->rp_lock);
        if (ret == 0) {
            __atomic_add_fetch(&d->self_requests, 1, __ATOMIC_RELAXED);
        }
        ret = selffetch_wait(sf, d->received.bits[region], page);
        if (ret != -EAGAIN) {
            return ret;
        }
    }
}

/* A vCPU whose KVM_RUN failed on a page missing from the view, or a
 * thread that met a SIGBUS there. */
static int fetch_hook(void *opaque, uint64_t gpa)
{
    return fetch_page(opaque, gpa);
}

/* Through guest memory's hook, which counts its callers: the view's
 * release waits for them, so none is left inside when d goes. */
int migration_dest_fetch(struct migration_dest *d, uint64_t gpa)
{
    return guest_memory_fetch(d->mem, gpa);
}

/* The view, when the kernel allows it: without one the fault thread
 * serves every miss, as before. On a KVM VM the vCPUs' slots move onto
 * it (guest_memory_view.c). */
static void open_view(struct migration_dest *d)
{
    struct selffetch *sf = NULL;
    struct error err = { 0 };
    if (selffetch_open(&sf, d->mem, &err) < 0) {
        log_info("post-copy without the self-fetch view: %s", err.msg);
        return;
    }
    __atomic_store_n(&d->sf, sf, __ATOMIC_RELEASE);
    guest_memory_set_fetch(d->mem, fetch_hook, d);
    if (d->mem->vm_fd >= 0 && selffetch_give_to_kvm(sf, d->mem, &err) < 0) {
        log_info("post-copy: the vCPUs fault through the fault thread: %s", err.msg);
    }
}

/* Post-copy is over (or given up): the view is ordinary memory again.
 * The waiters return first, then the hook goes, waiting for whoever
 * entered it (a vCPU that read it just before): only then may the view
 * and d be freed. */
static void release_view(struct migration_dest *d)
{
    if (d->sf) {
        selffetch_release(d->sf);
        guest_memory_set_fetch(d->mem, NULL, NULL);
    }
}

/* ---- disks ---- */

/* The source handed its disks over (shared storage), or sends its
 * overlays' clusters: they are this side's from now on. */
static int take_disks(struct migration_dest *d)
{
    if (d->disks_taken) {
        return 0;
    }
    d->disks_taken = true;      /* even part way: a failure hands back what was taken */
    return machine_disks_activate(d->m, &d->err);
}

static int read_disk_setup(struct migration_dest *d)
{
    int ret = vmstate_next_section(&d->r, &d->err);
    if (ret != 0) {
        return ret < 0 ? ret : error_set(&d->err, -EPROTO, "migration stream ends before its disks");
    }
    if ((ret = mig_disk_setup_read(&d->r, d->m, &d->err)) < 0 || (ret = mig_disk_rx_new(&d->disk_rx, &d->err)) < 0) {
        return ret;
    }
    return 0;
}

static int receive_disk(struct migration_dest *d, bool end)
{
    if (!d->disk_rx) {
        return error_set(&d->err, -EPROTO, "migration stream: disk data without a disk setup");
    }
    int ret = take_disks(d);
    if (ret < 0) {
        return ret;
    }
    return end ? mig_disk_end_read(&d->r, d->m, d->disk_rx, &d->err)
               : mig_disk_receive(&d->r, d->m, d->disk_rx, &d->err);
}

/* ---- post-copy preempt ---- */

/* Once post-copy began and the channel is here, whichever comes last. */
static void start_preempt_locked(struct migration_dest *d)
{
    struct error err = { 0 };
    if (d->pc && d->preempt_fd >= 0 && !d->preempt &&
        preempt_dest_start(&d->preempt, d->preempt_fd, d->mem, place_postcopy, d, &err) < 0) {
        log_warn("post-copy: %s; requested pages come on the main stream", err.msg);
    }
}

static void stop_preempt(struct migration_dest *d)
{
    pthread_mutex_lock(&d->lock);
    struct preempt_dest *p = d->preempt;
    d->preempt = NULL;
    pthread_mutex_unlock(&d->lock);
    preempt_dest_stop(p);
}

/* ---- phases ---- */

static int setup(struct migration_dest *d)
{
    struct mig_setup su;
    int ret;
    if ((ret = vmstate_reader_begin(&d->r, mig_socket_io(&d->fd), UINT64_MAX, &d->err)) < 0 ||
        (ret = machine_state_check_config(d->m, &d->r, &d->err)) < 0) {
        return ret;
    }
    if ((ret = vmstate_next_section(&d->r, &d->err)) != 0) {
        return ret < 0 ? ret : error_set(&d->err, -EPROTO, "migration stream ends before its setup");
    }
    if ((ret = mig_setup_read(&d->r, d->mem, &su, &d->err)) < 0 ||
        (su.disks && (ret = read_disk_setup(d)) < 0) ||
        (ret = bits_init(&d->has_data, d->mem, &d->err)) < 0 ||
        (ret = bits_init(&d->received, d->mem, &d->err)) < 0) {
        return ret;
    }
    if (!su.memfd) {
        for (int i = 0; i < d->mem->count; i++) {
            guest_memory_find_data(d->mem, i, d->has_data.bits[i]);
        }
    }
    if ((ret = rp_send(d, MIG_RP_SETUP_OK, 0, NULL)) < 0) {
        return ret;
    }
    /* Same host: guest RAM becomes the source's own pages. */
    return su.memfd ? mig_recv_memfds(d->fd, d->mem, &d->err) : 0;
}

/* The n pages of "mig-postcopy"'s list: each run of consecutive pages in
 * one region goes in one call (the whole of RAM, when post-copy starts
 * at once, in a few), while the guest waits to start. */
static int discard_pages(struct migration_dest *d, uint32_t n)
{
    enum { CHUNK = 8192 };      /* entries read at once */
    uint8_t *b = malloc(CHUNK * 8);
    uint64_t run_gpa = 0, run_pages = 0;
    int run_region = -1, ret = b ? 0 : error_set(&d->err, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i <= n && ret == 0; i++) {
        int region = -1;
        uint64_t gpa = 0, page;
        if (i < n) {
            uint32_t k = i % CHUNK;
            if (k == 0 && (ret = vmstate_section_read(&d->r, b, (n - i < CHUNK ? n - i : CHUNK) * 8, &d->err)) < 0) {
                break;
            }
            gpa = ld_le64(b + k * 8);
            if (!mig_page_index(d->mem, gpa, &region, &page)) {
                ret = error_set(&d->err, -EPROTO, "migration stream: discard of 0x%llx, not guest RAM",
                                (unsigned long long)gpa);
                break;
            }
            bitmap_clear_atomic(d->received.bits[region], page);
            if (region == run_region && gpa == run_gpa + run_pages * GUEST_PAGE_SIZE) {
                run_pages++;
                continue;
            }
        }
        if (run_pages) {
            ret = postcopy_discard(d->mem, run_gpa, run_pages, &d->err);
        }
        run_gpa = gpa;
        run_pages = 1;
        run_region = region;
    }
    free(b);
    return ret;
}

/* "mig-postcopy": forget the pages the source will send again, then let
 * every later touch of a missing page fault to the fault thread. */
static int begin_postcopy(struct migration_dest *d)
{
    uint8_t b[8];
    int ret;
    if (d->r.section_version != 1 || d->r.section_left < 4 || (ret = vmstate_section_read(&d->r, b, 4, &d->err)) < 0) {
        return error_set(&d->err, -EPROTO, "migration stream: malformed '%s'", MIG_SECTION_POSTCOPY);
    }
    uint32_t n = ld_le32(b);
    if (d->r.section_left != (uint64_t)n * 8) {
        return error_set(&d->err, -EPROTO, "migration stream: '%s' announces %u pages in %llu bytes",
                         MIG_SECTION_POSTCOPY, n, (unsigned long long)d->r.section_left);
    }
    if ((ret = discard_pages(d, n)) < 0 || (ret = vmstate_section_finish(&d->r, &d->err)) < 0) {
        return ret;
    }
    struct postcopy_dest *pc;
    int rcvbuf = 64 << 10;     /* see POSTCOPY_SNDBUF: little in flight */
    setsockopt(d->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if ((ret = postcopy_dest_start(&pc, d->mem, d->m->vm.vcpus, d->m->cfg->cpus, &d->received, d->fd, &d->rp_lock,
                                   &d->err)) < 0) {
        return ret;
    }
    open_view(d);
    pthread_mutex_lock(&d->lock);
    __atomic_store_n(&d->pc, pc, __ATOMIC_RELEASE);     /* the self-fetch path reads it unlocked */
    start_preempt_locked(d);
    pthread_mutex_unlock(&d->lock);
    mig_thread_background();       /* this thread places the bulk stream from now on */
    return 0;
}

static int eject_saved(void *opaque, struct error *err)
{
    struct migration_dest *d = opaque;
    return machine_state_eject_saved(d->m, &d->img, err);
}

/* The disks the source's guest had ejected go on the main loop, which may
 * be using them (QMP's query-block) until then; then the devices load. In
 * post-copy this runs on the loader: the receiving thread goes on placing
 * pages meanwhile, should the main loop touch a missing one. */
static int apply_state(struct migration_dest *d, struct error *err)
{
    int ret = 0;
    if (machine_state_changes_devices(&d->img)) {
        ret = d->h.on_main_loop ? d->h.on_main_loop(d->h.opaque, eject_saved, d, err) : eject_saved(d, err);
    }
    return ret < 0 ? ret : machine_state_apply(d->m, &d->img, err);
}

static void *load_main(void *opaque)
{
    struct migration_dest *d = opaque;
    d->load_result = apply_state(d, &d->load_err);
    if (d->load_result == 0) {
        start_guest(d);
    }
    return NULL;
}

/* The device sections (the same a snapshot has), from "config" on. */
static int load_devices(struct migration_dest *d)
{
    vmstate_section_unread(&d->r, 0);
    int ret = machine_state_read(d->m, &d->r, &d->img, &d->err);
    if (ret < 0) {
        return ret;
    }
    /* The source handed its disks over before it sent its devices; an
     * overlay copy ends with its checksums. */
    if (d->disk_rx && !mig_disk_rx_complete(d->disk_rx)) {
        return error_set(&d->err, -EPROTO, "migration stream: the device state came before the disks' '%s'",
                         MIG_SECTION_DISK_END);
    }
    if ((ret = take_disks(d)) < 0) {
        return ret;
    }
    if (!d->pc) {
        return apply_state(d, &d->err);
    }
    if (pthread_create(&d->loader, NULL, load_main, d) != 0) {
        return error_set(&d->err, -EAGAIN, "cannot start the device loader");
    }
    d->loader_started = true;
    set_status(d, MIGRATION_POSTCOPY_ACTIVE);
    return 0;
}

static int join_loader(struct migration_dest *d)
{
    if (!d->loader_started) {
        return 0;
    }
    pthread_join(d->loader, NULL);
    d->loader_started = false;
    if (d->load_result < 0) {
        d->err = d->load_err;
    }
    return d->load_result;
}

/* ---- post-copy recovery ---- */

/* The pages this side lacks, to the source on the new connection. */
static int send_missing(struct migration_dest *d)
{
    for (int i = 0; i < d->mem->count; i++) {
        uint64_t pages = d->mem->regions[i].size / GUEST_PAGE_SIZE, words = (pages + 63) / 64;
        for (uint64_t w = 0; w < words; w += MIG_RP_RESUME_WORDS) {
            unsigned n = (unsigned)(words - w < MIG_RP_RESUME_WORDS ? words - w : MIG_RP_RESUME_WORDS);
            struct mig_rp_msg msg = { .type = MIG_RP_RESUME_BITS };
            bool any = false;
            for (unsigned k = 0; k < n; k++) {
                uint64_t missing = ~__atomic_load_n(&d->received.bits[i][w + k], __ATOMIC_ACQUIRE);
                if ((w + k + 1) * 64 > pages) {
                    missing &= (1ull << (pages % 64)) - 1;      /* no pages past the region */
                }
                any |= missing != 0;
                st_le64((uint8_t *)msg.text + k * 8, missing);
            }
            msg.arg = (uint64_t)i << 56 | (uint64_t)n << 48 | w;
            struct error err = { 0 };
            pthread_mutex_lock(&d->rp_lock);
            int ret = any ? mig_rp_send(d->fd, &msg, &err) : 0;
            pthread_mutex_unlock(&d->rp_lock);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return rp_send(d, MIG_RP_RESUME_END, 0, NULL);
}

/* The connection broke while the guest runs here on pages still coming:
 * waits for migration_dest_resume, tells the source what is missing and
 * reads on from the new connection. <0 when given up. */
static int dest_pause(struct migration_dest *d)
{
    log_warn("post-copy paused: %s", d->err.msg);
    shutdown(d->fd, SHUT_RDWR);
    set_status(d, MIGRATION_POSTCOPY_PAUSED);
    pthread_mutex_lock(&d->lock);
    while (d->new_fd < 0 && !d->abort) {
        pthread_cond_wait(&d->cond, &d->lock);
    }
    int fd = d->new_fd;
    d->new_fd = -1;
    pthread_mutex_unlock(&d->lock);
    if (fd < 0) {
        return d->err.code ? d->err.code : error_set(&d->err, -EPIPE, "post-copy paused, then given up");
    }
    pthread_mutex_lock(&d->rp_lock);
    int old = d->fd;
    d->fd = fd;
    postcopy_dest_set_rp(d->pc, fd);
    pthread_mutex_unlock(&d->rp_lock);
    close(old);
    vmstate_reader_free(&d->r);
    error_clear(&d->err);
    int ret;
    /* The source reads the list before it writes anything. */
    if ((ret = send_missing(d)) < 0 ||
        (ret = vmstate_reader_begin(&d->r, mig_socket_io(&d->fd), UINT64_MAX, &d->err)) < 0) {
        error_set(&d->err, ret, "post-copy recovery failed");
        return dest_pause(d);
    }
    postcopy_dest_rerequest(d->pc);
    if (d->sf) {
        selffetch_kick(d->sf);
    }
    set_status(d, MIGRATION_POSTCOPY_ACTIVE);
    return 0;
}

/* The end of a post-copy stream: every page must be here by now. One a
 * source lost track of would read as zeros once guest RAM is unregistered;
 * failing keeps RAM registered, so whoever touches it waits instead. */
static int check_all_received(struct migration_dest *d)
{
    uint64_t missing = 0, first = 0;
    for (int i = 0; i < d->mem->count; i++) {
        uint64_t pages = d->mem->regions[i].size / GUEST_PAGE_SIZE;
        for (uint64_t p = 0; p < pages; p++) {
            if (!bitmap_test(d->received.bits[i], p) && missing++ == 0) {
                first = d->mem->regions[i].gpa + p * GUEST_PAGE_SIZE;
            }
        }
    }
    if (!missing) {
        return 0;
    }
    return error_set(&d->err, -EPROTO, "post-copy: the stream ended with pages missing (%llu, the first at 0x%llx)",
                     (unsigned long long)missing, (unsigned long long)first);
}

/* One section: 0 and on, 1 at the end, <0 on errors. */
static int receive_section(struct migration_dest *d, bool *devices_)
{
    bool devices = *devices_;
    {
        int ret = vmstate_next_section(&d->r, &d->err);
        if (ret < 0) {
            return ret;
        }
        if (ret == 1) {
            return devices ? 1 : error_set(&d->err, -EPROTO, "migration stream ends before the device state");
        }
        if (strcmp(d->r.section, MIG_SECTION_RAM) == 0) {
            ret = mig_ram_read(&d->r, d->mem, d->pc ? place_postcopy : place_precopy, d, &d->err);
            count_transferred(d);
        } else if ((strcmp(d->r.section, MIG_SECTION_DISK) == 0 || strcmp(d->r.section, MIG_SECTION_DISK_END) == 0) &&
                   !devices) {
            ret = receive_disk(d, strcmp(d->r.section, MIG_SECTION_DISK_END) == 0);
        } else if (strcmp(d->r.section, MIG_SECTION_POSTCOPY) == 0 && !d->pc && !devices) {
            ret = begin_postcopy(d);
        } else if (strcmp(d->r.section, "config") == 0 && !devices) {
            /* Only a complete device state counts: a stream cut inside it
             * fails (the guest never ran here), it does not pause. */
            ret = load_devices(d);
            *devices_ = devices = ret == 0;
        } else {
            ret = error_set(&d->err, -EPROTO, "migration stream: unexpected section '%s'", d->r.section);
        }
        if (ret < 0) {
            return ret;
        }
        if (devices && !d->pc) {
            /* Pre-copy: nothing may follow the devices but the end. */
            ret = vmstate_next_section(&d->r, &d->err);
            return ret == 1 ? 1 : ret < 0 ? ret
                 : error_set(&d->err, -EPROTO, "migration stream: '%s' after the device state", d->r.section);
        }
        return 0;
    }
}

/* Sections until the end: pages, the switch to post-copy, the devices.
 * Once the guest runs here on post-copy, a broken stream pauses. */
static int receive(struct migration_dest *d)
{
    bool devices = false;
    for (;;) {
        int ret = receive_section(d, &devices);
        if (ret == 1) {
            return d->pc ? check_all_received(d) : 0;
        }
        if (ret < 0 && d->pc && devices && (ret = dest_pause(d)) == 0) {
            continue;
        }
        if (ret < 0) {
            return ret;
        }
    }
}

static void latency_stats(struct postcopy_dest *pc, struct migration_stats *st)
{
    struct postcopy_latency l;
    postcopy_dest_latency(pc, &l);
    st->postcopy_blocktime_ms = l.blocktime_ms;
    st->postcopy_faults = l.faults;
    st->fault_p50_us = l.p50_us;
    st->fault_p99_us = l.p99_us;
    st->postcopy_ran = true;
    st->postcopy_vcpus = l.vcpus;
    st->postcopy_all_vcpus_blocktime_ms = l.all_vcpus_blocktime_ms;
    st->postcopy_vcpu_faults = l.vcpu_faults;
    memcpy(st->postcopy_vcpu_blocktime_ms, l.vcpu_blocktime_ms, sizeof(st->postcopy_vcpu_blocktime_ms));
}

static void *dest_main(void *opaque)
{
    struct migration_dest *d = opaque;
    int ret = setup(d);
    if (ret == 0) {
        set_status(d, MIGRATION_ACTIVE);
        ret = receive(d);
    }
    if (ret == 0) {
        ret = join_loader(d);
    }
    if (ret == 0) {
        /* It places pages (requested twice, all here by now) through d->pc:
         * it stops before d->pc goes, or it may find it NULL. */
        stop_preempt(d);
    }
    pthread_mutex_lock(&d->lock);
    struct postcopy_dest *pc = d->pc;
    if (pc) {
        d->st.postcopy_requests = postcopy_dest_requests(pc) + __atomic_load_n(&d->self_requests, __ATOMIC_RELAXED);
        latency_stats(pc, &d->st);
    }
    /* A post-copy that broke leaves pages the guest may need missing for
     * good: guest RAM stays registered, so whoever touches one waits
     * instead of reading zeros, until migration_dest_free (the guest
     * stopped by then). */
    if (ret == 0 || !pc) {
        __atomic_store_n(&d->pc, NULL, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&d->lock);
    if (ret == 0) {
        release_view(d);        /* first: a self-fetch inside may still use pc */
        postcopy_dest_stop(pc);
    } else if (pc) {
        error_prefix(&d->err, "post-copy broke off (the guest here lacks pages and cannot go on)");
    }
    if (!d->loader_started) {
        machine_state_image_free(&d->img);     /* else the loader still has it: freed at free */
    }
    if (ret < 0 && d->disks_taken && !pc) {
        /* The guest never ran here: the source takes its disks back. */
        machine_disks_inactivate(d->m, NULL);
    }
    if (ret < 0) {
        log_error("incoming migration failed: %s", d->err.msg);
        rp_send(d, MIG_RP_ERROR, (uint64_t)(int64_t)ret, d->err.msg);
    } else if (rp_send(d, MIG_RP_DONE, 0, NULL) == 0 && d->st.status != MIGRATION_POSTCOPY_ACTIVE) {
        start_guest(d);     /* pre-copy: the source knows we run */
    }
    pthread_mutex_lock(&d->lock);
    d->result = ret;
    d->st.total_time_ms = (mig_now_ns() - d->start_ns) / 1000000;
    if (ret < 0) {
        memcpy(d->st.error, d->err.msg, sizeof(d->st.error));
    }
    pthread_mutex_unlock(&d->lock);
    set_status(d, ret == 0 ? MIGRATION_COMPLETED : MIGRATION_FAILED);
    vmstate_reader_free(&d->r);
    shutdown(d->fd, SHUT_RDWR);
    pthread_mutex_lock(&d->lock);
    d->finished = true;
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* ---- the interface ---- */

int migration_dest_start(struct migration_dest **out, struct machine *m, int fd, const struct migration_hooks *h,
                         struct error *err)
{
    struct migration_dest *d = calloc(1, sizeof(*d));
    if (!d) {
        close(fd);
        return error_set(err, -ENOMEM, "out of memory");
    }
    d->m = m;
    d->mem = &m->vm.mem;
    d->fd = fd;
    if (h) {
        d->h = *h;
    }
    d->start_ns = mig_now_ns();
    d->st.total = d->mem->ram_size;
    d->st.status = MIGRATION_SETUP;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    d->new_fd = -1;
    d->preempt_fd = -1;
    pthread_mutex_init(&d->rp_lock, NULL);
    if (pthread_create(&d->thread, NULL, dest_main, d) != 0) {
        close(fd);
        free(d);
        return error_set(err, -EAGAIN, "cannot start the incoming migration thread");
    }
    *out = d;
    return 0;
}

void migration_dest_stats(struct migration_dest *d, struct migration_stats *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->st;
    read_counters(d, out);
    if (d->pc) {
        out->postcopy_requests = postcopy_dest_requests(d->pc) + __atomic_load_n(&d->self_requests, __ATOMIC_RELAXED);
        latency_stats(d->pc, out);
    }
    pthread_mutex_unlock(&d->lock);
}

int migration_dest_add_channel(struct migration_dest *d, int fd, struct error *err)
{
    pthread_mutex_lock(&d->lock);
    bool busy = d->preempt_fd >= 0;
    if (!busy) {
        d->preempt_fd = fd;
        start_preempt_locked(d);
    }
    pthread_mutex_unlock(&d->lock);
    if (busy) {
        close(fd);
        return error_set(err, -EBUSY, "the incoming migration has its second connection already");
    }
    return 0;
}

int migration_dest_resume(struct migration_dest *d, int fd, struct error *err)
{
    pthread_mutex_lock(&d->lock);
    bool paused = d->st.status == MIGRATION_POSTCOPY_PAUSED && d->new_fd < 0;
    if (paused) {
        d->new_fd = fd;
        pthread_cond_broadcast(&d->cond);
    }
    pthread_mutex_unlock(&d->lock);
    if (!paused) {
        close(fd);
        return error_set(err, -EINVAL, "Migrate recover can only be run when postcopy is paused.");
    }
    return 0;
}

bool migration_dest_done(struct migration_dest *d)
{
    pthread_mutex_lock(&d->lock);
    bool done = d->finished;
    pthread_mutex_unlock(&d->lock);
    return done;
}

int migration_dest_wait(struct migration_dest *d, struct error *err)
{
    if (!d->joined) {
        pthread_join(d->thread, NULL);
        d->joined = true;
    }
    if (d->result < 0 && err) {
        *err = d->err;
    }
    return d->result;
}

void migration_dest_free(struct migration_dest *d)
{
    if (!d) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    d->abort = true;                /* a paused post-copy gives up */
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (!d->joined) {
        pthread_join(d->thread, NULL);
    }
    if (d->new_fd >= 0) {
        close(d->new_fd);
    }
    /* A broken post-copy: waiters (the device loader among them) wake now
     * and see zeros; nothing may run the guest after this. */
    release_view(d);            /* first: a self-fetch inside may still use d->pc */
    stop_preempt(d);
    postcopy_dest_stop(d->pc);
    d->pc = NULL;
    selffetch_close(d->sf);
    join_loader(d);
    if (d->preempt_fd >= 0) {
        close(d->preempt_fd);
    }
    machine_state_image_free(&d->img);
    mig_disk_rx_free(d->disk_rx);
    bits_free(&d->has_data);
    bits_free(&d->received);
    close(d->fd);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->rp_lock);
    free(d);
}
