#!/usr/bin/env bash
# Refcount widths side by side with qemu-img (what iotest 112 exercises):
# amend's refusals and their words, what a refused amend leaves, the
# progress of a width change whose layout needs an extra pass, check on an
# overflowing refcount, and a snapshot that would overflow one.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

bits() { "$QEMU_IMG" info "$1" | sed -n 's/^ *refcount bits: //p'; }

twin_do "$QEMU_IMG" create -f qcow2 img.qcow2 64M
same "compat=0.10 with refcount_bits=32 is refused" amend -o refcount_bits=32,compat=0.10 img.qcow2
check_eq "the refused amend keeps 16-bit refcounts" 16 "$(bits "$CW/img.qcow2")"

twin_do "$QEMU_IO" -c 'write 0 1M' img.qcow2
twin_do "$QEMU_IMG" snapshot -c s img.qcow2
twin_do "$QEMU_IO" -c 'write 0 512k' img.qcow2
same "a refcount of 2 cannot narrow to 1 bit" amend -o refcount_bits=1 img.qcow2
check_eq "the refused narrowing keeps 16-bit refcounts" 16 "$(bits "$CW/img.qcow2")"
same "narrowing to 2 bits works" amend -o refcount_bits=2 img.qcow2
same "the narrowed image is clean" check img.qcow2

# 58 data clusters of 512 bytes: the first 64-bit refcount block has one
# free entry, so the layout takes a pass more, and the progress goes back
# from 66.67% (2 of 3 passes) to 50% (2 of 4), as QEMU's walks do. (QEMU
# also reports each refcount table entry within a walk; we report passes.)
twin_do rm -f img.qcow2
twin_do "$QEMU_IMG" create -f qcow2 -o refcount_bits=1,cluster_size=512 img.qcow2 64k
twin_do "$QEMU_IO" -c "write 0 $((58 * 512))" img.qcow2
run_twin amend -o refcount_bits=64 -p img.qcow2
passes() { tr '\r' '\n' <"$1" | grep -A 1 '66.67'; }
check_eq "amend -p: qemu-img's walks go back" "$(printf '    (66.67/100%%)\n    (50.00/100%%)')" \
    "$(passes "$TMP/q.txt")"
check_eq "amend -p: our passes go back as QEMU's walks" "$(passes "$TMP/q.txt")" \
    "$(passes "$TMP/c.txt")"
check_eq "the widened image has 64-bit refcounts" 64 "$(bits "$CW/img.qcow2")"

# Two references to a cluster with 1-bit refcounts: check says what to do.
twin_do rm -f img.qcow2
twin_do "$QEMU_IMG" create -f qcow2 -o refcount_bits=1 img.qcow2 64M
twin_do "$QEMU_IO" -c 'write 0 64k' img.qcow2
for d in "$Q" "$CW"; do
    printf '\x80\x00\x00\x00\x00\x05\x00\x00' | dd of="$d/img.qcow2" bs=1 seek=$((0x40008)) \
        conv=notrunc status=none
done
same "check names the overflow and the way out" check img.qcow2

# A snapshot whose references a 1-bit refcount cannot hold: refused with
# -EINVAL, leaving the snapshot's L1 copy leaked, as qemu-img does.
twin_do rm -f img.qcow2
twin_do "$QEMU_IMG" create -f qcow2 -o refcount_bits=1 img.qcow2 64M
twin_do "$QEMU_IO" -c 'write 0 512' img.qcow2
same "a snapshot overflowing a refcount is refused" snapshot -c foo img.qcow2
same "what the refused snapshot leaves" check img.qcow2

done_testing
