/* The VM-state stream format: sections written are read back with their
 * names, versions and payloads; every kind of damage is refused with a
 * message naming it, never trusted. The stream lives in memory here. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "state/vmstate_stream.h"
#include "util/bswap.h"

struct mem_stream {
    uint8_t *data;
    size_t len, cap;
};

static int mem_write(void *opaque, uint64_t pos, const void *buf, size_t len, struct error *err)
{
    struct mem_stream *m = opaque;
    if (pos + len > m->cap) {
        size_t cap = (size_t)(pos + len) * 2;
        uint8_t *d = realloc(m->data, cap);
        if (!d) {
            return error_set(err, -ENOMEM, "out of memory");
        }
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + pos, buf, len);
    if (pos + len > m->len) {
        m->len = (size_t)(pos + len);
    }
    return 0;
}

static int mem_read(void *opaque, uint64_t pos, void *buf, size_t len, struct error *err)
{
    struct mem_stream *m = opaque;
    if (pos > m->len || len > m->len - pos) {
        return error_set(err, -EINVAL, "read past the end");
    }
    memcpy(buf, m->data + pos, len);
    return 0;
}

static uint8_t big[3 << 20];    /* larger than the writer's buffer */

/* A stream with three sections: "alpha" (5 bytes, v1), "big" (3 MiB, v2,
 * written in pieces) and "empty" (v7). */
static void write_stream(struct mem_stream *m)
{
    struct vmstate_writer w;
    struct error err = { 0 };
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 7 + (i >> 12));
    }
    assert_int_equal(vmstate_writer_begin(&w, (struct vmstate_io){ mem_write, mem_read, m, false }, &err), 0);
    assert_int_equal(vmstate_write_section(&w, "alpha", 1, "hello", 5, &err), 0);
    assert_int_equal(vmstate_section_begin(&w, "big", 2, sizeof(big), &err), 0);
    for (size_t off = 0; off < sizeof(big); off += 100000) {
        size_t n = sizeof(big) - off < 100000 ? sizeof(big) - off : 100000;
        assert_int_equal(vmstate_section_write(&w, big + off, n, &err), 0);
    }
    assert_int_equal(vmstate_section_end(&w, &err), 0);
    assert_int_equal(vmstate_write_section(&w, "empty", 7, NULL, 0, &err), 0);
    int64_t size = vmstate_writer_finish(&w, &err);
    assert_int_equal(size, (int64_t)m->len);
    vmstate_writer_free(&w);
}

/* Reads the whole stream back; returns 0 or the first error. */
static int read_stream(struct mem_stream *m, struct error *err)
{
    struct vmstate_reader r;
    uint8_t *data = NULL;
    size_t len;
    uint32_t version;
    int ret = vmstate_reader_begin(&r, (struct vmstate_io){ mem_write, mem_read, m, false }, m->len, err);
    if (ret == 0 && (ret = vmstate_read_section(&r, "alpha", 1, 1 << 20, &data, &len, &version, err)) == 0) {
        assert_int_equal(len, 5);
        assert_memory_equal(data, "hello", 5);
        free(data);
        ret = vmstate_read_section(&r, "big", 2, 4 << 20, &data, &len, &version, err);
        if (ret == 0) {
            assert_int_equal(len, sizeof(big));
            assert_int_equal(version, 2);
            assert_memory_equal(data, big, sizeof(big));
            free(data);
            ret = vmstate_read_section(&r, "empty", 7, 0, &data, &len, &version, err);
            free(data);
        }
    }
    if (ret == 0) {
        ret = vmstate_next_section(&r, err);
        assert_int_equal(ret, 1);   /* the end */
        ret = 0;
    }
    vmstate_reader_free(&r);
    return ret;
}

static void test_round_trip(void **state)
{
    struct mem_stream m = { 0 };
    struct error err = { 0 };
    write_stream(&m);
    assert_memory_equal(m.data, "COWVMSTA", 8);
    assert_int_equal(read_stream(&m, &err), 0);
    free(m.data);
}

/* Flips one byte at offset and expects the read to fail saying what. */
static void expect_damage(size_t offset, const char *message)
{
    struct mem_stream m = { 0 };
    struct error err = { 0 };
    write_stream(&m);
    m.data[offset] ^= 0x10;
    assert_true(read_stream(&m, &err) < 0);
    if (!strstr(err.msg, message)) {
        fail_msg("damage at %zu: '%s' does not say '%s'", offset, err.msg, message);
    }
    free(m.data);
}

