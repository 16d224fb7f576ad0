/* The NBD server library in-process: a server thread on one end of a
 * socketpair, the test speaking the protocol on the other, a raw image in a
 * temporary file underneath. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/blockdev.h"
#include "nbd/nbd_export.h"
#include "nbd/nbd_proto.h"
#include "nbd/nbd_server.h"
#include "util/bswap.h"

#define DISK_SIZE (1u << 20)

struct fixture {
    char path[64];
    struct blockdev *bd;
    struct nbd_export exp;
    int fd;                 /* the client's end */
    int server_fd;
    pthread_t thread;
    int server_ret;
    bool negotiated;
};

static void *server_thread(void *arg)
{
    struct fixture *f = arg;
    struct error err = {0};
    f->server_ret = nbd_serve_client(&f->exp, f->server_fd, &f->negotiated, &err);
    close(f->server_fd);
    return NULL;
}

static struct fixture *start(bool read_only)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->path, "/tmp/test_nbd_server.XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
    struct error err = {0};
    struct blockdev_open_opts o = { .format = "raw", .flags = read_only ? BDEV_READ_ONLY : 0 };
    assert_int_equal(blockdev_open(&f->bd, f->path, &o, &err), 0);
    struct nbd_export_opts eo = { .name = "disk", .description = "a disk", .read_only = read_only,
                                  .discard_unmap = true };
    assert_int_equal(nbd_export_init(&f->exp, f->bd, &eo, &err), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    f->fd = sv[0];
    f->server_fd = sv[1];
    assert_int_equal(pthread_create(&f->thread, NULL, server_thread, f), 0);
    return f;
}

/* After the server thread was joined. */
static void release(struct fixture *f)
{
    close(f->fd);
    nbd_export_destroy(&f->exp);
    blockdev_close(f->bd);
    unlink(f->path);
    free(f);
}

static void finish(struct fixture *f)
{
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    release(f);
}

