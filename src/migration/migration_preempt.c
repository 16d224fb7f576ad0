/* Post-copy's preempt channel (QEMU's postcopy-preempt capability): a
 * second connection that carries only the pages the destination asked
 * for, so a request never waits behind the bulk stream queued in the main
 * connection's socket buffers. The source's return-path thread sends each
 * requested page on it as soon as it reads the request; a thread of the
 * destination's places each page as it arrives.
 *
 * The channel opens with PREEMPT_MAGIC from the source; then fixed
 * messages: u64 gpa, u32 crc32 of the page, u32 zero, the 4096 bytes.
 * The guest is stopped on the source in post-copy, so a page sent here and
 * again by the bulk stream is the same page (the second placement only
 * wakes). If the channel breaks, requests go back to the main stream. */
#include "migration/migration_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "util/bswap.h"
#include "util/log.h"

#define PREEMPT_MAGIC "COWPRMPT"
#define HEADER 16
#define MSG (HEADER + GUEST_PAGE_SIZE)

/* Whole messages in or out (out: send), or -errno (-EPIPE at the end). */
static int transfer_all(int fd, void *buf, size_t len, bool out)
{
    for (size_t done = 0; done < len;) {
        uint8_t *p = (uint8_t *)buf + done;
        ssize_t n = out ? send(fd, p, len - done, MSG_NOSIGNAL) : recv(fd, p, len - done, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EPIPE;
        }
        done += (size_t)n;
    }
    return 0;
}

/* ---- the source ---- */

/* No thread of its own: the return-path thread that reads a request
 * sends the page at once (one thread hop less on the way); only it writes
 * to the channel. */
struct preempt_src {
    int fd;
    const struct guest_memory *mem;
    bool broken;
    uint64_t pages;             /* atomic: read by the statistics */
};

int preempt_src_hello(int fd, struct error *err)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));   /* not TCP: no matter */
    int ret = transfer_all(fd, (void *)PREEMPT_MAGIC, 8, true);
    return ret < 0 ? error_set_errno(err, ret, "post-copy preempt channel") : 0;
}

int preempt_src_start(struct preempt_src **out, int fd, const struct guest_memory *mem, struct error *err)
{
    struct preempt_src *p = calloc(1, sizeof(*p));
    if (!p) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    p->fd = fd;
    p->mem = mem;
    *out = p;
    return 0;
}

bool preempt_src_request(struct preempt_src *p, uint64_t gpa)
{
    uint8_t msg[MSG];
    const uint8_t *page = guest_memory_ptr(p->mem, gpa, GUEST_PAGE_SIZE);
    if (p->broken || !page) {
        return false;
    }
    memcpy(msg + HEADER, page, GUEST_PAGE_SIZE);
    st_le64(msg, gpa);
    st_le32(msg + 8, (uint32_t)crc32(crc32(0, NULL, 0), msg + HEADER, GUEST_PAGE_SIZE));
    st_le32(msg + 12, 0);
    int ret = transfer_all(p->fd, msg, MSG, true);
    if (ret < 0) {
        log_warn("post-copy preempt channel broke (%s): requests go on the main stream", strerror(-ret));
        p->broken = true;
        return false;
    }
    __atomic_add_fetch(&p->pages, 1, __ATOMIC_RELAXED);
    return true;
}

uint64_t preempt_src_pages(struct preempt_src *p)
{
    return __atomic_load_n(&p->pages, __ATOMIC_RELAXED);
}

/* The fd stays the caller's. */
void preempt_src_stop(struct preempt_src *p)
{
    free(p);
}

/* ---- the destination ---- */

struct preempt_dest {
    int fd;
    const struct guest_memory *mem;
    mig_place_fn place;
    void *opaque;
    pthread_t thread;
};

static int dest_hello(int fd, struct error *err)
{
    char magic[8];
    int ret = transfer_all(fd, magic, sizeof(magic), false);
    if (ret < 0) {
        return error_set_errno(err, ret, "post-copy preempt channel");
    }
    if (memcmp(magic, PREEMPT_MAGIC, 8) != 0) {
        return error_set(err, -EPROTO, "post-copy preempt channel: the connection is not one");
    }
    return 0;
}

static int receive_page(struct preempt_dest *p, uint8_t *msg, struct error *err)
{
    int ret = transfer_all(p->fd, msg, MSG, false);
    if (ret < 0) {
        return ret == -EPIPE ? 1 : error_set_errno(err, ret, "post-copy preempt channel");
    }
    uint64_t gpa = ld_le64(msg);
    int region;
    uint64_t page;
    if (!mig_page_index(p->mem, gpa, &region, &page) || ld_le32(msg + 12) != 0 ||
        ld_le32(msg + 8) != (uint32_t)crc32(crc32(0, NULL, 0), msg + HEADER, GUEST_PAGE_SIZE)) {
        return error_set(err, -EPROTO, "post-copy preempt channel: malformed page 0x%llx", (unsigned long long)gpa);
    }
    return p->place(p->opaque, gpa, msg + HEADER, err);
}

static void *dest_main(void *opaque)
{
    struct preempt_dest *p = opaque;
    uint8_t *msg = malloc(MSG);
    struct error err = { 0 };
    mig_thread_latency();
    int ret = msg ? dest_hello(p->fd, &err) : error_set(&err, -ENOMEM, "out of memory");
    while (ret == 0) {
        ret = receive_page(p, msg, &err);
    }
    if (ret < 0) {
        /* The main stream still brings every page; requests wait longer. */
        log_warn("post-copy preempt channel: %s", err.msg);
    }
    free(msg);
    return NULL;
}

int preempt_dest_start(struct preempt_dest **out, int fd, const struct guest_memory *mem, mig_place_fn place,
                       void *opaque, struct error *err)
{
    struct preempt_dest *p = calloc(1, sizeof(*p));
    if (!p) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    *p = (struct preempt_dest){ .fd = fd, .mem = mem, .place = place, .opaque = opaque };
    if (pthread_create(&p->thread, NULL, dest_main, p) != 0) {
        free(p);
        return error_set(err, -EAGAIN, "cannot start the post-copy preempt thread");
    }
    *out = p;
    return 0;
}

/* Before the pages' home goes (postcopy_dest_stop); the fd stays the caller's. */
void preempt_dest_stop(struct preempt_dest *p)
{
    if (!p) {
        return;
    }
    shutdown(p->fd, SHUT_RDWR);
    pthread_join(p->thread, NULL);
    free(p);
}
