/* The bzImage payload decoder: what the kernel's build writes (xz with the
 * x86 BCJ filter, legacy lzma, zstd, each followed by the decompressed size;
 * plain gzip, whose ISIZE trailer is that size) comes back byte for byte; corrupt, truncated, oversized and unknown
 * payloads are refused with an error, never read out of bounds. */
#include <errno.h>
#include <lzma.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <cmocka.h>

#include "vmm/boot.h"

#define PLAIN_SIZE (3u << 20)

static uint8_t *plain(void)
{
    static uint8_t *p;
    if (!p) {
        p = malloc(PLAIN_SIZE);
        uint64_t seed = 7;
        for (size_t i = 0; i < PLAIN_SIZE; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            p[i] = i % 4096 < 2048 ? (uint8_t)(seed >> 60) : (uint8_t)(i / 4096);  /* half noise, half runs */
        }
    }
    return p;
}

/* Appends the little-endian size as the kernel's Makefile does. */
static size_t append_size(uint8_t *buf, size_t n)
{
    for (int i = 0; i < 4; i++) {
        buf[n + i] = (uint8_t)(PLAIN_SIZE >> (8 * i));
    }
    return n + 4;
}

static size_t make_xz(uint8_t *out, size_t cap, bool legacy_lzma)
{
    lzma_options_lzma opt;
    lzma_lzma_preset(&opt, 6);
    lzma_stream s = LZMA_STREAM_INIT;
    if (legacy_lzma) {
        assert_int_equal(lzma_alone_encoder(&s, &opt), LZMA_OK);
    } else {
        lzma_filter filters[] = { { LZMA_FILTER_X86, NULL }, { LZMA_FILTER_LZMA2, &opt },
                                  { LZMA_VLI_UNKNOWN, NULL } };
        assert_int_equal(lzma_stream_encoder(&s, filters, LZMA_CHECK_CRC32), LZMA_OK);
    }
    s.next_in = plain();
    s.avail_in = PLAIN_SIZE;
    s.next_out = out;
    s.avail_out = cap - 4;
    assert_int_equal(lzma_code(&s, LZMA_FINISH), LZMA_STREAM_END);
    size_t n = cap - 4 - s.avail_out;
    lzma_end(&s);
    return append_size(out, n);
}

/* Plain gzip, as the kernel's build writes it: its ISIZE trailer is the size. */
static size_t make_gzip(uint8_t *out, size_t cap)
{
    z_stream s = { 0 };
    assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = plain();
    s.avail_in = PLAIN_SIZE;
    s.next_out = out;
    s.avail_out = (uInt)(cap - 4);
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    size_t n = cap - 4 - s.avail_out;
    deflateEnd(&s);
    return n;
}

static size_t make_zstd(uint8_t *out, size_t cap)
{
    size_t n = ZSTD_compress(out, cap - 4, plain(), PLAIN_SIZE, 19);
    assert_false(ZSTD_isError(n));
    return append_size(out, n);
}

static size_t make(int format, uint8_t *out, size_t cap)
{
    switch (format) {
    case 0: return make_xz(out, cap, false);
    case 1: return make_xz(out, cap, true);
    case 2: return make_gzip(out, cap);
    default: return make_zstd(out, cap);
    }
}

/* Each format: the payload comes back whole, then damaged copies fail. */
static void test_formats(void **state)
{
    (void)state;
    size_t cap = PLAIN_SIZE * 2;
    uint8_t *packed = malloc(cap);
    for (int format = 0; format < 4; format++) {
        size_t n = make(format, packed, cap);
        uint8_t *out = NULL;
        size_t out_len = 0;
        struct error err = { 0 };
        assert_int_equal(boot_payload_decompress(packed, n, 64u << 20, &out, &out_len, &err), 0);
        assert_int_equal(out_len, PLAIN_SIZE);
        assert_memory_equal(out, plain(), PLAIN_SIZE);
        free(out);
        out = NULL;
        /* Cut short: the stream ends early; the size field is whatever bytes
         * now sit at the end. */
        assert_true(boot_payload_decompress(packed, n / 2, 64u << 20, &out, &out_len, &err) < 0);
        assert_true(strlen(err.msg) > 0);
        /* A size larger than allowed. */
        err = (struct error){ 0 };
        assert_int_equal(boot_payload_decompress(packed, n, PLAIN_SIZE - 1, &out, &out_len, &err), -EFBIG);
        /* A size field that disagrees with the stream. */
        packed[n - 4] ^= 1;
        assert_true(boot_payload_decompress(packed, n, 64u << 20, &out, &out_len, &err) < 0);
        packed[n - 4] ^= 1;
        /* Flipped bytes in the middle of the stream: xz and gzip carry a
         * CRC and must notice; legacy lzma and a zstd frame without checksum
         * may decode to garbage of the right size (the ELF loader judges
         * that), but never more than the size field says. */
        for (size_t i = n / 3; i < n / 3 + 64; i++) {
            packed[i] ^= 0x5a;
        }
        err = (struct error){ 0 };
        int ret = boot_payload_decompress(packed, n, 64u << 20, &out, &out_len, &err);
        if (format == 0 || format == 2) {
            assert_true(ret < 0);
            assert_non_null(strstr(err.msg, "corrupt"));
        } else if (ret == 0) {
            assert_int_equal(out_len, PLAIN_SIZE);
            free(out);
        }
    }
    free(packed);
}

static void test_unknown_format(void **state)
{
    (void)state;
    uint8_t junk[64] = { 'B', 'Z', 'h', '9' };  /* bzip2: not read by the host */
    uint8_t *out = NULL;
    size_t out_len = 0;
    struct error err = { 0 };
    assert_int_equal(boot_payload_decompress(junk, sizeof(junk), 1u << 20, &out, &out_len, &err), -ENOTSUP);
    assert_int_equal(boot_payload_decompress(junk, 3, 1u << 20, &out, &out_len, &err), -ENOTSUP);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_unknown_format),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(plain());
    return failed;
}
