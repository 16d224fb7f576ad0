/* The snapshot test mode of the test guest (kernel command line word
 * "counter"): at CPL 3 it counts ticks forever and prints "counter N" on
 * COM1 at each one, while it keeps memory patterns it can verify:
 *  - pattern_mb=M MiB (default 16) at 32 MiB, page p holding words derived
 *    from (p, version[p]); one page changes version at every tick, and a
 *    slice of pages is checked at every tick (all of them every 64 ticks);
 *  - with a virtio-blk disk: at start it writes sectors whose contents
 *    derive from their number, then at every tick reads one of them into a
 *    buffer only the device writes (so a snapshot must track pages the VMM
 *    wrote) and checks, at the next tick, that the buffer still holds it;
 *    it also keeps a log of 8 blocks after those, writing one at every
 *    tick with the tick number and reading back the one it wrote 8 ticks
 *    before: a disk that went back in time without the memory (or the
 *    other way round) fails that check.
 * Any mismatch prints "FAIL: ..." lines; each tick's line ends in "ok" when
 * every check of that tick passed. Everything is deterministic, so a
 * restored guest prints exactly what the original would have printed.
 * spin=N sets the busy loop of a tick (default 40M iterations). */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define PATTERN_BASE (32ull << 20)
#define PAGE 4096
#define DEFAULT_SPIN 40000000u
#define DISK_SECTORS 64     /* 8-sector blocks read back, one per tick */
#define BLOCK (8 * 512)

static uint32_t versions[65536];
static uint8_t devbuf[BLOCK] __attribute__((aligned(4096)));
static uint8_t scratch[BLOCK] __attribute__((aligned(4096)));
static uint8_t logbuf[BLOCK] __attribute__((aligned(4096)));
static int last_block = -1;
static uint32_t log_written[8];     /* tick that last wrote each log block */
#define LOG_FIRST_SECTOR DISK_SECTORS
static volatile uint64_t spin_sink;

static int word_in(const char *cmdline, const char *word, unsigned *value)
{
    size_t n = strlen(word);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, word, n) == 0) {
            if (!value && (p[n] == ' ' || p[n] == 0)) {
                return 1;
            }
            if (value && p[n] == '=') {
                unsigned v = 0;
                for (p += n + 1; *p >= '0' && *p <= '9'; p++) {
                    v = v * 10 + (unsigned)(*p - '0');
                }
                *value = v;
                return 1;
            }
        }
    }
    return 0;
}

int counter_mode_wanted(const char *cmdline)
{
    return word_in(cmdline, "counter", 0);
}

static uint32_t pattern_word(uint32_t page, uint32_t version, uint32_t i)
{
    return (page * 2654435761u) ^ (version * 40503u) ^ (i * 2246822519u) ^ 0x5a5a5a5au;
}

static void fill_page(uint32_t page)
{
    uint32_t *w = (uint32_t *)(uintptr_t)(PATTERN_BASE + (uint64_t)page * PAGE);
    for (uint32_t i = 0; i < PAGE / 4; i++) {
        w[i] = pattern_word(page, versions[page], i);
    }
}

static int check_page(uint32_t page)
{
    const uint32_t *w = (const uint32_t *)(uintptr_t)(PATTERN_BASE + (uint64_t)page * PAGE);
    for (uint32_t i = 0; i < PAGE / 4; i++) {
        if (w[i] != pattern_word(page, versions[page], i)) {
            printf("FAIL: page %u (version %u) word %u is %x\n", page, versions[page], i, w[i]);
            return 0;
        }
    }
    return 1;
}

static void fill_block(uint8_t *p, int block)
{
    uint32_t *w = (uint32_t *)p;
    for (uint32_t i = 0; i < BLOCK / 4; i++) {
        w[i] = (uint32_t)block * 0x9e3779b9u + i * 7u + 0x1234u;
    }
}

static void fill_log(uint8_t *p, int slot, uint32_t tick)
{
    uint32_t *w = (uint32_t *)p;
    for (uint32_t i = 0; i < BLOCK / 4; i++) {
        w[i] = tick * 0x85ebca6bu + (uint32_t)slot * 0xc2b2ae35u + i;
    }
}

