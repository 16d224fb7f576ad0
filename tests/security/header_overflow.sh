#!/usr/bin/env bash
# A qcow2 header that fills its cluster (header_length 504 in a 512-byte
# cluster, an autoclear bit set so a read-write open rewrites the header)
# leaves no room for the extensions we write back. Every path that rewrites
# the header must fail cleanly with a message, never write past the cluster
# buffer (the suite runs under ASan), and leave the image as qemu-img saw it.
. "$TESTS_DIR/lib.sh"

make_full_header() {
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=512 "$1" 1M
    printf '\x00\x00\x01\xf8' | dd of="$1" bs=1 seek=100 conv=notrunc status=none   # header_length 504
    printf '\x00\x00\x00\x00\x00\x00\x00\x01' | dd of="$1" bs=1 seek=88 conv=notrunc status=none
}

img=$TMP/h.qcow2
make_full_header "$img"
check "qemu-img check calls the crafted image clean" "$QEMU_IMG" check -q "$img"

expect_clean_failure() {
    local desc=$1; shift
    make_full_header "$img"
    local before out rc
    before=$(md5sum <"$img")
    out=$("$@" 2>&1); rc=$?
    if [[ $rc -ne 0 && $rc -lt 128 ]] && grep -q "do not fit in one cluster" <<<"$out" &&
       ! grep -q "Sanitizer" <<<"$out"; then
        ok "$desc fails with a clear message"
    else
        not_ok "$desc fails with a clear message (exit $rc)"
        diag "$out"
    fi
    check_eq "$desc leaves the header as it was" "$before" "$(md5sum <"$img")"
}

expect_clean_failure "cowio write" "$COWIO" -c 'write -P 1 0 4k' "$img"
expect_clean_failure "cowimg rebase -u" "$COWIMG" rebase -u -b "" "$img"
expect_clean_failure "cowimg amend" "$COWIMG" amend -o lazy_refcounts=on "$img"
expect_clean_failure "cowimg check -r all" "$COWIMG" check -r all "$img"
check "qemu-img check still calls it clean" "$QEMU_IMG" check -q "$img"
done_testing