static void recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_all(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void handshake(struct fixture *f)
{
    uint8_t g[18], flags[4];
    recv_all(f->fd, g, sizeof(g));
    assert_memory_equal(g, "NBDMAGICIHAVEOPT", 16);
    assert_int_equal(ld_be16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    st_be32(flags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_all(f->fd, flags, 4);
}

static void send_option(struct fixture *f, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    st_be64(h, NBD_OPTS_MAGIC);
    st_be32(h + 8, opt);
    st_be32(h + 12, len);
    send_all(f->fd, h, sizeof(h));
    if (len) {
        send_all(f->fd, data, len);
    }
}

/* Reads one option reply; returns its type, payload into buf. */
static uint32_t option_reply(struct fixture *f, uint32_t opt, uint8_t *buf, uint32_t *len)
{
    uint8_t h[20];
    recv_all(f->fd, h, sizeof(h));
    assert_true(ld_be64(h) == NBD_REP_MAGIC);
    assert_int_equal(ld_be32(h + 8), opt);
    *len = ld_be32(h + 16);
    assert_true(*len < 8192);
    recv_all(f->fd, buf, *len);
    return ld_be32(h + 12);
}

static void go(struct fixture *f, const char *name, uint16_t *flags)
{
    uint8_t p[64], r[8192];
    uint32_t n = (uint32_t)strlen(name), len, type;
    st_be32(p, n);
    memcpy(p + 4, name, n);
    st_be16(p + 4 + n, 0);
    send_option(f, NBD_OPT_GO, p, n + 6);
    bool saw_export = false;
    while ((type = option_reply(f, NBD_OPT_GO, r, &len)) == NBD_REP_INFO) {
        if (ld_be16(r) == NBD_INFO_EXPORT) {
            assert_int_equal(ld_be64(r + 2), DISK_SIZE);
            *flags = ld_be16(r + 10);
            saw_export = true;
        }
    }
    assert_int_equal(type, NBD_REP_ACK);
    assert_true(saw_export);
}

static void request(struct fixture *f, uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
                    const void *data)
{
    uint8_t h[NBD_REQUEST_SIZE];
    st_be32(h, NBD_REQUEST_MAGIC);
    st_be16(h + 4, flags);
    st_be16(h + 6, type);
    st_be64(h + 8, 0x1234);
    st_be64(h + 16, off);
    st_be32(h + 24, len);
    send_all(f->fd, h, sizeof(h));
    if (type == NBD_CMD_WRITE) {
        send_all(f->fd, data, len);
    }
}

static uint32_t simple_reply(struct fixture *f, void *data, size_t len)
{
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    recv_all(f->fd, h, sizeof(h));
    assert_int_equal(ld_be32(h), NBD_SIMPLE_REPLY_MAGIC);
    assert_true(ld_be64(h + 8) == 0x1234);
    uint32_t err = ld_be32(h + 4);
    if (err == 0 && len) {
        recv_all(f->fd, data, len);
    }
    return err;
}

static void test_export_flags(void **state)
{
    struct fixture *f = start(false);
    assert_int_equal(f->exp.flags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                     NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                     NBD_FLAG_SEND_FAST_ZERO);
    finish(f);
    f = start(true);
    assert_int_equal(f->exp.flags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                     NBD_FLAG_SEND_CACHE | NBD_FLAG_READ_ONLY);
    finish(f);
}

static void test_errno_mapping(void **state)
{
    assert_int_equal(nbd_errno_to_wire(0), 0);
    assert_int_equal(nbd_errno_to_wire(EROFS), NBD_EPERM);
    assert_int_equal(nbd_errno_to_wire(EIO), NBD_EIO);
    assert_int_equal(nbd_errno_to_wire(EFBIG), NBD_ENOSPC);
    assert_int_equal(nbd_errno_to_wire(EOPNOTSUPP), NBD_ENOTSUP);
    assert_int_equal(nbd_errno_to_wire(ENOENT), NBD_EINVAL);
    assert_string_equal(nbd_opt_name(NBD_OPT_GO), "go");
    assert_string_equal(nbd_opt_name(77), "<unknown>");
    assert_string_equal(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "block status");
}

/* Simple replies: write, read back, flush, trim, out of range, disconnect. */
static void test_simple_session(void **state)
{
    struct fixture *f = start(false);
    handshake(f);
    uint16_t flags;
    go(f, "disk", &flags);
    assert_false(flags & NBD_FLAG_SEND_DF);     /* no structured replies asked */
    uint8_t data[4096], back[4096];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7);
    }
    request(f, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 12345, sizeof(data), data);
    assert_int_equal(simple_reply(f, NULL, 0), 0);
    request(f, NBD_CMD_READ, 0, 12345, sizeof(back), NULL);
    assert_int_equal(simple_reply(f, back, sizeof(back)), 0);
    assert_memory_equal(data, back, sizeof(data));
    request(f, NBD_CMD_FLUSH, 0, 0, 0, NULL);
    assert_int_equal(simple_reply(f, NULL, 0), 0);
    request(f, NBD_CMD_TRIM, 0, 12345, 4096, NULL);
    assert_int_equal(simple_reply(f, NULL, 0), 0);
    request(f, NBD_CMD_READ, 0, 12345, 16, NULL);
    assert_int_equal(simple_reply(f, back, 16), 0);
    assert_true(back[0] == 0 && back[15] == 0);
    request(f, NBD_CMD_READ, 0, DISK_SIZE - 1, 2, NULL);
    assert_int_equal(simple_reply(f, NULL, 0), NBD_EINVAL);
    request(f, NBD_CMD_DISC, 0, 0, 0, NULL);
    pthread_join(f->thread, NULL);
    assert_int_equal(f->server_ret, 0);
    assert_true(f->negotiated);
    release(f);
}

/* Structured replies and base:allocation over a sparse raw file. */
static void test_structured_block_status(void **state)
{
    struct fixture *f = start(false);
    handshake(f);
    uint8_t r[8192];
    uint32_t len;
    send_option(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(option_reply(f, NBD_OPT_STRUCTURED_REPLY, r, &len), NBD_REP_ACK);
    uint8_t q[64];
    const char *ctx = "base:allocation";
    st_be32(q, 4);
    memcpy(q + 4, "disk", 4);
    st_be32(q + 8, 1);
    st_be32(q + 12, (uint32_t)strlen(ctx));
    memcpy(q + 16, ctx, strlen(ctx));
    send_option(f, NBD_OPT_SET_META_CONTEXT, q, 16 + (uint32_t)strlen(ctx));
    assert_int_equal(option_reply(f, NBD_OPT_SET_META_CONTEXT, r, &len), NBD_REP_META_CONTEXT);
    assert_int_equal(ld_be32(r), NBD_META_ID_BASE_ALLOCATION);
    assert_memory_equal(r + 4, ctx, strlen(ctx));
    assert_int_equal(option_reply(f, NBD_OPT_SET_META_CONTEXT, r, &len), NBD_REP_ACK);
    uint16_t flags;
    go(f, "disk", &flags);
    assert_true(flags & NBD_FLAG_SEND_DF);

    uint8_t data[65536];
    memset(data, 0xab, sizeof(data));
    request(f, NBD_CMD_WRITE, 0, 0, sizeof(data), data);
    uint8_t h[NBD_CHUNK_HEADER_SIZE];
    recv_all(f->fd, h, NBD_SIMPLE_REPLY_SIZE);
    assert_int_equal(ld_be32(h), NBD_SIMPLE_REPLY_MAGIC);
    assert_int_equal(ld_be32(h + 4), 0);

    request(f, NBD_CMD_BLOCK_STATUS, 0, 0, DISK_SIZE, NULL);
    recv_all(f->fd, h, sizeof(h));
    assert_int_equal(ld_be32(h), NBD_STRUCTURED_REPLY_MAGIC);
    assert_int_equal(ld_be16(h + 4), NBD_REPLY_FLAG_DONE);
    assert_int_equal(ld_be16(h + 6), NBD_REPLY_TYPE_BLOCK_STATUS);
    len = ld_be32(h + 16);
    assert_true(len >= 4 + 8 && len <= sizeof(r));
    recv_all(f->fd, r, len);
    assert_int_equal(ld_be32(r), NBD_META_ID_BASE_ALLOCATION);
    /* The written 64 KiB is data; the rest of the sparse file a zero hole. */
    assert_int_equal(ld_be32(r + 4), 65536);
    assert_int_equal(ld_be32(r + 8), 0);
    uint64_t total = 0;
    for (uint32_t i = 4; i < len; i += 8) {
        total += ld_be32(r + i);
    }
    assert_true(total == DISK_SIZE);
    assert_int_equal(ld_be32(r + len - 4), NBD_STATE_HOLE | NBD_STATE_ZERO);
    finish(f);
}

/* A hostile stream: bad request magic ends the session with an error. */
static void test_bad_magic_drops(void **state)
{
    struct fixture *f = start(true);
    handshake(f);
    uint16_t flags;
    go(f, "disk", &flags);
    assert_true(flags & NBD_FLAG_READ_ONLY);
    uint8_t junk[NBD_REQUEST_SIZE];
    memset(junk, 0x5a, sizeof(junk));
    send_all(f->fd, junk, sizeof(junk));
    pthread_join(f->thread, NULL);
    assert_int_equal(f->server_ret, -EINVAL);
    release(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_flags),
        cmocka_unit_test(test_errno_mapping),
        cmocka_unit_test(test_simple_session),
        cmocka_unit_test(test_structured_block_status),
        cmocka_unit_test(test_bad_magic_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