static int blk_rw(struct gvdev *d, uint32_t type, uint64_t sector, void *buf, int device_writes)
{
    static struct { uint32_t type, reserved; uint64_t sector; } req;
    static uint8_t status;
    req.type = type;
    req.reserved = 0;
    req.sector = sector;
    status = 0xff;
    struct gvbuf b[3] = { { &req, sizeof(req), 0 }, { buf, BLOCK, device_writes }, { &status, 1, 1 } };
    int used = virtio_submit(d, 0, b, 3);
    return used < 0 ? used : status;
}

static long counter_main(void *arg)
{
    const char *cmdline = arg;
    unsigned mb = 16, spin = DEFAULT_SPIN;
    word_in(cmdline, "pattern_mb", &mb);
    word_in(cmdline, "spin", &spin);
    uint32_t npages = mb ? mb * 256 : 1;
    if (npages > 65536) {
        npages = 65536;
    }
    struct gvdev devs[8];
    int n = virtio_find_mmio(cmdline, devs, 8);
    n += virtio_find_pci(devs + n, 8 - n);
    struct gvdev *disk = 0;
    for (int i = 0; i < n; i++) {
        if (devs[i].device_id == 2 && !disk && virtio_init(&devs[i], 1) == 0) {
            disk = &devs[i];
        }
    }
    for (uint32_t p = 0; p < npages; p++) {
        fill_page(p);
    }
    int ok = 1;
    for (int b = 0; disk && b < DISK_SECTORS / 8; b++) {
        fill_block(scratch, b);
        ok &= blk_rw(disk, 1, (uint64_t)b * 8, scratch, 0) == 0;
    }
    printf("counter mode: %u pattern pages, %s\n", npages, disk ? "disk" : "no disk");
    if (!ok) {
        printf("FAIL: writing the disk blocks\n");
    }
    for (uint32_t tick = 1;; tick++) {
        for (uint32_t s = 0; s < spin; s++) {
            spin_sink += s;
        }
        ok = 1;
        /* The page changed at this tick, then a slice checked. */
        uint32_t changed = (tick * 7919u) % npages;
        versions[changed]++;
        fill_page(changed);
        uint32_t slice = npages / 64 ? npages / 64 : 1;
        for (uint32_t p = (tick % 64) * slice; p < (tick % 64 + 1) * slice && p < npages; p++) {
            ok &= check_page(p);
        }
        if (disk) {
            if (last_block >= 0) {
                fill_block(scratch, last_block);
                if (memcmp(scratch, devbuf, BLOCK) != 0) {
                    printf("FAIL: device-written buffer does not hold block %d\n", last_block);
                    ok = 0;
                }
            }
            int b = (int)(tick % (DISK_SECTORS / 8));
            int st = blk_rw(disk, 0, (uint64_t)b * 8, devbuf, 1);
            if (st != 0) {
                printf("FAIL: reading block %d: %d\n", b, st);
                ok = 0;
            }
            last_block = b;
            int slot = (int)(tick % 8);
            uint64_t sector = LOG_FIRST_SECTOR + (uint64_t)slot * 8;
            if (log_written[slot]) {
                if (blk_rw(disk, 0, sector, logbuf, 1) != 0) {
                    printf("FAIL: reading log block %d\n", slot);
                    ok = 0;
                } else {
                    fill_log(scratch, slot, log_written[slot]);
                    if (memcmp(scratch, logbuf, BLOCK) != 0) {
                        printf("FAIL: log block %d does not hold tick %u's data\n", slot, log_written[slot]);
                        ok = 0;
                    }
                }
            }
            fill_log(scratch, slot, tick);
            if (blk_rw(disk, 1, sector, scratch, 0) != 0) {
                printf("FAIL: writing log block %d\n", slot);
                ok = 0;
            }
            log_written[slot] = tick;
        }
        printf("counter %u %s\n", tick, ok ? "ok" : "bad");
    }
    return 0;
}

void run_counter_mode(const char *cmdline)
{
    run_user(counter_main, (void *)cmdline);
}
