/* Unit tests of cowio's text helpers: qemu's size syntax, its byte units,
 * the format-specific info tree and json: file names. Expected strings are
 * what qemu-io 7.2 prints / accepts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qemu_io/qemu_io.h"
#include "qemu_io/info_dump.h"
#include "block/blockdev.h"

static void test_cvtnum(void **state)
{
    assert_int_equal(cowio_cvtnum("512"), 512);
    assert_int_equal(cowio_cvtnum("64k"), 65536);
    assert_int_equal(cowio_cvtnum("64K"), 65536);
    assert_int_equal(cowio_cvtnum("1.5M"), 1572864);
    assert_int_equal(cowio_cvtnum("0x200"), 512);
    assert_int_equal(cowio_cvtnum("1b"), 1);
    assert_int_equal(cowio_cvtnum("2G"), 2147483648LL);
    assert_int_equal(cowio_cvtnum("7E"), 7LL << 60);
    assert_int_equal(cowio_cvtnum("1x"), -EINVAL);
    assert_int_equal(cowio_cvtnum("-1"), -EINVAL);
    assert_int_equal(cowio_cvtnum(""), -EINVAL);
    assert_int_equal(cowio_cvtnum("1.5"), -EINVAL);
    assert_int_equal(cowio_cvtnum("0x1.5"), -EINVAL);
    assert_int_equal(cowio_cvtnum("1e3k"), -EINVAL);
    assert_int_equal(cowio_cvtnum("8E"), -ERANGE);
    assert_int_equal(cowio_cvtnum("99999999999999999999"), -ERANGE);
    assert_int_equal(cowio_cvtnum("16000P"), -ERANGE);
}

static void test_cvtstr(void **state)
{
    char s[64];
    cowio_cvtstr(512, s, sizeof(s));
    assert_string_equal(s, "512 bytes");
    cowio_cvtstr(0, s, sizeof(s));
    assert_string_equal(s, "0 bytes");
    cowio_cvtstr(1536, s, sizeof(s));
    assert_string_equal(s, "1.500 KiB");
    cowio_cvtstr(65536, s, sizeof(s));
    assert_string_equal(s, "64 KiB");
    cowio_cvtstr(1048576.0 * 512, s, sizeof(s));
    assert_string_equal(s, "512 MiB");
    cowio_cvtstr(2.5, s, sizeof(s));
    assert_string_equal(s, "2.500000 bytes");
}

static char *dump(const char *json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    info_dump_json_tree(f, json, 1);
    fclose(f);
    return text;
}

static void test_info_tree(void **state)
{
    char *t = dump("{\"compat\": \"1.1\", \"lazy-refcounts\": false, \"refcount-bits\": 16}");
    assert_string_equal(t, "    compat: 1.1\n    lazy refcounts: false\n    refcount bits: 16\n");
    free(t);
    t = dump("{\"bitmaps\": [{\"flags\": [\"auto\"], \"name\": \"b1\", \"granularity\": 65536}], "
             "\"corrupt\": false}");
    assert_string_equal(t, "    bitmaps:\n"
                           "        [0]:\n"
                           "            flags:\n"
                           "                [0]: auto\n"
                           "            name: b1\n"
                           "            granularity: 65536\n"
                           "    corrupt: false\n");
    free(t);
}

static void test_json_names(void **state)
{
    char *o = NULL;
    struct error err = { 0 };
    assert_int_equal(blockdev_json_to_options("{'driver': 'compress', 'file': {'driver': 'qcow2', "
                                     "'file': {'driver': 'file', 'filename': 'a,b'}}}", &o, &err), 0);
    assert_string_equal(o, "driver=compress,file.driver=qcow2,file.file.driver=file,"
                           "file.file.filename=a,,b");
    free(o);
    assert_int_equal(blockdev_json_to_options("{\"read-only\": true, \"x\": 5}", &o, &err), 0);
    assert_string_equal(o, "read-only=on,x=5");
    free(o);
    assert_true(blockdev_json_to_options("{\"driver\": \"raw\"", &o, &err) < 0);
    assert_int_equal(blockdev_json_to_options("{\"a\": [1, {\"b\": 2}]}", &o, &err), 0);
    assert_string_equal(o, "a.0=1,a.1.b=2");
    free(o);
    assert_true(blockdev_json_to_options("[]", &o, &err) < 0);
    assert_true(blockdev_json_to_options("{'a': 'unterminated}", &o, &err) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cvtnum),
        cmocka_unit_test(test_cvtstr),
        cmocka_unit_test(test_info_tree),
        cmocka_unit_test(test_json_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
