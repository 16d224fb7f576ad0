#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "util/bswap.h"
#include "util/error.h"
#include "util/json.h"
#include "util/options.h"
#include "util/size.h"
#include "util/zero.h"
#include "util/io.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

/* Every alignment and length, and a non-zero byte in every place. */
static void test_mem_is_zero(void **state)
{
    uint8_t buf[200] = { 0 };
    for (size_t start = 0; start < 9; start++) {
        for (size_t len = 0; start + len <= sizeof(buf); len += 7) {
            assert_true(mem_is_zero(buf + start, len));
            for (size_t k = 0; k < len; k++) {
                buf[start + k] = 1;
                assert_false(mem_is_zero(buf + start, len));
                buf[start + k] = 0;
            }
        }
    }
}

/* Whole-buffer I/O: a read stops short at the end of the file only. */
static void test_io_full(void **state)
{
    int fd = memfd_create("io", MFD_CLOEXEC);
    uint8_t out[10000], in[10000];
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = (uint8_t)i;
    }
    assert_true(fd >= 0);
    assert_int_equal(io_pwrite_full(fd, out, sizeof(out), 100), 0);
    assert_int_equal(io_pread_full(fd, in, sizeof(in), 100), (ssize_t)sizeof(in));
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(io_pread_full(fd, in, sizeof(in), 5100), 5000);
    assert_int_equal(io_pread_full(-1, in, 1, 0), -EBADF);
    close(fd);
}

static void test_error_set_and_prefix(void **state)
{
    struct error err = { 0 };
    assert_int_equal(error_set_errno(&err, -ENOENT, "Could not open '%s'", "x"), -ENOENT);
    assert_string_equal(err.msg, "Could not open 'x': No such file or directory");
    error_prefix(&err, "disk %d", 2);
    assert_string_equal(err.msg, "disk 2: Could not open 'x': No such file or directory");
    assert_int_equal(err.code, -ENOENT);
    assert_int_equal(error_set(NULL, -EIO, "ignored"), -EIO);
}

static void test_bswap(void **state)
{
    uint8_t b[8];
    st_be32(b, 0x514649fb);
    assert_memory_equal(b, "QFI\xfb", 4);
    assert_int_equal(ld_be32(b), 0x514649fb);
    st_be64(b, 0x0102030405060708ULL);
    assert_int_equal(b[0], 1);
    assert_int_equal(b[7], 8);
    assert_true(ld_be64(b) == 0x0102030405060708ULL);
    st_le16(b, 0xaa55);
    assert_int_equal(b[0], 0x55);
}

static void test_size_parse(void **state)
{
    uint64_t v;
    assert_int_equal(size_parse("512", &v), 0);
    assert_true(v == 512);
    assert_int_equal(size_parse("64k", &v), 0);
    assert_true(v == 65536);
    assert_int_equal(size_parse("0x10000", &v), 0);     /* qemu_strtosz takes hex */
    assert_true(v == 65536);
    assert_int_equal(size_parse("0x1.5", &v), -EINVAL);
    assert_int_equal(size_parse("1.5G", &v), 0);
    assert_true(v == 1536ULL << 20);
    assert_int_equal(size_parse("2M", &v), 0);
    assert_true(v == 2ULL << 20);
    assert_int_equal(size_parse("16E", &v), -ERANGE);
    assert_int_equal(size_parse("-1", &v), -EINVAL);
    assert_int_equal(size_parse("12x", &v), -EINVAL);
    assert_int_equal(size_parse("", &v), -EINVAL);
    assert_int_equal(size_parse("1.5", &v), -EINVAL);
}

static void test_size_format(void **state)
{
    char buf[32];
    size_format(64ULL << 20, buf, sizeof(buf));
    assert_string_equal(buf, "64 MiB");
    size_format(1536ULL << 20, buf, sizeof(buf));
    assert_string_equal(buf, "1.5 GiB");
    size_format(200704, buf, sizeof(buf));
    assert_string_equal(buf, "196 KiB");
    size_format(0, buf, sizeof(buf));
    assert_string_equal(buf, "0 B");
    size_format(1000, buf, sizeof(buf));
    assert_string_equal(buf, "0.977 KiB");
}

static void test_json_pretty(void **state)
{
    struct json_writer w;
    json_writer_init(&w, true);
    json_object_begin(&w, NULL);
    json_write_uint(&w, "virtual-size", 1048576);
    json_write_string(&w, "filename", "a \"b\".qcow2");
    json_array_begin(&w, "list");
    json_write_int(&w, NULL, -1);
    json_write_bool(&w, NULL, true);
    json_array_end(&w);
    json_object_end(&w);
    assert_string_equal(json_writer_str(&w),
                        "{\n    \"virtual-size\": 1048576,\n    \"filename\": \"a \\\"b\\\".qcow2\",\n"
                        "    \"list\": [\n        -1,\n        true\n    ]\n}");
    json_writer_free(&w);
}

/* The writer's names once were json_string and json_null, which took the
 * place of jansson's at link time: jansson callers got our functions. */
static void test_json_writer_leaves_jansson_alone(void **state)
{
    json_t *s = json_string("x");
    json_t *n = json_null();
    json_t *packed = json_pack("{s:s, s:n}", "a", "b", "c");
    assert_non_null(s);
    assert_true(json_is_string(s));
    assert_string_equal(json_string_value(s), "x");
    assert_true(json_is_null(n));
    assert_non_null(packed);
    assert_string_equal(json_string_value(json_object_get(packed, "a")), "b");
    assert_true(json_is_null(json_object_get(packed, "c")));
    json_decref(s);
    json_decref(packed);
}

static void test_options(void **state)
{
    struct options o = { 0 };
    struct error err = { 0 };
    assert_int_equal(options_parse(&o, "disk,,1.img,format=raw,readonly", "file", &err), 0);
    assert_string_equal(options_get(&o, "file"), "disk,1.img");
    assert_string_equal(options_get(&o, "format"), "raw");
    bool ro = false;
    assert_int_equal(options_get_bool(&o, "readonly", &ro, &err), 0);
    assert_true(ro);
    assert_int_equal(options_check_unused(&o, NULL, &err), 0);
    assert_int_equal(options_parse(&o, "cluster_size=64k,bogus=1", NULL, &err), 0);
    uint64_t cs = 0;
    assert_int_equal(options_get_size(&o, "cluster_size", &cs, &err), 0);
    assert_true(cs == 65536);
    assert_int_equal(options_check_unused(&o, NULL, &err), -EINVAL);
    assert_string_equal(err.msg, "Invalid parameter 'bogus'");
    options_free(&o);
    assert_int_equal(options_parse(&o, "=x", NULL, &err), -EINVAL);
    options_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_is_zero),
        cmocka_unit_test(test_io_full),
        cmocka_unit_test(test_error_set_and_prefix),
        cmocka_unit_test(test_bswap),
        cmocka_unit_test(test_size_parse),
        cmocka_unit_test(test_size_format),
        cmocka_unit_test(test_json_pretty),
        cmocka_unit_test(test_json_writer_leaves_jansson_alone),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
