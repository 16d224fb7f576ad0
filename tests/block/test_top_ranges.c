/* blockdev_top_ranges, the walk over what an image's top layer defines
 * (backup sync=top, the overlay-only migration): the ranges it gives must
 * be qemu-img map's depth-0 extents, adjacent ones merged: data, zero
 * clusters, a partly written cluster, runs at both ends of the image; an
 * overlay defining nothing gives none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "block/blockdev_top_ranges.h"
#include "qcow2_test_util.h"

static char dir[] = "/tmp/top-ranges-XXXXXX";

/* The ranges as "off len" lines, from the iterator. */
static char *ours(const char *name)
{
    static char out[4096];
    char path[256];
    struct blockdev *bd;
    struct blockdev_open_opts o = { .format = "qcow2" };
    struct error err = { 0 };
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(blockdev_open(&bd, path, &o, &err), 0);
    struct blockdev_top_ranges it;
    uint64_t off, len;
    size_t n = 0;
    int ret;
    out[0] = 0;
    blockdev_top_ranges_init(&it, bd);
    while ((ret = blockdev_top_ranges_next(&it, &off, &len, &err)) == 1) {
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%llu %llu\n", (unsigned long long)off,
                              (unsigned long long)len);
        assert_true(n < sizeof(out));
    }
    assert_int_equal(ret, 0);
    blockdev_close(bd);
    return out;
}

/* The same from qemu-img map: depth-0 extents, adjacent ones merged. */
static char *qemus(const char *name)
{
    static char out[4096];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && qemu-img map --output=json %s | python3 -c '\n"
             "import json, sys\n"
             "r = []\n"
             "for e in json.load(sys.stdin):\n"
             "    if e[\"depth\"] != 0: continue\n"
             "    if r and r[-1][0] + r[-1][1] == e[\"start\"]: r[-1][1] += e[\"length\"]\n"
             "    else: r.append([e[\"start\"], e[\"length\"]])\n"
             "print(\"\".join(\"%%d %%d\\n\" %% (a, b) for a, b in r), end=\"\")'", dir, name);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = 0;
    assert_int_equal(pclose(f), 0);
    return out;
}

static void test_matches_qemu_img_map(void **state)
{
    /* 4 MiB, 64 KiB clusters; the base defines everything. */
    assert_int_equal(run("cd %s && qemu-img create -q -f qcow2 base.qcow2 4M && "
                         "qemu-io -c 'write -P 1 0 4M' base.qcow2 >/dev/null && "
                         "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 && "
                         "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 empty.qcow2 && "
                         "qemu-io -c 'write -P 2 0 64k' -c 'write -P 3 64k 64k' -c 'write -z 256k 128k' "
                         "-c 'write -P 4 1M 4k' -c 'write -P 5 2M 512' -c 'write -z 2112k 64k' "
                         "-c 'write -P 6 4032k 64k' top.qcow2 >/dev/null", dir), 0);
    const char *q = qemus("top.qcow2"), *o = ours("top.qcow2");
    assert_string_equal(o, q);
    /* What the writes above define, cluster-wide. */
    assert_string_equal(o, "0 131072\n262144 131072\n1048576 65536\n2097152 131072\n4128768 65536\n");
    assert_string_equal(ours("empty.qcow2"), "");
    assert_string_equal(qemus("empty.qcow2"), "");
    /* Without a backing file, every cluster it has is its own. */
    assert_string_equal(ours("base.qcow2"), qemus("base.qcow2"));
    assert_string_equal(ours("base.qcow2"), "0 4194304\n");
}

int main(void)
{
    assert_non_null(mkdtemp(dir));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_qemu_img_map),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    run("rm -rf %s", dir);
    return r;
}
