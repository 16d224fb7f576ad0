/* The migration stream's own sections and the return path's messages.
 * Everything read here comes from the network: every count, length and
 * address is checked before use. */
#include "migration/migration_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/bswap.h"
#include "util/log.h"
#include "util/zero.h"

uint64_t mig_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool mig_page_index(const struct guest_memory *mem, uint64_t gpa, int *region, uint64_t *page)
{
    if (gpa & (GUEST_PAGE_SIZE - 1)) {
        return false;
    }
    for (int i = 0; i < mem->count; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size) {
            *region = i;
            *page = (gpa - r->gpa) / GUEST_PAGE_SIZE;
            return true;
        }
    }
    return false;
}

/* ---- the socket as a stream ---- */

/* send with MSG_NOSIGNAL: a destination that went away is an error here,
 * not a SIGPIPE that ends the source's VM. */
static int sock_write(void *opaque, uint64_t pos, const void *buf, size_t len, struct error *err)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(*(int *)opaque, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return error_set_errno(err, n < 0 ? -errno : -EIO, "sending the migration stream");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

struct vmstate_io mig_socket_io(int *fd)
{
    struct vmstate_io io = vmstate_pipe_io(fd);
    io.write = sock_write;
    return io;
}

/* ---- return path ---- */

int mig_rp_send(int fd, const struct mig_rp_msg *msg, struct error *err)
{
    uint8_t buf[MIG_RP_SIZE] = { 0 };
    st_le32(buf, msg->type);
    st_le64(buf + 8, msg->arg);
    /* All of text, as bytes: RESUME_BITS carries bitmap words there, whose
     * zero bytes are data (cut at the first one, the source never learnt
     * of pages lost in flight, issue #12). */
    memcpy(buf + 16, msg->text, sizeof(msg->text));
    size_t done = 0;
    while (done < sizeof(buf)) {
        ssize_t n = send(fd, buf + done, sizeof(buf) - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return error_set_errno(err, n < 0 ? -errno : -EIO, "migration return path");
        }
        done += (size_t)n;
    }
    return 0;
}

/* ERROR's text, the only one that is a string, goes into the source's
 * log and query-migrate's error-desc: printable ASCII only. A peer's bytes
 * could be anything (escape sequences in the log, invalid UTF-8 that
 * drops error-desc from the JSON), and even an honest destination's
 * message may be cut inside a UTF-8 sequence by the message's size. */
static void printable_text(char *text, size_t size)
{
    text[size - 1] = 0;
    for (char *c = text; *c; c++) {
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) {
            *c = '?';
        }
    }
}

int mig_rp_recv(int fd, struct mig_rp_msg *msg, struct error *err)
{
    uint8_t buf[MIG_RP_SIZE];
    size_t done = 0;
    while (done < sizeof(buf)) {
        ssize_t n = recv(fd, buf + done, sizeof(buf) - done, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return error_set_errno(err, -errno, "migration return path");
        }
        if (n == 0) {
            return error_set(err, -EPIPE, "the migration destination closed the connection");
        }
        done += (size_t)n;
    }
    msg->type = ld_le32(buf);
    msg->arg = ld_le64(buf + 8);
    memcpy(msg->text, buf + 16, sizeof(msg->text));
    if (msg->type == MIG_RP_ERROR) {
        printable_text(msg->text, sizeof(msg->text));
    }
    if (msg->type < MIG_RP_SETUP_OK || msg->type > MIG_RP_RESUME_END) {
        return error_set(err, -EPROTO, "migration return path: unknown message type %u", msg->type);
    }
    return 0;
}

/* ---- setup ---- */

int mig_setup_write(struct vmstate_writer *w, const struct guest_memory *mem, unsigned flags, struct error *err)
{
    uint8_t buf[4 + 4 + 1 + GUEST_MEM_MAX_REGIONS * 16];
    size_t len = 0;
    st_le32(buf, MIG_PROTOCOL_VERSION);
    st_le32(buf + 4, (uint32_t)mem->count);
    buf[8] = (uint8_t)flags;
    len = 9;
    for (int i = 0; i < mem->count; i++) {
        st_le64(buf + len, mem->regions[i].gpa);
        st_le64(buf + len + 8, mem->regions[i].size);
        len += 16;
    }
    return vmstate_write_section(w, MIG_SECTION_SETUP, 1, buf, len, err);
}

