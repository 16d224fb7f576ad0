/* The device checks the test guest runs on every virtio device it finds,
 * over both transports. Heavy data work (patterns) stays small: kernel-mode
 * guest code is emulated on some hosts. */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define SECTOR 512
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_T_WRITE_ZEROES 13
#define PATTERN_BYTES (64 * 1024)

struct blk_req {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct blk_seg {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

static uint8_t data[PATTERN_BYTES] __attribute__((aligned(4096)));
static uint8_t back[PATTERN_BYTES] __attribute__((aligned(4096)));

static void label(char *out, const char *what, const struct gvdev *d)
{
    const char *t = virtio_transport_name(d);
    size_t n = 0;
    while (*what) out[n++] = *what++;
    out[n++] = ' ';
    out[n++] = '(';
    while (*t) out[n++] = *t++;
    out[n++] = ')';
    out[n] = 0;
}

static void checkd(int ok, const char *what, const struct gvdev *d)
{
    char buf[96];
    label(buf, what, d);
    check(ok, buf);
}

/* One request on queue q: header, optional data, status byte. Returns the
 * status or -1 (no completion on that queue). */
static int blk_rw_on(struct gvdev *d, int q, uint32_t type, uint64_t sector, void *buf, uint32_t len,
                     int device_writes)
{
    static struct blk_req req;
    static uint8_t status;
    req = (struct blk_req){ type, 0, sector };
    status = 0xff;
    struct gvbuf b[3];
    int n = 0;
    b[n++] = (struct gvbuf){ &req, sizeof(req), 0 };
    if (len) {
        b[n++] = (struct gvbuf){ buf, len, device_writes };
    }
    b[n++] = (struct gvbuf){ &status, 1, 1 };
    int used = virtio_submit(d, q, b, n);
    return used < 0 ? used : status;
}

static int blk_rw(struct gvdev *d, uint32_t type, uint64_t sector, void *buf, uint32_t len, int device_writes)
{
    return blk_rw_on(d, 0, type, sector, buf, len, device_writes);
}

static void fill_pattern(uint8_t *p, uint32_t len, uint32_t seed)
{
    uint32_t *w = (uint32_t *)p;
    for (uint32_t i = 0; i < len / 4; i++) {
        w[i] = seed * 2654435761u + i;
    }
}

static int all_zero(const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

#define BLK_F_MQ (1u << 12)

/* With VIRTIO_BLK_F_MQ (a disk with num-queues > 1): the config space says
 * how many queues, and a read posted on queue 1 completes on queue 1 (the
 * driver polls that queue's used ring only). The first 4 KiB at `base`
 * hold the pattern test_blk wrote. */
static void test_blk_queues(struct gvdev *d, uint64_t base)
{
    if (!(virtio_features_lo(d) & BLK_F_MQ)) {
        printf("virtio-blk (%s): one queue\n", virtio_transport_name(d));
        return;
    }
    unsigned queues = virtio_config32(d, 32) >> 16;    /* num_queues: le16 at 34 */
    printf("virtio-blk (%s): %u queues\n", virtio_transport_name(d), queues);
    checkd(queues >= 2, "virtio-blk multiqueue: num_queues of 2 or more", d);
    if (virtio_init_features(d, 2, BLK_F_MQ) < 0) {
        checkd(0, "virtio-blk multiqueue: init with two queues", d);
        return;
    }
    memset(back, 0, 4096);
    checkd(blk_rw_on(d, 1, BLK_T_IN, base, back, 4096, 1) == 0 && memcmp(back, data, 4096) == 0,
           "virtio-blk multiqueue: a read on queue 1 completes there", d);
    checkd(blk_rw(d, BLK_T_IN, base, back, 4096, 1) == 0 && memcmp(back, data, 4096) == 0,
           "virtio-blk multiqueue: queue 0 still serves", d);
}

static void test_blk(struct gvdev *d, int index)
{
    if (virtio_init(d, 1) < 0) {
        checkd(0, "virtio-blk init", d);
        return;
    }
    uint32_t cap_lo = virtio_config32(d, 0), cap_hi = virtio_config32(d, 4);
    uint64_t capacity = ((uint64_t)cap_hi << 32) | cap_lo;
    printf("virtio-blk (%s): %u sectors\n", virtio_transport_name(d), (unsigned)capacity);
    checkd(capacity >= 2 * PATTERN_BYTES / SECTOR, "virtio-blk capacity", d);
    uint64_t base = 64 + (uint64_t)index * 8;

    fill_pattern(data, PATTERN_BYTES, 0x1234 + (uint32_t)index);
    checkd(blk_rw(d, BLK_T_OUT, base, data, PATTERN_BYTES, 0) == 0, "virtio-blk write pattern", d);
    memset(back, 0, PATTERN_BYTES);
    checkd(blk_rw(d, BLK_T_IN, base, back, PATTERN_BYTES, 1) == 0, "virtio-blk read back", d);
    checkd(memcmp(data, back, PATTERN_BYTES) == 0, "virtio-blk data matches", d);
    /* A read at an offset inside the written range. */
    checkd(blk_rw(d, BLK_T_IN, base + 3, back, 4 * SECTOR, 1) == 0 &&
           memcmp(back, data + 3 * SECTOR, 4 * SECTOR) == 0, "virtio-blk unaligned-offset read", d);
    checkd(blk_rw(d, BLK_T_FLUSH, 0, 0, 0, 0) == 0, "virtio-blk flush", d);

    /* Four reads in flight at once, each of a different 4 KiB piece. */
    static struct blk_req reqs[4];
    static uint8_t stats[4];
    struct gvbuf many[12];
    int counts[4] = { 3, 3, 3, 3 }, lens[4] = { 0, 0, 0, 0 };
    memset(back, 0, PATTERN_BYTES);
    for (int i = 0; i < 4; i++) {
        reqs[i] = (struct blk_req){ BLK_T_IN, 0, base + 8 * (uint64_t)(3 - i) };
        stats[i] = 0xff;
        many[3 * i] = (struct gvbuf){ &reqs[i], sizeof(reqs[i]), 0 };
        many[3 * i + 1] = (struct gvbuf){ back + 4096 * (3 - i), 4096, 1 };
        many[3 * i + 2] = (struct gvbuf){ &stats[i], 1, 1 };
    }
    int ok = virtio_submit_many(d, 0, many, counts, 4, lens) == 0;
    for (int i = 0; i < 4; i++) {
        ok = ok && stats[i] == 0 && lens[i] == 4097;
    }
    checkd(ok && memcmp(back, data, 4 * 4096) == 0, "virtio-blk four requests in flight", d);

    static struct blk_seg seg;
    seg = (struct blk_seg){ base + 8, 8, 0 };
    checkd(blk_rw(d, BLK_T_WRITE_ZEROES, 0, &seg, sizeof(seg), 0) == 0, "virtio-blk write zeroes", d);
    checkd(blk_rw(d, BLK_T_IN, base + 8, back, 8 * SECTOR, 1) == 0 && all_zero(back, 8 * SECTOR),
           "virtio-blk zeroed range reads zeros", d);
    checkd(blk_rw(d, BLK_T_IN, base, back, 8 * SECTOR, 1) == 0 && memcmp(back, data, 8 * SECTOR) == 0,
           "virtio-blk data before the zeroed range intact", d);
    seg = (struct blk_seg){ base + 16, 16, 0 };
    checkd(blk_rw(d, BLK_T_DISCARD, 0, &seg, sizeof(seg), 0) == 0, "virtio-blk discard", d);
    checkd(blk_rw(d, BLK_T_IN, capacity, back, SECTOR, 1) == 1, "virtio-blk read past the end fails", d);

    /* Report what lies at 2 MiB, so the host can check data that comes from
     * a backing file (the guest writes nothing there). */
    if (capacity > 4096 + 1 && blk_rw(d, BLK_T_IN, 4096, back, SECTOR, 1) == 0) {
        printf("virtio-blk (%s): sector 4096 holds %02x %02x\n", virtio_transport_name(d), back[0], back[511]);
    }

    static char id[20];
    memset(id, 0, sizeof(id));
    int st = blk_rw(d, BLK_T_GET_ID, 0, id, sizeof(id), 1);
    printf("virtio-blk (%s): serial '%s'\n", virtio_transport_name(d), id);
    checkd(st == 0, "virtio-blk get id", d);
    test_blk_queues(d, base);
}

static void test_rng(struct gvdev *d)
{
    static uint8_t buf[64];
    memset(buf, 0, sizeof(buf));
    if (virtio_init(d, 1) < 0) {
        checkd(0, "virtio-rng init", d);
        return;
    }
    struct gvbuf b = { buf, sizeof(buf), 1 };
    int n = virtio_submit(d, 0, &b, 1);
    checkd(n == (int)sizeof(buf) && !all_zero(buf, sizeof(buf)), "virtio-rng returns random bytes", d);
}

static void test_console(struct gvdev *d)
{
    static char msg[64];
    if (virtio_init(d, 2) < 0) {
        checkd(0, "virtio-console init", d);
        return;
    }
    label(msg, "virtio-console", d);
    size_t n = strlen(msg);
    memcpy(msg + n, ": hello\n", 9);
    struct gvbuf b = { msg, (uint32_t)(n + 8), 0 };
    checkd(virtio_submit(d, 1, &b, 1) >= 0, "virtio-console transmit", d);
}

/* Sends a broadcast "ping" frame (ethertype 0x88b5) and waits for a
 * "pong" frame addressed to us; the host side of the test answers. */
static void test_net(struct gvdev *d)
{
    static uint8_t tx[12 + 60], rx[12 + 1514];
    static const char ping[] = "cowvisor-net-ping", pong[] = "cowvisor-net-pong";
    if (virtio_init(d, 2) < 0) {
        checkd(0, "virtio-net init", d);
        return;
    }
    uint8_t mac[8];
    uint32_t lo = virtio_config32(d, 0), hi = virtio_config32(d, 4);
    memcpy(mac, &lo, 4);
    memcpy(mac + 4, &hi, 4);
    printf("virtio-net (%s): mac %02x:%02x:%02x:%02x:%02x:%02x\n", virtio_transport_name(d), mac[0], mac[1],
           mac[2], mac[3], mac[4], mac[5]);
    struct gvbuf rb = { rx, sizeof(rx), 1 };
    virtio_post(d, 0, &rb, 1);
    memset(tx, 0, sizeof(tx));
    memset(tx + 12, 0xff, 6);
    memcpy(tx + 18, mac, 6);
    tx[24] = 0x88;
    tx[25] = 0xb5;
    memcpy(tx + 26, ping, sizeof(ping));
    struct gvbuf tb = { tx, sizeof(tx), 0 };
    /* The host side may not listen yet: ping again until it answers. */
    int ok = 0, sent = 0;
    for (int tries = 0; tries < 200 && !ok; tries++) {
        if (tries % 8 == 0 && sent < 25) {
            if (virtio_submit(d, 1, &tb, 1) < 0) {
                break;
            }
            sent++;
        }
        int len = virtio_poll(d, 0, 400000000ull);
        if (len < 0) {
            continue;
        }
        ok = len >= 12 + 14 + (int)sizeof(pong) - 1 && memcmp(rx + 12, mac, 6) == 0 && rx[24] == 0x88 &&
             rx[25] == 0xb5 && memcmp(rx + 26, pong, sizeof(pong) - 1) == 0;
        if (!ok) {
            virtio_post(d, 0, &rb, 1);  /* someone else's frame: wait for ours */
        }
    }
    checkd(sent > 0, "virtio-net transmit", d);
    checkd(ok, "virtio-net received the host's answer", d);
}

/* The disk benchmarks, four requests in flight on the first disk:
 *   bench-blk=N           N random 4 KiB reads
 *   bench-blk-write=N     N random 4 KiB writes, a flush after every 64
 *   bench-blk-seqread=N   N sequential 1 MiB reads (wrapping at the disk's end)
 *   bench-blk-seqwrite=N  N sequential 1 MiB writes
 * The host times the lines "bench-blk: start" and "bench-blk: end". */
struct blk_bench {
    const char *key;
    uint32_t type;
    uint32_t size;
    int random;
    int flush_every;
    const char *what;
};

static const struct blk_bench blk_benches[] = {
    { "bench-blk", BLK_T_IN, 4096, 1, 0, "random reads of 4 KiB" },
    { "bench-blk-write", BLK_T_OUT, 4096, 1, 64, "random writes of 4 KiB, a flush every 64" },
    { "bench-blk-seqread", BLK_T_IN, 1u << 20, 0, 0, "sequential reads of 1 MiB" },
    { "bench-blk-seqwrite", BLK_T_OUT, 1u << 20, 0, 0, "sequential writes of 1 MiB" },
};

#define BENCH_DEPTH 4
static uint8_t bench_bufs[BENCH_DEPTH][1u << 20] __attribute__((aligned(4096)));

static int bench_flush(struct gvdev *d)
{
    return blk_rw(d, BLK_T_FLUSH, 0, 0, 0, 0) == 0 ? 0 : 1;
}

static void bench_blk(struct gvdev *d, const struct blk_bench *b, int n)
{
    if (virtio_init(d, 1) < 0) {
        checkd(0, "virtio-blk init", d);
        return;
    }
    uint64_t sectors = ((uint64_t)virtio_config32(d, 4) << 32) | virtio_config32(d, 0);
    uint64_t step = b->size / SECTOR, blocks = sectors / step, seed = 12345, next = 0;
    static struct blk_req reqs[BENCH_DEPTH];
    static uint8_t stats[BENCH_DEPTH];
    struct gvbuf bufs[3 * BENCH_DEPTH];
    int counts[BENCH_DEPTH] = { 3, 3, 3, 3 }, lens[BENCH_DEPTH];
    int errors = 0, since_flush = 0;
    printf("bench-blk: start %d %s\n", n, b->what);
    for (int i = 0; i < n && !errors; i += BENCH_DEPTH) {
        for (int k = 0; k < BENCH_DEPTH; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t block = b->random ? (seed >> 33) % blocks : next++ % blocks;
            reqs[k] = (struct blk_req){ b->type, 0, block * step };
            stats[k] = 0xff;
            bufs[3 * k] = (struct gvbuf){ &reqs[k], sizeof(reqs[k]), 0 };
            bufs[3 * k + 1] = (struct gvbuf){ bench_bufs[k], b->size, b->type == BLK_T_IN };
            bufs[3 * k + 2] = (struct gvbuf){ &stats[k], 1, 1 };
        }
        if (virtio_submit_many(d, 0, bufs, counts, BENCH_DEPTH, lens) < 0) {
            errors++;
            break;
        }
        for (int k = 0; k < BENCH_DEPTH; k++) {
            errors += stats[k] != 0;
        }
        since_flush += BENCH_DEPTH;
        if (b->flush_every && since_flush >= b->flush_every) {
            errors += bench_flush(d);
            since_flush = 0;
        }
    }
    if (b->type == BLK_T_OUT) {
        errors += bench_flush(d);
    }
    printf("bench-blk: end\n");
    checkd(errors == 0, "bench-blk requests", d);
}

static int cmdline_value(const char *cmdline, const char *key);

/* The benchmark the command line asks for, or NULL (*n: its count). */
static const struct blk_bench *blk_bench_wanted(const char *cmdline, int *n)
{
    for (unsigned i = 0; i < sizeof(blk_benches) / sizeof(blk_benches[0]); i++) {
        *n = cmdline_value(cmdline, blk_benches[i].key);
        if (*n > 0) {
            return &blk_benches[i];
        }
    }
    return NULL;
}

/* hostile: break the rules on one disk's ring (a descriptor loop, then a
 * buffer outside guest memory); the device must say NEEDS_RESET, the other
 * disk must keep working, and a reset must bring the first one back. */
static int wait_needs_reset(struct gvdev *d)
{
    for (int i = 0; i < 100000; i++) {
        if (virtio_status(d) & 0x40) {
            return 1;
        }
    }
    return 0;
}

static void post_raw(struct gvdev *d, const struct gvq_desc *descs, int n)
{
    struct gvq *q = &d->q[0];
    for (int i = 0; i < n; i++) {
        q->desc[i] = descs[i];
    }
    q->avail[2 + q->avail_idx % q->size] = 0;
    mb();
    q->avail_idx++;
    q->avail[1] = q->avail_idx;
    mb();
    if (d->transport == GV_MMIO) {
        mmio_write32(q->notify_addr, 0);
    } else {
        mmio_write16(q->notify_addr, 0);
    }
}

static int one_read_works(struct gvdev *d)
{
    return virtio_init(d, 1) == 0 && blk_rw(d, BLK_T_IN, 0, back, SECTOR, 1) == 0;
}

static void test_hostile(struct gvdev *bad, struct gvdev *good)
{
    static struct blk_req req = { BLK_T_IN, 0, 0 };
    uint64_t a = (uint64_t)(uintptr_t)&req;
    checkd(virtio_init(bad, 1) == 0, "hostile: device set up", bad);
    struct gvq_desc loop[2] = { { a, 16, 1, 1 }, { a, 16, 1, 0 } };
    post_raw(bad, loop, 2);
    checkd(wait_needs_reset(bad), "hostile: a descriptor loop puts the device into NEEDS_RESET", bad);
    checkd(one_read_works(good), "hostile: the other disk keeps working", good);
    checkd(one_read_works(bad), "hostile: a reset brings the device back", bad);
    struct gvq_desc outside[1] = { { 0x40000000000ull, 4096, 2, 0 } };
    post_raw(bad, outside, 1);
    checkd(wait_needs_reset(bad), "hostile: a buffer outside guest memory puts the device into NEEDS_RESET", bad);
    checkd(one_read_works(good), "hostile: the other disk still works", good);
    checkd(one_read_works(bad), "hostile: reset again", bad);
}

static int cmdline_value(const char *cmdline, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            int v = 0;
            for (p += klen + 1; *p >= '0' && *p <= '9'; p++) {
                v = v * 10 + (*p - '0');
            }
            return v;
        }
    }
    return -1;
}

void run_all_tests(const char *cmdline)
{
    struct gvdev devs[16];
    int n = virtio_find_mmio(cmdline, devs, 16);
    n += virtio_find_pci(devs + n, 16 - n);
    printf("found %d virtio device(s)\n", n);
    if (strncmp(cmdline, "hostile=", 8) == 0) {
        /* hostile=mmio or hostile=pci: the transport of the disk to break. */
        enum gvt bad_transport = strncmp(cmdline + 8, "pci", 3) == 0 ? GV_PCI : GV_MMIO;
        struct gvdev *bad = 0, *good = 0;
        for (int i = 0; i < n; i++) {
            if (devs[i].device_id != 2) {
                continue;
            }
            if (devs[i].transport == bad_transport && !bad) {
                bad = &devs[i];
            } else if (!good) {
                good = &devs[i];
            }
        }
        if (bad && good) {
            test_hostile(bad, good);
        } else {
            check(0, "hostile needs two virtio-blk devices, one on the named transport");
        }
        return;
    }
    int bench = 0;
    const struct blk_bench *which = blk_bench_wanted(cmdline, &bench);
    if (which) {
        for (int i = 0; i < n; i++) {
            if (devs[i].device_id == 2) {
                bench_blk(&devs[i], which, bench);
                return;
            }
        }
        check(0, "bench-blk needs a virtio-blk device");
        return;
    }
    int blk = 0;
    for (int i = 0; i < n; i++) {
        switch (devs[i].device_id) {
        case 1: test_net(&devs[i]); break;
        case 2: test_blk(&devs[i], blk++); break;
        case 3: test_console(&devs[i]); break;
        case 4: test_rng(&devs[i]); break;
        default: printf("skipping virtio device type %u\n", (unsigned)devs[i].device_id); break;
        }
    }
    check(1, "boot");
}
