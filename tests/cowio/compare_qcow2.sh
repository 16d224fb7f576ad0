#!/usr/bin/env bash
# cowio against qemu-io on qcow2 images made by qemu-img, with and without a
# backing chain: same printed lines (timings filtered), same disk content.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

cd "$TMP" || exit 1
img=$TMP/plain.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 4M
base=$TMP/base.qcow2
"$QEMU_IMG" create -q -f qcow2 "$base" 4M
"$QEMU_IO" -c "write -P 0xaa 0 1M" -c "write -P 0xbb 2M 512k" -c "write -c -P 0xcc 3M 64k" "$base" >/dev/null
# The overlay names its backing file relatively, so copies next to it work.
ovl=$TMP/overlay.qcow2
"$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 "$ovl"

compare_io "data, zeroes, discard" "$img" \
    -c "write -P 0x11 0 4k" -c "read -P 0x11 0 4k" -c "write -P 0x22 100k 64k" -c "read -P 0x22 100k 64k" \
    -c "write -z 1M 128k" -c "write -z -u 2M 64k" -c "discard 100k 4k" -c "read -P 0 1M 128k" IMG
compare_io "map, alloc, length, info" "$img" -c "write -P 1 64k 192k" -c "write -z 1M 64k" \
    -c "map" -c "alloc 0 4M" -c "alloc 70k 1k" -c "alloc 4M" -c "length" -c "info" IMG
compare_io "compressed writes" "$img" -c "write -c -P 0x33 0 64k" -c "read -P 0x33 0 64k" \
    -c "write -c 100 512" -c "write -c 3M 64k" -c "read -P 0xcd 3M 64k" -c "map" IMG
compare_io "VM state area" "$img" -c "write -b -P 0x44 0 4k" -c "read -b -P 0x44 0 4k" \
    -c "read -b -P 0x44 512 1k" -c "map" IMG
compare_io "truncate" "$img" -c "write -P 5 3M 1M" -c "truncate 8M" -c "length" -c "read -P 0 4M 4M" -c "map" IMG
compare_io "vectors and aio" "$img" -c "writev -P 6 0 512 3584 60k" -c "readv -P 6 0 32k 32k" \
    -c "aio_write -P 7 1M 64k" -c "aio_flush" -c "aio_read -P 7 1M 64k" -c "aio_flush" IMG
compare_io "reads through the backing chain" "$ovl" -c "read -P 0xaa 0 1M" -c "read -P 0xbb 2M 512k" \
    -c "read -P 0xcc 3M 64k" -c "read -P 0 1M 1M" -c "map" -c "alloc 0 4M" IMG
compare_io "writes over the backing chain" "$ovl" -c "write -P 1 512k 4k" -c "read -P 0xaa 508k 4k" \
    -c "read -P 1 512k 4k" -c "write -z 2M 64k" -c "read -P 0 2M 64k" -c "read -P 0xbb 2M+64k 4k" \
    -c "discard 0 64k" -c "read -v 0 16" -c "map" IMG
compare_io "copy-on-read" "$ovl" -C -c "read -P 0xaa 100k 4k" -c "read -P 0xbb 2M 1k" -c "map" IMG
compare_io "open -C, close, reopen read-only" "$ovl" -c "open -C IMG" -c "read -P 0xaa 0 512" -c "map" \
    -c "close" -c "open -r IMG" -c "write 0 512" -c "reopen -w" -c "write -P 2 0 512" -c "read -P 2 0 512" IMG
compare_io "image options" "$img" --image-opts -c "write -P 8 0 64k" -c "read -P 8 0 64k" \
    "driver=qcow2,file.driver=file,file.filename=IMG"
compare_io "json: file name" "$img" -c "write -P 9 64k 4k" -c "map" \
    "json:{'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 'IMG'}}"
compare_io "compress filter" "$img" --image-opts -c "write -P 0xbb 0 200k" -c "read -P 0xbb 0 200k" \
    "driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=IMG"
compare_io "snapshot mode leaves the image alone" "$ovl" -s -c "write -P 3 0 64k" -c "read -P 3 0 64k" \
    -c "read -P 0xaa 64k 64k" -c "map" IMG
compare_io "open -s" "$img" -c "open -s IMG" -c "write -z 0 1M" -c "read -P 0 0 1M" -c "map" IMG
compare_io "cache none, unaligned requests" "$ovl" -t none -c "write -P 1 1 1" -c "read -P 0xaa 2 4k" \
    -c "read -v 0 8" -c "write -c 64k 64k" -c "map" IMG
compare_io "qcow2 runtime options" "$img" -c "open -o cache-size=1M,l2-cache-size=2M IMG" \
    -c "open -o l2-cache-entry-size=4242 IMG" -c "open -o lazy-refcounts=on,l2-cache-size=1M IMG" \
    -c "read 0 4k" IMG
compare_io "backing.driver overrides the recorded format" "$ovl" -c "open -o backing.driver=qcow2 IMG" \
    -c "read -P 0xaa 0 4k" -c "close" -c "open -o backing.driver=raw IMG" -c "read -v 0 16" IMG