int mig_setup_read(struct vmstate_reader *r, const struct guest_memory *mem, struct mig_setup *out,
                   struct error *err)
{
    uint8_t buf[9 + GUEST_MEM_MAX_REGIONS * 16];
    if (strcmp(r->section, MIG_SECTION_SETUP) != 0 || r->section_version != 1 || r->section_left < 9 ||
        r->section_left > sizeof(buf)) {
        return error_set(err, -EPROTO, "migration stream: expected '%s', got '%s' (%llu bytes)",
                         MIG_SECTION_SETUP, r->section, (unsigned long long)r->section_left);
    }
    size_t len = (size_t)r->section_left;
    int ret;
    if ((ret = vmstate_section_read(r, buf, len, err)) < 0 || (ret = vmstate_section_finish(r, err)) < 0) {
        return ret;
    }
    uint32_t version = ld_le32(buf), count = ld_le32(buf + 4);
    if (version != MIG_PROTOCOL_VERSION) {
        return error_set(err, -ENOTSUP, "migration protocol version %u; this cowvisor speaks %u", version,
                         MIG_PROTOCOL_VERSION);
    }
    if (count != (uint32_t)mem->count || len != 9 + count * 16) {
        return error_set(err, -EINVAL, "the source has %u RAM regions, this machine %d", count, mem->count);
    }
    out->count = (int)count;
    if (buf[8] & ~(MIG_SETUP_POSTCOPY | MIG_SETUP_MEMFD | MIG_SETUP_DISKS | MIG_SETUP_PREEMPT)) {
        return error_set(err, -ENOTSUP, "migration setup has unknown flags 0x%x", buf[8]);
    }
    out->postcopy = buf[8] & MIG_SETUP_POSTCOPY;
    out->memfd = buf[8] & MIG_SETUP_MEMFD;
    out->disks = buf[8] & MIG_SETUP_DISKS;
    out->preempt = buf[8] & MIG_SETUP_PREEMPT;
    for (int i = 0; i < out->count; i++) {
        out->gpa[i] = ld_le64(buf + 9 + i * 16);
        out->size[i] = ld_le64(buf + 9 + i * 16 + 8);
        if (out->gpa[i] != mem->regions[i].gpa || out->size[i] != mem->regions[i].size) {
            return error_set(err, -EINVAL, "source RAM region %d is %llu bytes at 0x%llx; here %llu at 0x%llx", i,
                             (unsigned long long)out->size[i], (unsigned long long)out->gpa[i],
                             (unsigned long long)mem->regions[i].size, (unsigned long long)mem->regions[i].gpa);
        }
    }
    return 0;
}

/* ---- same-host: memfds ---- */

int mig_send_memfds(int sock, const struct guest_memory *mem, struct error *err)
{
    int fds[GUEST_MEM_MAX_REGIONS];
    for (int i = 0; i < mem->count; i++) {
        if (mem->regions[i].file_mapped) {
            return error_set(err, -ENOTSUP, "guest RAM region %d is a snapshot file mapped privately: "
                             "its memfd does not hold it", i);
        }
        fds[i] = mem->regions[i].memfd;
    }
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof(u));
    char byte = 'M';
    struct iovec iov = { &byte, 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                          .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)mem->count) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)mem->count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)mem->count);
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : error_set_errno(err, n < 0 ? -errno : -EIO, "passing guest RAM's memfds");
}

/* Maps fd over region r (its size checked), in place of its own memfd. */
static int map_region(struct guest_region *r, int fd, struct error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < r->size) {
        return error_set(err, -EINVAL, "the source's guest RAM file is not a %llu-byte file",
                         (unsigned long long)r->size);
    }
    if (mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd, 0) == MAP_FAILED) {
        return error_set_errno(err, -errno, "mapping the source's guest RAM");
    }
    close(r->memfd);
    r->memfd = fd;
    return 0;
}

int mig_recv_memfds(int sock, struct guest_memory *mem, struct error *err)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * GUEST_MEM_MAX_REGIONS)];
        struct cmsghdr align;
    } u;
    char byte;
    struct iovec iov = { &byte, 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        return error_set_errno(err, n < 0 ? -errno : -EPIPE, "receiving guest RAM's memfds");
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fds[GUEST_MEM_MAX_REGIONS], nfds = 0;
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(0)) {
        nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        nfds = nfds > GUEST_MEM_MAX_REGIONS ? GUEST_MEM_MAX_REGIONS : nfds;
        memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
    }
    int ret = (msg.msg_flags & MSG_CTRUNC) || byte != 'M' || nfds != mem->count
            ? error_set(err, -EPROTO, "expected %d memfds of guest RAM, got %d", mem->count, nfds) : 0;
    int i = 0;
    for (; ret == 0 && i < nfds; i++) {
        ret = map_region(&mem->regions[i], fds[i], err);
    }
    for (i = ret < 0 ? i - 1 : nfds; i < nfds; i++) {
        if (i >= 0) {
            close(fds[i]);
        }
    }
    return ret;
}

