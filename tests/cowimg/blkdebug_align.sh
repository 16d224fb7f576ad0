#!/usr/bin/env bash
# blkdebug's align option (iotest 033), cowio side by side with qemu-io: the
# option is taken after a blkdebug:: name and under file.driver=blkdebug, bad
# values are refused in QEMU's words, and an error rule's sector matches the
# request widened to the alignment, as QEMU's block layer widens it.
. "$TESTS_DIR/lib.sh"

img=$TMP/t.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 1M
"$QEMU_IO" -c 'write -P 1 0 64k' "$img" >/dev/null
host=$("$QEMU_IMG" map --output=json "$img" | sed -n '1s/.*"offset": \([0-9]*\).*/\1/p')
first=$((host / 512))

# both "description" IO-ARGS...: qemu-io and cowio print the same first line.
both() {
    local desc=$1; shift
    local q c
    q=$("$QEMU_IO" "$@" 2>&1 | head -1 | sed 's/^qemu-io: //')
    c=$("$COWIO" "$@" 2>&1 | head -1 | sed 's/^[a-z-]*: //')
    check_eq "$desc" "$q" "$c"
}

node="driver=qcow2,file.driver=blkdebug,file.image.filename=$img"
rule="file.inject-error.0.event=write_aio"
for align in "" 512 4k; do
    opt=${align:+,file.align=$align}
    # The 512-byte write covers the data cluster's first sector; the seventh
    # lies in the same 4 KiB, the eighth past it.
    for sec in $first $((first + 7)) $((first + 8)); do
        both "align=${align:-none}, error at sector $((sec - first)) of the cluster" \
            -c "open -o $node$opt,$rule,file.inject-error.0.sector=$sec" -c 'write -P 2 0 512'
    done
done
both "align=3 refused" -c "open -o $node,file.align=3" -c 'read 0 512'
both "align=4G refused" -c "open -o $node,file.align=4G" -c 'read 0 512'
both "align=x refused" -c "open -o $node,file.align=x" -c 'read 0 512'
both "align after a blkdebug:: name" -c "open -o driver=qcow2,file.align=4k blkdebug::$img" \
    -c 'write -z 0x200 0x200'
both "align=3 after a blkdebug:: name refused" -c "open -o driver=qcow2,file.align=3 blkdebug::$img"
check "the data written through blkdebug:: reads back" bash -c \
    "'$QEMU_IO' -c 'read -P 0 0x200 0x200' -c 'read -P 1 0x400 0x200' '$img' | grep -c '^read' | grep -qx 2"

# blkdebug as the top node over a qcow2 node (iotest 177): its limits are
# checked as QEMU checks them, and a discard through it drops the whole
# clusters of the range only (it once zeroed the partial ones around them).
top="driver=blkdebug,image.driver=qcow2"
both "filter: max-transfer not a multiple of align refused" \
    -c "open -o $top,align=4k,max-transfer=6k blkdebug::$img"
both "filter: max-discard not a multiple of opt-discard refused" \
    -c "open -o $top,align=512,opt-discard=15M,max-discard=20M blkdebug::$img"
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=64k "$TMP/f.qcow2" 1M
"$QEMU_IO" -c "write -q -P 7 0 1M" "$TMP/f.qcow2"
both "filter: non-power-of-2 limits accepted, discard of a partial range" \
    -c "open -o $top,align=512,opt-discard=15k,max-discard=15k blkdebug::$TMP/f.qcow2" \
    -c "discard 100000 200000"
check "filter: the discard dropped clusters 2 and 3 only, as QEMU's" bash -c \
    "'$QEMU_IO' -c 'read -q -P 7 0 128k' -c 'read -q -P 0 128k 128k' -c 'read -q -P 7 256k 768k' \
         '$TMP/f.qcow2' | grep -c . | grep -qx 0"

done_testing
