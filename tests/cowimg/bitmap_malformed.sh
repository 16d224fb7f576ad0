#!/usr/bin/env bash
# Malformed bitmaps extensions, directories and tables: cowimg info refuses
# each with qemu-img's words, nothing crashes (sanitizers), a writable open
# leaves the file untouched, and check copes without crashing.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

# mutate GOOD DIR: for each "NAME WHAT VALUE" line on stdin, DIR/NAME is GOOD
# with one field rewritten: of the bitmaps extension (ext.*), of the first
# directory entry (dir.*) or of the first bitmap table entry (table.0).
mutate() {
    python3 -c '
import shutil, struct, sys
good, out = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    name, what, value = line.split()
    path = out + "/" + name
    shutil.copy(good, path)
    with open(path, "r+b") as f:
        hdr = f.read(65536)
        off = struct.unpack(">I", hdr[100:104])[0]
        while struct.unpack(">I", hdr[off:off + 4])[0] != 0x23852875:
            off += 8 + (struct.unpack(">I", hdr[off + 4:off + 8])[0] + 7) // 8 * 8
        ext = off + 8
        d = struct.unpack(">Q", hdr[ext + 16:ext + 24])[0]
        f.seek(d)
        table = struct.unpack(">Q", f.read(8))[0]
        pos, fmt = {
            "ext.len": (off + 4, ">I"), "ext.nb": (ext, ">I"), "ext.reserved": (ext + 4, ">I"),
            "ext.dir_size": (ext + 8, ">Q"), "ext.dir_offset": (ext + 16, ">Q"),
            "dir.table_offset": (d, ">Q"), "dir.table_size": (d + 8, ">I"),
            "dir.flags": (d + 12, ">I"), "dir.type": (d + 16, ">B"),
            "dir.granularity_bits": (d + 17, ">B"), "dir.name_size": (d + 18, ">H"),
            "dir.extra_size": (d + 20, ">I"), "table.0": (table, ">Q"),
        }[what]
        f.seek(pos)
        f.write(struct.pack(fmt, int(value, 0)))
' "$@"
}

"$QEMU_IMG" create -q -f qcow2 "$TMP/good.qcow2" 4M
"$QEMU_IMG" bitmap --add -g 64k "$TMP/good.qcow2" b
"$QEMU_IO" -c 'write 0 64k' "$TMP/good.qcow2" >/dev/null

cases=(
    "ext.len 16"                "an extension of the wrong length"
    "ext.reserved 1"            "the reserved field set"
    "ext.nb 0"                  "zero bitmaps"
    "ext.nb 70000"              "more bitmaps than QEMU supports"
    "ext.nb 2"                  "fewer entries than bitmaps"
    "ext.dir_offset 0x10200"    "an unaligned directory"
    "ext.dir_offset 0x7fff0000" "a directory past the end of the file"
    "ext.dir_size 0"            "an empty directory"
    "ext.dir_size 8"            "a directory shorter than its entry"
    "ext.dir_size 0x4000000"    "a directory above the maximum size"
    "dir.flags 4"               "a reserved flag"
    "dir.type 2"                "an unknown bitmap type"
    "dir.granularity_bits 8"    "a granularity below 512"
    "dir.granularity_bits 32"   "a granularity above 2^31"
    "dir.name_size 0x4000"      "a name running past the directory"
    "dir.extra_size 8"          "extra data"
    "dir.table_size 0"          "an empty bitmap table"
    "dir.table_size 0x10000000" "a bitmap table above the maximum"
    "dir.table_size 2"          "a bitmap table of the wrong size"
    "dir.table_offset 0"        "no bitmap table"
    "dir.table_offset 0x10100"  "an unaligned bitmap table"
    "table.0 0x00000000000101fe" "reserved bits in a table entry"
    "table.0 0x0000000000010001" "an all-ones flag with an offset"
    "table.0 0x0000000000010200" "an unaligned data cluster"
    "table.0 0x00ff000000000000" "a data cluster far past the end of the file"
)
for ((i = 0; i < ${#cases[@]}; i += 2)); do
    echo "bad$i.qcow2 ${cases[i]}"
done | mutate "$TMP/good.qcow2" "$Q"
cp "$Q"/bad*.qcow2 "$CW/"
for ((i = 0; i < ${#cases[@]}; i += 2)); do
    img=bad$i.qcow2 desc="${cases[i + 1]} (${cases[i]})"
    TWIN_FILTER='/^disk size:/d' same "$desc: info as qemu-img" info $img
    opened=$(tail -n1 "$TMP/q.txt")
    # A writable open: refused (the file untouched) where qemu-img info refused
    # the image; otherwise the image stays free of corruption (leaks the
    # mutation itself causes aside: check's exit 3).
    sum=$(md5sum <"$CW/$img")
    "$COWIMG" resize "$CW/$img" 8M >"$TMP/c.raw" 2>&1
    rc=$?
    echo "exit=$rc" >>"$TMP/c.raw"
    if ! no_crash; then
        not_ok "$desc: a writable open crashed"
        sed 's/^/# /' "$TMP/c.raw" | head -5
    elif [[ $opened != exit=0 ]]; then
        check_eq "$desc: a refused writable open leaves the file as it was" "1 $sum" \
            "$rc $(md5sum <"$CW/$img")"
    else
        "$QEMU_IMG" check -q "$CW/$img" >/dev/null 2>&1
        rc=$?
        check "$desc: a writable open leaves no corruption (check: $rc)" test $rc -eq 0 -o $rc -eq 3
    fi
    "$COWIMG" check "$CW/$img" >"$TMP/c.raw" 2>&1
    echo "exit=$?" >>"$TMP/c.raw"
    if no_crash; then ok "$desc: check does not crash"; else not_ok "$desc: check crashed"; fi
done

done_testing
