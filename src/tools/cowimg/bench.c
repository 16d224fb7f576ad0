/* cowimg bench: issue many reads or writes of one size and time them.
 * "depth" threads keep that many requests in flight. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cowimg.h"

struct bench {
    struct blockdev *bd;
    uint64_t image_size, offset, step;
    int bufsize, count, depth, flush_interval;
    bool write;
    int pattern;

    pthread_mutex_t lock;
    int next;           /* index of the next request to issue */
    bool failed;
};

static bool take_request(struct bench *b, int *index)
{
    pthread_mutex_lock(&b->lock);
    bool have = !b->failed && b->next < b->count;
    *index = b->next++;
    pthread_mutex_unlock(&b->lock);
    return have;
}

static void bench_fail(struct bench *b, const char *what, const char *msg)
{
    pthread_mutex_lock(&b->lock);
    if (!b->failed) {
        report("%s: %s", what, msg);
    }
    b->failed = true;
    pthread_mutex_unlock(&b->lock);
}

/* Each thread's buffer, made and touched before the clock starts, as
 * qemu-img bench does: first touches of fresh memory are not I/O (on a
 * nested guest they cost ~45 us a page, 0.2 s for 16 MiB). */
static uint8_t *bench_buffer(const struct bench *b)
{
    uint8_t *buf = aligned_alloc(4096, ((size_t)b->bufsize + 4095) & ~(size_t)4095);
    if (buf) {
        memset(buf, b->pattern, (size_t)b->bufsize);
    }
    return buf;
}

struct bench_thread {
    struct bench *b;
    uint8_t *buf;
};

static void *bench_worker(void *opaque)
{
    struct bench_thread *t = opaque;
    struct bench *b = t->b;
    uint8_t *buf = t->buf;
    int i;
    struct error err = {0};     /* 1 KiB: not cleared per request, read only on failure */
    while (take_request(b, &i)) {
        uint64_t off = (b->offset + (uint64_t)i * b->step) % b->image_size;
        int ret = b->write ? blockdev_pwrite(b->bd, off, buf, (size_t)b->bufsize, &err)
                           : blockdev_pread(b->bd, off, buf, (size_t)b->bufsize, &err);
        if (ret < 0) {
            bench_fail(b, "Failed request", strerror(-ret));
            break;
        }
        if (b->flush_interval && (i + 1) % b->flush_interval == 0 &&
            blockdev_flush(b->bd, &err) < 0) {
            bench_fail(b, "Failed flush request", strerror(-err.code));
            break;
        }
    }
    return NULL;
}

static int parse_count(const char *s, unsigned long max, const char *what, int *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 0);
    if (end == s || *end || s[0] == '-' || v > max) {
        report("%s", what);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "pattern", required_argument, NULL, OPT_PATTERN },
        { "no-drain", no_argument, NULL, OPT_NO_DRAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct bench b = { .count = 75000, .depth = 64, .bufsize = 4096 };
    const char *fmt = NULL;
    bool no_cache = false, share = false;
    int64_t v, step = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_count(optarg, INT_MAX, "Invalid request count specified", &b.count) < 0) {
                return EXIT_ERR;
            }
            break;
        case 'd':
            if (parse_count(optarg, INT_MAX, "Invalid queue depth specified", &b.depth) < 0) {
                return EXIT_ERR;
            }
            break;
        case 'f': fmt = optarg; break;
        case 'n': break;    /* native AIO: our I/O path is the same either way */
        case 'i':
            if (strcmp(optarg, "native") && strcmp(optarg, "threads") &&
                strcmp(optarg, "io_uring")) {
                report("Invalid aio option: %s", optarg);
                return EXIT_ERR;
            }
            break;
        case 'o':
            if (parse_size_arg("offset", optarg, 0, INT64_MAX, &v) < 0) {
                return EXIT_ERR;
            }
            b.offset = (uint64_t)v;
            break;
        case 'q': break;    /* qemu-img bench prints its summary even with -q */
        case 's':
            if (parse_size_arg("buffer size", optarg, 0, INT_MAX, &v) < 0) {
                return EXIT_ERR;
            }
            b.bufsize = (int)v;
            break;
        case 'S':
            if (parse_size_arg("step_size", optarg, 0, INT_MAX, &step) < 0) {
                return EXIT_ERR;
            }
            break;
        case 't':
            if (parse_cache_mode(optarg, &no_cache) < 0) {
                report("Invalid cache mode");
                return EXIT_ERR;
            }
            break;
        case 'w': b.write = true; break;
        case 'U': share = true; break;
        case OPT_PATTERN:
            if (parse_count(optarg, 0xff, "Invalid pattern byte specified", &b.pattern) < 0) {
                return EXIT_ERR;
            }
            break;
        case OPT_FLUSH_INTERVAL:
            if (parse_count(optarg, INT_MAX, "Invalid flush interval specified",
                            &b.flush_interval) < 0) {
                return EXIT_ERR;
            }
            break;
        case OPT_NO_DRAIN: break;
        case 'h': print_help();
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default: bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        usage_error("Expecting one image file name");
    }
    if (!b.write && b.flush_interval) {
        report("--flush-interval is only available in write tests");
        return EXIT_ERR;
    }
    if (b.flush_interval && b.flush_interval < b.depth) {
        report("Flush interval can't be smaller than depth");
        return EXIT_ERR;
    }
    unsigned flags = (b.write ? 0 : BDEV_READ_ONLY) | (no_cache ? BDEV_NO_CACHE : 0) |
                     (share ? BDEV_FORCE_SHARE : 0);
    b.bd = image_open(argv[optind], fmt, flags);
    if (!b.bd) {
        return EXIT_ERR;
    }
    b.image_size = blockdev_size(b.bd);
    b.step = step ? (uint64_t)step : (uint64_t)b.bufsize;
    printf("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %" PRIu64
           ", step size %d)\n", b.count, b.write ? "write" : "read", b.bufsize, b.depth, b.offset,
           (int)b.step);
    if (b.flush_interval) {
        printf("Sending flush every %d requests\n", b.flush_interval);
    }
    if (b.image_size == 0 && b.count > 0) {
        report("Failed request: the image is empty");
        blockdev_close(b.bd);
        return EXIT_ERR;
    }
    pthread_mutex_init(&b.lock, NULL);
    int nthreads = b.depth < 1 ? 1 : b.depth > 64 ? 64 : b.depth;
    pthread_t threads[64];
    struct bench_thread bt[64];
    for (int i = 0; i < nthreads; i++) {
        bt[i] = (struct bench_thread){ &b, bench_buffer(&b) };
        if (!bt[i].buf) {
            nthreads = i;   /* what memory allows; at least one, checked below */
        }
    }
    if (nthreads == 0) {
        report("Could not allocate a %d-byte buffer", b.bufsize);
        blockdev_close(b.bd);
        return EXIT_ERR;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int started = 0;
    for (; started < nthreads; started++) {
        if (pthread_create(&threads[started], NULL, bench_worker, &bt[started]) != 0) {
            break;
        }
    }
    if (started == 0) {
        bench_worker(&bt[0]);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int i = 0; i < nthreads; i++) {
        free(bt[i].buf);
    }
    pthread_mutex_destroy(&b.lock);
    blockdev_close(b.bd);
    if (b.failed) {
        return EXIT_ERR;
    }
    printf("Run completed in %3.3f seconds.\n",
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return EXIT_OK;
}
