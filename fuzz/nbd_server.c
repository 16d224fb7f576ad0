/* libFuzzer target: any bytes as what an NBD client sends: the fixed
 * newstyle handshake (options of every kind and length) and then requests
 * (reads, writes, zeroes, trims, block status, structured replies). The
 * server serves a small scratch image and must drop bad clients with an
 * error, never crash, overrun or allocate what a length field claims. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "nbd/nbd_export.h"
#include "nbd/nbd_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

static struct nbd_export exp;
static struct blockdev *bd;

static int setup(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/cowvisor-fuzz-nbd-%d.raw", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || ftruncate(fileno(f), 1 << 20) < 0) {
        return -1;
    }
    fclose(f);
    struct blockdev_open_opts o = { .format = "raw", .flags = BDEV_NO_LOCK | BDEV_NO_FLUSH };
    if (blockdev_open(&bd, path, &o, NULL) < 0) {
        return -1;
    }
    unlink(path);
    struct nbd_export_opts eo = { .name = "disk", .description = "fuzz", .allocation_depth = true,
                                  .discard_unmap = true };
    return nbd_export_init(&exp, bd, &eo, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (setup() < 0) {
            return 0;
        }
        ready = 1;
    }
    int sv[2];
    if (size > 60000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        return 0;
    }
    /* The client's bytes are all there at once; replies drain elsewhere. */
    if (write(sv[0], data, size) != (ssize_t)size) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    shutdown(sv[0], SHUT_WR);
    pthread_t t;
    pthread_create(&t, NULL, drain, &sv[0]);
    bool negotiated;
    nbd_serve_client(&exp, sv[1], &negotiated, NULL);
    shutdown(sv[1], SHUT_RDWR);
    pthread_join(t, NULL);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
