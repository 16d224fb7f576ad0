#!/usr/bin/env bash
# Block status of extended-L2 subclusters that are unallocated or zero inside
# a cluster the image owns: qemu-img reports their place in the file (an
# "offset" in map --output=json, QEMU's UNALLOCATED_ALLOC), so such a run is
# not merged with the unallocated clusters after it. The images are written
# by qemu-io, so both tools read the same layout.
. "$TESTS_DIR/lib.sh"

# same_as_qemu DESC ARGS...: cowimg prints what qemu-img prints and exits alike.
same_as_qemu() {
    local desc=$1 q c
    shift
    q=$("$QEMU_IMG" "$@" 2>&1; echo "exit $?")
    c=$("$COWIMG" "$@" 2>&1; echo "exit $?")
    check_eq "$desc" "$q" "$c"
}

img=$TMP/e.qcow2
"$QEMU_IMG" create -q -f qcow2 -o extended_l2=on "$img" 1M
# Cluster 0: data in its first subcluster, the rest unallocated. Cluster 1:
# data, then a zero subcluster (keeps its host place), then unallocated.
"$QEMU_IO" -c 'write -P 1 0 4k' -c 'write -P 2 64k 2k' -c 'write -z 70k 2k' "$img" >/dev/null
check "the unallocated subclusters of an owned cluster have an offset (qemu-img)" \
    grep -q '"present": false, "zero": true, "data": false, "offset"' \
    <("$QEMU_IMG" map --output=json "$img")
same_as_qemu "map --output=json of owned clusters' unallocated subclusters" \
    map --output=json "$img"
same_as_qemu "map --output=json from inside a cluster" map --output=json --start-offset 6k "$img"
same_as_qemu "map (human) lists data only" map "$img"

# Over a backing file, unallocated subclusters show what lies beneath.
base=$TMP/base.qcow2
over=$TMP/over.qcow2
"$QEMU_IMG" create -q -f qcow2 "$base" 1M
"$QEMU_IO" -c 'write -P 7 32k 64k' "$base" >/dev/null
"$QEMU_IMG" create -q -f qcow2 -o extended_l2=on -b "$base" -F qcow2 "$over"
"$QEMU_IO" -c 'write -P 1 0 4k' -c 'write -z 72k 4k' -c 'write -P 2 132k 2k' "$over" >/dev/null
same_as_qemu "map --output=json of an overlay with owned unallocated subclusters" \
    map --output=json "$over"
same_as_qemu "compare -s: the block status of both images" compare -s "$img" "$over"

done_testing
