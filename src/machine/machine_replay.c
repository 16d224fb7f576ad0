#include "machine/machine_replay.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "machine/machine_int.h"
#include "vmm/host_input.h"

static uint64_t hash_str(replay_hash_fn *hash, uint64_t h, const char *s)
{
    return s ? hash(h, s, strlen(s) + 1) : hash(h, "", 0);
}

static uint64_t hash_u64(replay_hash_fn *hash, uint64_t h, uint64_t v)
{
    return hash(h, &v, sizeof(v));
}

/* What the guest can see of the configuration; not file names (a copy of
 * an image replays), their contents are hashed apart. */
static uint64_t config_hash(const struct machine_config *c, replay_hash_fn *f)
{
    uint64_t h = hash_u64(f, 0x72706c79, (uint64_t)c->cpus);
    h = hash_u64(f, h, c->memory);
    h = hash_u64(f, h, (uint64_t)c->kernel_decompress);
    h = hash_str(f, h, c->append);
    h = hash_u64(f, h, (uint64_t)(c->kernel != NULL) | (uint64_t)(c->initrd != NULL) << 1 |
                           (uint64_t)(c->bios != NULL) << 2 | (uint64_t)c->no_reboot << 3);
    h = hash_u64(f, h, (uint64_t)c->ndisks);
    for (int i = 0; i < c->ndisks && i < MACHINE_MAX_DISKS; i++) {
        const struct disk_config *d = &c->disks[i];
        h = hash_str(f, h, d->format);
        h = hash_u64(f, h, (uint64_t)d->read_only << 8 | (uint64_t)d->transport);
        h = hash_str(f, h, d->serial);
    }
    h = hash_u64(f, h, (uint64_t)(c->net_tap != NULL) << 8 | (uint64_t)c->net_transport);
    h = hash_str(f, h, c->net_mac);
    h = hash_u64(f, h, (uint64_t)c->nrng);
    for (int i = 0; i < c->nrng && i < 4; i++) {
        h = hash_u64(f, h, (uint64_t)c->rng[i]);
    }
    h = hash_u64(f, h, (uint64_t)c->nvconsole);
    for (int i = 0; i < c->nvconsole && i < 4; i++) {
        h = hash_u64(f, h, (uint64_t)c->vconsole[i]);
    }
    return h;
}

/* The contents of files, one hash: each file's, chained. */
static int hash_files(const char *const *files, size_t n, uint32_t version, uint64_t *out, struct error *err)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t fh;
        int ret = replay_hash_file(files[i], version, &fh, err);
        if (ret < 0) {
            return ret;
        }
        *out = hash_u64(replay_hash_of(version), *out, fh);
    }
    return 0;
}

int machine_replay_header(const struct machine_config *cfg, enum replay_start start, const char *name,
                          uint32_t version, struct replay_header *h, struct error *err)
{
    memset(h, 0, sizeof(*h));
    h->version = version;
    h->start = start;
    if (name) {
        if (strlen(name) > REPLAY_MAX_NAME) {
            return error_set(err, -ENAMETOOLONG, "replay: the starting point's name is too long");
        }
        strcpy(h->name, name);
    }
    h->config_hash = config_hash(cfg, replay_hash_of(version));
    const char *files[] = { cfg->kernel, cfg->initrd, cfg->bios };
    const char *disks[MACHINE_MAX_DISKS];
    int ndisks = 0;
    for (int i = 0; i < cfg->ndisks && i < MACHINE_MAX_DISKS; i++) {
        disks[ndisks++] = cfg->disks[i].file;
    }
    int ret = hash_files(files, sizeof(files) / sizeof(files[0]), version, &h->kernel_hash, err);
    return ret < 0 ? ret : hash_files(disks, (size_t)ndisks, version, &h->disk_hash, err);
}

bool machine_replay_console_closed(struct machine *m)
{
    return m->console.in < 0 || (m->replay && m->replay->console_eof);
}

void machine_replay_console(struct machine *m, struct replay *rp)
{
    enum replay_mode mode = replay_mode(rp);
    if (mode == REPLAY_OFF || !uart_can_receive(&m->uart)) {
        return;
    }
    if (mode == REPLAY_RECORD ? machine_replay_console_closed(m) : !replay_pending(rp, REPLAY_EV_CONSOLE)) {
        return;
    }
    uint8_t buf[16];
    ssize_t n = host_input_console(m->console.in, buf, sizeof(buf));
    if (n > 0) {
        uart_receive(&m->uart, buf, (size_t)n);
    } else if (n == 0 && m->replay) {
        m->replay->console_eof = true;  /* no more reads, and an idle vCPU sleeps instead of polling */
    }
}

/* ---- a run's log (machine.h) ---- */