/* ---- page batches ---- */

void mig_batch_reset(struct mig_batch *b)
{
    b->count = 0;
}

void mig_batch_add(struct mig_batch *b, const struct guest_memory *mem, uint64_t gpa)
{
    const uint8_t *p = guest_memory_ptr(mem, gpa, GUEST_PAGE_SIZE);
    uint8_t *dst = b->data[b->count];
    memcpy(dst, p, GUEST_PAGE_SIZE);
    b->entry[b->count++] = gpa | (mem_is_zero(dst, GUEST_PAGE_SIZE) ? MIG_PAGE_ZERO : 0);
}

int64_t mig_batch_write(struct mig_batch *b, struct vmstate_writer *w, struct error *err)
{
    uint64_t len = 4;
    for (int i = 0; i < b->count; i++) {
        len += 8 + ((b->entry[i] & MIG_PAGE_ZERO) ? 0 : GUEST_PAGE_SIZE);
    }
    uint8_t hdr[8];
    st_le32(hdr, (uint32_t)b->count);
    int ret = vmstate_section_begin(w, MIG_SECTION_RAM, 1, len, err);
    if (ret == 0) {
        ret = vmstate_section_write(w, hdr, 4, err);
    }
    for (int i = 0; ret == 0 && i < b->count; i++) {
        st_le64(hdr, b->entry[i]);
        ret = vmstate_section_write(w, hdr, 8, err);
        if (ret == 0 && !(b->entry[i] & MIG_PAGE_ZERO)) {
            ret = vmstate_section_write(w, b->data[i], GUEST_PAGE_SIZE, err);
            b->normal++;
        } else if (ret == 0) {
            b->zero++;
        }
    }
    if (ret == 0) {
        ret = vmstate_section_end(w, err);
    }
    return ret < 0 ? ret : (int64_t)(len + VMSTATE_SECTION_HEADER_SIZE + 4);
}

int mig_ram_read(struct vmstate_reader *r, const struct guest_memory *mem, mig_place_fn place, void *opaque,
                 struct error *err)
{
    uint8_t hdr[8];
    if (r->section_version != 1 || r->section_left < 4) {
        return error_set(err, -EPROTO, "migration stream: malformed '%s' section", MIG_SECTION_RAM);
    }
    int ret = vmstate_section_read(r, hdr, 4, err);
    uint32_t count = ret == 0 ? ld_le32(hdr) : 0;
    uint8_t *page = malloc(GUEST_PAGE_SIZE);
    if (!page) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; ret == 0 && i < count; i++) {
        if (r->section_left < 8) {
            ret = error_set(err, -EPROTO, "migration stream: page batch shorter than its %u pages", count);
            break;
        }
        if ((ret = vmstate_section_read(r, hdr, 8, err)) < 0) {
            break;
        }
        uint64_t e = ld_le64(hdr), gpa = e & ~MIG_PAGE_FLAGS;
        int region;
        uint64_t idx;
        if ((e & MIG_PAGE_FLAGS & ~MIG_PAGE_ZERO) || !mig_page_index(mem, gpa, &region, &idx)) {
            ret = error_set(err, -EPROTO, "migration stream: page entry 0x%llx is not guest RAM",
                            (unsigned long long)e);
            break;
        }
        bool zero = e & MIG_PAGE_ZERO;
        if (!zero && (r->section_left < GUEST_PAGE_SIZE ||
                      (ret = vmstate_section_read(r, page, GUEST_PAGE_SIZE, err)) < 0)) {
            ret = ret < 0 ? ret : error_set(err, -EPROTO, "migration stream: page batch ends inside a page");
            break;
        }
        ret = place(opaque, gpa, zero ? NULL : page, err);
    }
    free(page);
    if (ret == 0 && r->section_left) {
        ret = error_set(err, -EPROTO, "migration stream: %llu bytes after a page batch",
                        (unsigned long long)r->section_left);
    }
    return ret < 0 ? ret : vmstate_section_finish(r, err);
}

void mig_thread_background(void)
{
    /* Raising one's own nice value needs no privilege; failing costs only latency. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) < 0) {
        log_debug("post-copy: cannot lower the bulk thread's priority");
    }
}

void mig_thread_latency(void)
{
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), -10) < 0) {
        log_debug("post-copy: cannot raise the priority of a thread on the fault path");
    }
}
