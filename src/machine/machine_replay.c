#include "machine/machine_replay.h"

#include <errno.h>
#include <string.h>

#include "machine/machine_int.h"
#include "vmm/host_input.h"

static uint64_t hash_str(uint64_t h, const char *s)
{
    return s ? replay_hash(h, s, strlen(s) + 1) : replay_hash(h, "", 0);
}

static uint64_t hash_u64(uint64_t h, uint64_t v)
{
    return replay_hash(h, &v, sizeof(v));
}

/* What the guest can see of the configuration; not file names (a copy of
 * an image replays), their contents are hashed apart. */
static uint64_t config_hash(const struct machine_config *c)
{
    uint64_t h = hash_u64(0x72706c79, (uint64_t)c->cpus);
    h = hash_u64(h, c->memory);
    h = hash_u64(h, (uint64_t)c->kernel_decompress);
    h = hash_str(h, c->append);
    h = hash_u64(h, (uint64_t)(c->kernel != NULL) | (uint64_t)(c->initrd != NULL) << 1 |
                        (uint64_t)(c->bios != NULL) << 2 | (uint64_t)c->no_reboot << 3);
    h = hash_u64(h, (uint64_t)c->ndisks);
    for (int i = 0; i < c->ndisks && i < MACHINE_MAX_DISKS; i++) {
        const struct disk_config *d = &c->disks[i];
        h = hash_str(h, d->format);
        h = hash_u64(h, (uint64_t)d->read_only << 8 | (uint64_t)d->transport);
        h = hash_str(h, d->serial);
    }
    h = hash_u64(h, (uint64_t)(c->net_tap != NULL) << 8 | (uint64_t)c->net_transport);
    h = hash_str(h, c->net_mac);
    h = hash_u64(h, (uint64_t)c->nrng);
    for (int i = 0; i < c->nrng && i < 4; i++) {
        h = hash_u64(h, (uint64_t)c->rng[i]);
    }
    h = hash_u64(h, (uint64_t)c->nvconsole);
    for (int i = 0; i < c->nvconsole && i < 4; i++) {
        h = hash_u64(h, (uint64_t)c->vconsole[i]);
    }
    return h;
}

int machine_replay_header(const struct machine_config *cfg, enum replay_start start, const char *name,
                          struct replay_header *h, struct error *err)
{
    memset(h, 0, sizeof(*h));
    h->version = REPLAY_LOG_VERSION;
    h->start = start;
    if (name) {
        if (strlen(name) > REPLAY_MAX_NAME) {
            return error_set(err, -ENAMETOOLONG, "replay: the starting point's name is too long");
        }
        strcpy(h->name, name);
    }
    h->config_hash = config_hash(cfg);
    const char *files[] = { cfg->kernel, cfg->initrd, cfg->bios };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        uint64_t fh;
        int ret = replay_hash_file(files[i], &fh, err);
        if (ret < 0) {
            return ret;
        }
        h->kernel_hash = hash_u64(h->kernel_hash, fh);
    }
    for (int i = 0; i < cfg->ndisks && i < MACHINE_MAX_DISKS; i++) {
        uint64_t fh;
        int ret = replay_hash_file(cfg->disks[i].file, &fh, err);
        if (ret < 0) {
            return ret;
        }
        h->disk_hash = hash_u64(h->disk_hash, fh);
    }
    return 0;
}

void machine_replay_console(struct machine *m, struct replay *rp)
{
    enum replay_mode mode = replay_mode(rp);
    if (mode == REPLAY_OFF || !uart_can_receive(&m->uart)) {
        return;
    }
    if (mode == REPLAY_RECORD ? m->console.in < 0 : !replay_pending(rp, REPLAY_EV_CONSOLE)) {
        return;
    }
    uint8_t buf[16];
    ssize_t n = host_input_console(m->console.in, buf, sizeof(buf));
    if (n > 0) {
        uart_receive(&m->uart, buf, (size_t)n);
    }
}