int machine_replay_start(struct machine *m, enum machine_replay_mode mode, const char *file,
                         const char *restore_dir, const char *loadvm_name, uint64_t break_at, struct error *err)
{
    struct machine_replay *r = m->replay;
    if (!r) {
        return error_set(err, -EINVAL, "the machine was not created for record/replay");
    }
    enum replay_start start = restore_dir ? REPLAY_START_RESTORE : loadvm_name ? REPLAY_START_LOADVM
                                                                                : REPLAY_START_BOOT;
    bool record = mode == MACHINE_REPLAY_RECORD;
    /* A replay hashes as its log was written (version 2 logs replay). */
    uint32_t version = record ? REPLAY_LOG_VERSION : replay_log_version_of(file);
    struct replay_header h;
    int ret = machine_replay_header(m->cfg, start, restore_dir ? restore_dir : loadvm_name, version, &h, err);
    if (ret < 0) {
        return ret;
    }
    r->hash = replay_hash_of(version);
    if (record && (ret = machine_replay_snapshots_begin(m, file, err)) < 0) {
        return ret;
    }
    /* A recording with time-travel snapshots keeps its overlays beside them. */
    if ((ret = machine_replay_protect_disks(m, record && r->snapshot_every ? r->snap_dir : NULL, err)) < 0) {
        return ret;
    }
    int fd = open(file, record ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        return error_set_errno(err, -errno, "%s '%s'", record ? "--record" : "--replay", file);
    }
    ret = record ? replay_record_begin(&r->rp, fd, &h, err) : replay_replay_begin(&r->rp, fd, &h, err);
    if (ret < 0) {
        error_prefix(err, "%s '%s'", record ? "--record" : "--replay", file);
        return ret;
    }
    r->file = strdup(file);
    for (int i = 0; i < m->nvirtio; i++) {
        replay_name_block_device(r->rp, m->virtio[i].dev);  /* block completions name their slot */
    }
    if (!record && break_at && (ret = machine_replay_travel(m, file, break_at, err)) < 0) {
        return ret;
    }
    __atomic_store_n(&r->break_at, record ? 0 : break_at, __ATOMIC_RELAXED);
    /* Console input reaches the guest only at exits now (machine_replay_console):
     * recorded from the console, or replayed from the log. */
    if (m->console.in >= 0) {
        event_loop_remove(&m->loop, m->console.in);
    }
    return 0;
}

void machine_replay_query(struct machine *m, struct machine_replay_info *out)
{
    struct machine_replay *r = m->replay;
    memset(out, 0, sizeof(*out));
    if (r && r->rp) {
        out->mode = replay_mode(r->rp) == REPLAY_RECORD ? MACHINE_REPLAY_RECORD : MACHINE_REPLAY_PLAY;
        out->file = r->file;
        out->icount = replay_ordinal(r->rp);
    }
}

int machine_replay_set_break(struct machine *m, uint64_t icount, struct error *err)
{
    struct machine_replay *r = m->replay;
    if (!r || !r->rp || replay_mode(r->rp) != REPLAY_REPLAY) {
        /* QEMU's words, then ours. */
        return error_set(err, -EINVAL, "%s (while replaying: --replay)",
                         icount ? "setting the breakpoint is allowed only in play mode"
                                : "replay breakpoints are allowed only in play mode");
    }
    uint64_t now = replay_ordinal(r->rp);
    if (icount && icount <= now) {
        return error_set(err, -EINVAL, "cannot set breakpoint at the instruction in the past (exit %llu: the "
                         "replay is at exit %llu)", (unsigned long long)icount, (unsigned long long)now);
    }
    __atomic_store_n(&r->break_at, icount, __ATOMIC_RELAXED);
    return 0;
}

bool machine_replay_at_break(struct machine *m)
{
    struct machine_replay *r = m->replay;
    uint64_t at = __atomic_load_n(&r->break_at, __ATOMIC_RELAXED);
    if (!at || replay_ordinal(r->rp) != at) {
        return false;
    }
    /* Only if nobody moved it meanwhile. */
    return __atomic_compare_exchange_n(&r->break_at, &at, 0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* Replay: the recorded run's end against this one's. */
static int replay_status_end(struct machine_replay *r, int *status, struct error *err)
{
    int recorded;
    char msg[sizeof(err->msg)];
    if (!replay_take_status(r->rp, &recorded, msg, sizeof(msg))) {
        return 0;       /* a version 1 log: nothing to compare */
    }
    if (!r->ended_by_log && *status >= 0 && *status != recorded) {
        return error_set(err, -EPROTO, "replay diverged at exit %llu: the recorded run ended with status %d, "
                         "this one with status %d", (unsigned long long)replay_ordinal(r->rp), recorded, *status);
    }
    if (r->ended_by_log) {
        *status = recorded;
        if (recorded < 0) {
            error_set(err, recorded, "the recorded run ended here: %s", msg);
        }
    }
    return 0;
}

int64_t machine_replay_finish(struct machine *m, int *status, struct error *err)
{
    struct machine_replay *r = m->replay;
    if (!r || !r->rp) {
        return 0;
    }
    struct error serr = { 0 };
    bool record = replay_mode(r->rp) == REPLAY_RECORD;
    int ret = record ? replay_note_status(r->rp, *status, err->msg, &serr) : replay_status_end(r, status, &serr);
    if (record) {
        machine_replay_drop_unused_overlays(m);
    }
    int64_t n = replay_end(r->rp, err);
    r->rp = NULL;
    if (n >= 0 && ret < 0) {
        *err = serr;
        return ret;
    }
    if (n >= 0 && *status < 0 && serr.msg[0]) {
        *err = serr;    /* the recorded run's failure */
    }
    return n;
}