compare_io "reopen with options" "$img" -c "reopen -o lazy-refcounts=on,overlap-check=all" \
    -c "reopen -o overlap-check.template=none" -c "write -P 3 0 4k" -c "reopen -o lazy-refcounts=42" \
    -c "reopen -o cache-size=1M,l2-cache-size=2M" -c "reopen -o overlap-check=blubb" \
    -c "reopen -o cache-clean-interval=-1" -c "read -P 3 0 4k" IMG
compare_io "reopen refuses what cannot change" "$ovl" -c "reopen -o node-name=foo" -c "reopen -o driver=raw" \
    -c "reopen -o file.driver=qcow2" -c "reopen -o backing.driver=file" -c "reopen -o driver=qcow2" \
    -c "reopen -r -o read-only=on" -c "reopen -c none -o cache.direct=on" -c "reopen -o read-only=foo" \
    -c "reopen -r" -c "write 0 1" -c "reopen -w" -c "write -P 4 0 1" -c "read -P 4 0 1" IMG
compare_io "protocol drivers check the file type" "$img" -c "open -r -o driver=file,filename=$TMP" \
    -c "open -o driver=file,filename=$TMP" -c "open -r -o driver=host_device,filename=$TMP" \
    -c "open -r -o driver=file,filename=/dev/null,locking=off"
# reopen's lazy-refcounts: a write killed before close leaves the dirty bit
# exactly when lazy refcounts are on, whatever the image's compat bit says.
dirty_bit() {  # dirty_bit PROG OPTION: the incompatible features after a killed write
    "$QEMU_IMG" create -q -f qcow2 -o "compat=1.1,lazy_refcounts=$2" "$TMP/lazy.qcow2" 1M
    "$1" -c "reopen -o lazy-refcounts=$3" -c "write 0 512" -c "sigraise 9" "$TMP/lazy.qcow2" >/dev/null 2>&1
    od -An -tx1 -j72 -N8 "$TMP/lazy.qcow2" | tr -d ' '
}
for lazy in "off on" "on off"; do
    set -- $lazy
    check_eq "reopen -o lazy-refcounts=$2 on a lazy_refcounts=$1 image: dirty bit as qemu-io" \
        "$(dirty_bit "$QEMU_IO" "$1" "$2")" "$(dirty_bit "$COWIO" "$1" "$2")"
done
compare_io "null-co as the top node" "$img" -f null-co -c 'reopen' -c 'info' \
    "json:{'driver': 'null-co', 'size': 65536}"
compare_io "null-co with read-zeroes" "$img" -c 'read -P 0 0 64k' -c 'write 0 4k' -c 'map' \
    "json:{'driver': 'null-co', 'size': 65536, 'read-zeroes': true}"
"$QEMU_IMG" create -q -f raw "$TMP/win.raw" 64k
"$QEMU_IO" -f raw -c 'write -P 0x11 0 4k' -c 'write -P 0x22 4k 4k' "$TMP/win.raw" >/dev/null
compare_io "raw offset and size" "$TMP/win.raw" -c 'read -P 0x22 0 4k' -c 'read 4k 1' -c 'write -P 5 0 512' \
    -c 'length' "json:{'driver': 'raw', 'offset': 4096, 'size': 4096, 'file': {'driver': 'file', 'filename': 'IMG'}}"
compare_io "qcow2 as raw" "$img" -f raw -c "read -v 0 16" IMG
compare_io "raw as qcow2" "$TESTS_DIR/lib.sh" -f qcow2 IMG
"$QEMU_IMG" create -q -f qcow2 -u -b "$TMP/missing.qcow2" -F qcow2 "$TMP/orphan.qcow2" 1M
compare_io "missing backing file" "$TMP/orphan.qcow2" -c "read 0 512" IMG
printf 'QFI\xfbgarbage' > "$TMP/bad.qcow2"
# The format's own wording is the driver's business; cowio must name the file and fail cleanly.
out=$("$COWIO" -c "read 0 512" "$TMP/bad.qcow2" 2>&1); rc=$?
check_eq "truncated qcow2 header: exit status 1" 1 "$rc"
[[ $out == "qemu-io: can't open device $TMP/bad.qcow2: "* ]] && ok "truncated qcow2 header: clear message" ||
    { not_ok "truncated qcow2 header: clear message"; diag "$out"; }
# An unaligned refcount block offset marks the image corrupt in QEMU's words
# (iotest 305; scripts parse them).
"$QEMU_IMG" create -q -f qcow2 -o refcount_bits=64,cluster_size=1k "$TMP/refb.qcow2" 1M
for cmd in 'write 0 124k' 'discard 121k 1k' 'discard 123k 1k'; do
    "$QEMU_IO" -c "$cmd" "$TMP/refb.qcow2" >/dev/null
done
reft=$(od -An -tu8 --endian=big -j48 -N8 "$TMP/refb.qcow2" | tr -d ' ')
printf '\x06' | dd of="$TMP/refb.qcow2" bs=1 seek=$((reft + 14)) conv=notrunc status=none
# (Only the words: qemu-io allocates the three clusters at once and writes
# nothing, cowio has written the first before it meets the bad refblock.)
cp "$TMP/refb.qcow2" "$TMP/refb2.qcow2"
check_eq "unaligned refcount block offset: qemu-io's message" \
    "$("$QEMU_IO" -c 'write 121k 3k' "$TMP/refb.qcow2" 2>&1)" "$("$COWIO" -c 'write 121k 3k' "$TMP/refb2.qcow2" 2>&1)"
done_testing
