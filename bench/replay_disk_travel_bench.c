/* Time travel with a writable disk (issue 13), without a guest: a bare
 * record/replay machine's disk on its recording overlay, MiB written all
 * over it, a time-travel snapshot of the disk, then the replay's travel to
 * it (machine_replay_travel_disks) two ways: over the recording's overlay
 * viewed at the snapshot (the replay's image is the one below it), and on a
 * reverted copy of the overlay (the image moved: the copy is pointed at
 * it). Prints milliseconds of each and their ratio.
 *   replay_disk_travel_bench MIB DIR */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tests/machine/bare_machine.h"
#include "block/blockdev.h"
#include "machine/machine_replay.h"
#include "virtio/virtio_blk.h"

#define CHUNK (1u << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A record/replay machine whose disk (on a virtio-blk, as record mode has
 * it) is on an overlay: the recording's in snap, or a temporary one; err
 * set when it is not. */
static struct machine *machine_on(const struct machine_config *cfg, struct virtio_blk *blk, const char *snap,
                                  struct error *err)
{
    struct machine *m = bare_machine(cfg);
    struct blockdev_open_opts opts = { .format = "raw" };
    memset(blk, 0, sizeof(*blk));
    if (blockdev_open(&m->disks[0], cfg->disks[0].file, &opts, err) == 0 &&
        virtio_blk_init(blk, &m->vm.mem, m->disks[0], false, "", 1, err) == 0) {
        virtio_blk_make_synchronous(blk);
        m->virtio[1].dev = &blk->dev;        /* slot 0 is the bare machine's entropy device */
        m->nvirtio = 2;
        machine_replay_protect_disks(m, snap, err);
    }
    return m;
}

static void destroy(struct machine *m, struct virtio_blk *blk)
{
    if (m->nvirtio == 2) {
        virtio_blk_destroy(blk);
        m->virtio[1].dev = NULL;
        m->nvirtio = 1;
    }
    bare_destroy(m);
}

/* The recording: its overlay written all over, its snapshot of exit 1 taken. */
static int record(const struct machine_config *cfg, const char *snap, uint64_t size, struct error *err)
{
    struct virtio_blk blk;
    struct machine *m = machine_on(cfg, &blk, snap, err);
    int ret = err->code;
    uint8_t *buf = malloc(CHUNK);
    for (uint64_t off = 0; ret == 0 && buf && off < size; off += CHUNK) {
        memset(buf, (int)(off / CHUNK) | 1, CHUNK);
        ret = blockdev_pwrite(m->disks[0], off, buf, CHUNK, err);
    }
    free(buf);
    if (ret == 0) {
        ret = machine_replay_snapshot_disks(m, 1, err);
    }
    destroy(m, &blk);
    return ret;
}

/* Seconds for a travel to exit 1, or < 0; checks the disk reads as written. */
static double travel(struct machine *m, const char *snap, struct error *err)
{
    double t0 = now();
    if (machine_replay_travel_disks(m, snap, 1, err) < 0) {
        return -1;
    }
    double t = now() - t0;
    uint8_t b = 0;
    if (blockdev_pread(m->disks[0], 3 * CHUNK + 5, &b, 1, err) < 0 || b != 3) {
        fprintf(stderr, "the travelled disk reads 0x%02x at 3 MiB + 5, not 0x03\n", b);
        return -1;
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: replay_disk_travel_bench MIB DIR\n");
        return 2;
    }
    uint64_t size = strtoull(argv[1], NULL, 10) << 20;
    char image[PATH_MAX], moved[PATH_MAX], snap[PATH_MAX], cmd[PATH_MAX + 16];
    snprintf(image, sizeof(image), "%s/user.img", argv[2]);
    snprintf(moved, sizeof(moved), "%s/moved.img", argv[2]);
    snprintf(snap, sizeof(snap), "%s/travel.snap", argv[2]);
    FILE *f = fopen(image, "w");
    if (!f || ftruncate(fileno(f), (off_t)size) < 0 || mkdir(snap, 0755) < 0) {
        perror(argv[2]);
        return 1;
    }
    fclose(f);
    setenv("TMPDIR", argv[2], 1);       /* the copies beside the overlay, as a replay's TMPDIR may be */
    struct machine_config cfg = { .cpus = 1, .memory = 16ull << 20, .record_replay = true, .ndisks = 1 };
    cfg.disks[0] = (struct disk_config){ .file = image, .format = "raw", .transport = TRANSPORT_MMIO };
    struct error err = { 0 };
    struct virtio_blk blk;
    double view = -1, copy = -1;
    if (record(&cfg, snap, size, &err) == 0) {
        struct machine *m = machine_on(&cfg, &blk, NULL, &err);    /* the replay */
        if (!err.code && (view = travel(m, snap, &err)) >= 0 && rename(image, moved) == 0 &&
            realpath(moved, m->replay->disk[0].backing)) {
            copy = travel(m, snap, &err);   /* the overlay is not over this image any more */
        }
        destroy(m, &blk);
    }
    unlink(image);
    unlink(moved);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", snap);
    if (view < 0 || copy < 0 || system(cmd) != 0) {
        fprintf(stderr, "replay_disk_travel_bench: %s\n", err.msg);
        return 1;
    }
    printf("time travel of a %llu MiB disk overlay: new overlay over the recording's %.1f ms  "
           "reverted copy %.1f ms  copy/view %.0fx\n", (unsigned long long)(size >> 20), view * 1e3, copy * 1e3,
           copy / view);
    return 0;
}
