/* Writes the seed inputs of the fuzz targets whose inputs are protocols or
 * memory layouts (fuzz/corpus/<target>/): a well-formed NBD session, a
 * VM-state stream, a virtqueue with chained descriptors. Built and run by
 * fuzz/run.sh --seeds; the files are kept in the repository. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd/nbd_proto.h"
#include "state/vmstate_stream.h"
#include "util/bswap.h"

static void save(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static size_t put_option(uint8_t *p, uint32_t opt, const void *data, uint32_t len)
{
    st_be64(p, NBD_OPTS_MAGIC);
    st_be32(p + 8, opt);
    st_be32(p + 12, len);
    if (len) {
        memcpy(p + 16, data, len);
    }
    return 16 + len;
}

static size_t put_request(uint8_t *p, uint16_t flags, uint16_t type, uint64_t off, uint32_t len)
{
    st_be32(p, NBD_REQUEST_MAGIC);
    st_be16(p + 4, flags);
    st_be16(p + 6, type);
    st_be64(p + 8, 0x1122334455667788ull);
    st_be64(p + 16, off);
    st_be32(p + 24, len);
    return 28;
}

static void nbd_seeds(const char *dir)
{
    uint8_t s[8192] = { 0 };
    size_t n = 0;
    st_be32(s, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    n = 4;
    n += put_option(s + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    uint8_t meta[64];
    st_be32(meta, 4);
    memcpy(meta + 4, "disk", 4);
    st_be32(meta + 8, 1);
    st_be32(meta + 12, 15);
    memcpy(meta + 16, "base:allocation", 15);
    n += put_option(s + n, NBD_OPT_SET_META_CONTEXT, meta, 31);
    n += put_option(s + n, NBD_OPT_LIST, NULL, 0);
    uint8_t go[16];
    st_be32(go, 4);
    memcpy(go + 4, "disk", 4);
    st_be16(go + 8, 1);
    st_be16(go + 10, 3);        /* NBD_INFO_BLOCK_SIZE */
    n += put_option(s + n, NBD_OPT_GO, go, 12);
    size_t handshake = n;
    n += put_request(s + n, 0, NBD_CMD_WRITE, 4096, 512);
    memset(s + n, 0x5a, 512);
    n += 512;
    n += put_request(s + n, 0, NBD_CMD_READ, 0, 8192);
    n += put_request(s + n, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 4096);
    n += put_request(s + n, 0, NBD_CMD_BLOCK_STATUS, 0, 1 << 20);
    n += put_request(s + n, 0, NBD_CMD_WRITE_ZEROES, 8192, 65536);
    n += put_request(s + n, 0, NBD_CMD_TRIM, 0, 4096);
    n += put_request(s + n, 0, NBD_CMD_FLUSH, 0, 0);
    n += put_request(s + n, 0, NBD_CMD_DISC, 0, 0);
    save(dir, "session", s, n);
    save(dir, "handshake-only", s, handshake);
    uint8_t old[64];
    st_be32(old, NBD_FLAG_C_FIXED_NEWSTYLE);
    size_t m = 4 + put_option(old + 4, NBD_OPT_EXPORT_NAME, "disk", 4);
    save(dir, "export-name", old, m);
}

static void vmstate_seeds(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/stream", dir);
    FILE *f = fopen(path, "w+b");
    int fd = f ? fileno(f) : -1;
    struct vmstate_writer w;
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t)(i * 13);
    }
    if (fd < 0 || vmstate_writer_begin(&w, vmstate_fd_io(&fd), NULL) < 0 ||
        vmstate_write_section(&w, "uart", 1, payload, 40, NULL) < 0 ||
        vmstate_write_section(&w, "cmos-rtc", 1, payload, 128, NULL) < 0 ||
        vmstate_write_section(&w, "ram", 3, payload, sizeof(payload), NULL) < 0 ||
        vmstate_write_section(&w, "empty", 1, NULL, 0, NULL) < 0 ||
        vmstate_writer_finish(&w, NULL) < 0) {
        perror("vmstate seed");
        exit(1);
    }
    vmstate_writer_free(&w);
    fclose(f);
}

/* Layout (see fuzz/virtqueue.c): 16 bytes of parameters, then guest memory
 * from address 0: descriptors at 0x1000, avail at 0x2000, used at 0x3000. */
static void virtqueue_seeds(const char *dir)
{
    enum { SIZE = 16, DESC = 0x1000, AVAIL = 0x2000, USED = 0x3000, BUF = 0x4000 };
    static uint8_t s[16 + 0x5000];
    st_le16(s, SIZE);
    st_le32(s + 2, DESC);
    st_le32(s + 6, AVAIL);
    st_le32(s + 10, USED);
    s[14] = 1;                  /* EVENT_IDX */
    uint8_t *mem = s + 16;
    for (int i = 0; i < 6; i++) {   /* two chains of three: out, out, in */
        uint8_t *d = mem + DESC + 16 * i;
        st_le64(d, BUF + 256 * (uint64_t)i);
        st_le32(d + 8, 200);
        st_le16(d + 12, (i % 3 != 2 ? 1 : 0) | (i % 3 == 2 ? 2 : 0));
        st_le16(d + 14, (uint16_t)(i + 1));
    }
    st_le16(mem + AVAIL + 2, 2);     /* idx */
    st_le16(mem + AVAIL + 4, 0);
    st_le16(mem + AVAIL + 6, 3);
    save(dir, "two-chains", s, sizeof(s));
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: make_seeds NBD_DIR VMSTATE_DIR VIRTQUEUE_DIR\n");
        return 2;
    }
    nbd_seeds(argv[1]);
    vmstate_seeds(argv[2]);
    virtqueue_seeds(argv[3]);
    return 0;
}