static void test_damage_is_named(void **state)
{
    size_t alpha = VMSTATE_HEADER_SIZE;
    size_t big_hdr = alpha + VMSTATE_SECTION_HEADER_SIZE + 5 + 4;
    expect_damage(0, "bad magic");
    expect_damage(9, "header is corrupted");
    expect_damage(alpha + 1, "section header at byte 16 fails its checksum");
    expect_damage(alpha + VMSTATE_SECTION_HEADER_SIZE + 2, "section 'alpha' is corrupted (checksum mismatch)");
    expect_damage(big_hdr + 36, "fails its checksum");     /* the length */
    expect_damage(big_hdr + VMSTATE_SECTION_HEADER_SIZE + 2500000, "section 'big' is corrupted");
}

static void test_version_and_truncation(void **state)
{
    struct mem_stream m = { 0 };
    struct error err = { 0 };
    write_stream(&m);
    /* Another stream version with a valid header checksum. */
    struct mem_stream v = { malloc(m.len), m.len, m.len };
    memcpy(v.data, m.data, m.len);
    v.data[8] = 9;
    st_le32(v.data + 12, (uint32_t)crc32(0, v.data, 12));
    assert_int_equal(read_stream(&v, &err), -ENOTSUP);
    assert_string_equal(err.msg, "VM state version 9 is not supported (this cowvisor reads version 2)");
    v.data[8] = 1;      /* back to 1 without its checksum: corrupted */
    assert_true(read_stream(&v, &err) < 0);
    assert_non_null(strstr(err.msg, "header is corrupted"));
    free(v.data);
    /* Every truncation point is refused. */
    for (size_t cut = 1; cut < m.len; cut += cut < 200 ? 1 : 99991) {
        struct mem_stream t = { m.data, cut, cut };
        memset(&err, 0, sizeof(err));
        assert_true(read_stream(&t, &err) < 0);
    }
    /* A reader that wants a newer section version than it knows. */
    struct vmstate_reader r;
    uint8_t *data;
    size_t len;
    assert_int_equal(vmstate_reader_begin(&r, (struct vmstate_io){ mem_write, mem_read, &m, false }, m.len, &err), 0);
    assert_int_equal(vmstate_read_section(&r, "alpha", 0, 100, &data, &len, NULL, &err), -ENOTSUP);
    assert_non_null(strstr(err.msg, "has version 1; this cowvisor reads up to 0"));
    vmstate_reader_free(&r);
    /* Sections in another order than expected. */
    assert_int_equal(vmstate_reader_begin(&r, (struct vmstate_io){ mem_write, mem_read, &m, false }, m.len, &err), 0);
    assert_int_equal(vmstate_read_section(&r, "big", 2, 4 << 20, &data, &len, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "has section 'alpha' where 'big' was expected"));
    vmstate_reader_free(&r);
    /* A section larger than the reader accepts. */
    assert_int_equal(vmstate_reader_begin(&r, (struct vmstate_io){ mem_write, mem_read, &m, false }, m.len, &err), 0);
    assert_int_equal(vmstate_read_section(&r, "alpha", 1, 4, &data, &len, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "too large"));
    vmstate_reader_free(&r);
    free(m.data);
}

static void test_writer_refuses_wrong_lengths(void **state)
{
    struct mem_stream m = { 0 };
    struct error err = { 0 };
    struct vmstate_writer w;
    assert_int_equal(vmstate_writer_begin(&w, (struct vmstate_io){ mem_write, mem_read, &m, false }, &err), 0);
    assert_int_equal(vmstate_section_begin(&w, "short", 1, 10, &err), 0);
    assert_int_equal(vmstate_section_write(&w, "abc", 3, &err), 0);
    assert_true(vmstate_section_end(&w, &err) < 0);
    assert_non_null(strstr(err.msg, "shorter than announced"));
    assert_true(vmstate_writer_finish(&w, &err) < 0);  /* the failure sticks */
    vmstate_writer_free(&w);
    free(m.data);
    m = (struct mem_stream){ 0 };
    assert_int_equal(vmstate_writer_begin(&w, (struct vmstate_io){ mem_write, mem_read, &m, false }, &err), 0);
    assert_int_equal(vmstate_section_begin(&w, "long", 1, 2, &err), 0);
    assert_true(vmstate_section_write(&w, "abc", 3, &err) < 0);
    assert_non_null(strstr(err.msg, "longer than announced"));
    vmstate_writer_free(&w);
    free(m.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damage_is_named),
        cmocka_unit_test(test_version_and_truncation),
        cmocka_unit_test(test_writer_refuses_wrong_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
