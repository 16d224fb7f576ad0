#!/usr/bin/env bash
# Writes over clusters that read as zeros by their L2 entries but keep their
# host cluster (preallocated zero clusters, QEMU's ZERO_ALLOC): cowio writes
# them in place, in one host write with their neighbours, as qemu-io does
# (iotest 066). Each case runs with both tools on twin images; the maps, the
# data and qemu-img check must agree.
. "$TESTS_DIR/lib.sh"

# run TOOL DIR EXTL2: the case's commands with qemu-io or cowio in DIR.
run() {
    local io=$1 dir=$2 extl2=$3
    mkdir -p "$dir"
    local img=$dir/t.qcow2
    "$QEMU_IMG" create -q -f qcow2 -o "extended_l2=$extl2" "$img" 256k
    "$io" -c 'write -P 42 0 192k' -c 'write -z 64k 64k' "$img" >/dev/null
    # One write over normal, zero and normal clusters: blkdebug fails a
    # second data write, so the write succeeds only when it is one.
    "$io" -c 'write -P 43 0 192k' "json:{'driver': 'qcow2', 'file': {'driver': 'blkdebug',
        'image.filename': '$img', 'set-state': [{'event': 'write_aio', 'new_state': 2}],
        'inject-error': [{'event': 'write_aio', 'state': 2}]}}" 2>&1 | head -1
    "$QEMU_IMG" map --output=json "$img"
    # A whole zero cluster between two partial writes (COW of zeros around it).
    "$io" -c 'write -z 0 192k' -c 'write -P 44 32k 128k' "$img" >/dev/null
    "$QEMU_IMG" map --output=json "$img"
    "$QEMU_IO" -c 'read -P 0 0 32k' -c 'read -P 44 32k 128k' -c 'read -P 0 160k 96k' "$img" |
        grep -c '^read'
    "$QEMU_IMG" check "$img" 2>&1 | head -1
}

for extl2 in off on; do
    q=$(run "$QEMU_IO" "$TMP/q$extl2" $extl2)
    c=$(run "$COWIO" "$TMP/c$extl2" $extl2)
    check_eq "extended_l2=$extl2: single write, layout, data and check as with qemu-io" "$q" "$c"
    check "extended_l2=$extl2: the write over the zero cluster succeeded" \
        grep -q '^wrote 196608/196608' <<<"$c"
done

done_testing
