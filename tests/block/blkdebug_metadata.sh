#!/usr/bin/env bash
# Errors injected on qcow2's metadata writes (as iotest 026 does), side by
# side with the real qemu-io: with writethrough caching the write that
# allocates reports the error of its metadata update, and the image is left
# consistent (qemu-img check finds leaks at most).
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

# cowio under qemu-io's name: close reports its failures with the program name.
ln -s "$COWIO" "$TMP/qemu-io"
COWIO=$TMP/qemu-io

"$QEMU_IMG" create -q -f qcow2 -o cluster_size=1024 "$TMP/fresh.qcow2" 1G

# check_consistent image: qemu-img check exits 0 (clean) or 3 (leaks only).
check_consistent() {
    local out rc
    out=$("$QEMU_IMG" check "$1" 2>&1); rc=$?
    if [[ $rc == 0 || $rc == 3 ]]; then
        ok "$2: qemu-img check finds no corruption"
    else
        not_ok "$2: qemu-img check exits $rc"
        diag "$out"
    fi
}

# Each event of iotest 026's first part, failing once or for good, in a
# guest write (and in a VM-state write, -b, where writethrough flushes too). With once=off, close fails to
# write back too and says so in QEMU's words. l2_update needs the L2 table to
# exist already.
for event in l1_update l2_update l2_alloc_write write_aio refblock_load refblock_update_part \
             refblock_alloc cluster_alloc; do
    base=$TMP/fresh.qcow2
    if [[ $event == l2_update ]]; then
        cp "$TMP/fresh.qcow2" "$TMP/l2.qcow2"
        "$QEMU_IO" -c "write 0 512" "$TMP/l2.qcow2" >/dev/null
        base=$TMP/l2.qcow2
    fi
    for once in on off; do
        cat >"$TMP/rule.conf" <<CONF
[inject-error]
event = "$event"
errno = "28"
immediately = "off"
once = "$once"
CONF
        vmstates=("")
        [[ $event == l2_update ]] && vmstates+=(-b)
        for vmstate in "${vmstates[@]}"; do
            what="$event once=$once write $vmstate"
            compare_io "$what" "$base" --cache writethrough -c "write $vmstate 0 128k" \
                "blkdebug:$TMP/rule.conf:IMG"
            check_consistent "$TMP/ours.qcow2" "$what"
        done
    done
done
# 026's L1 growth part: a VM-state write past the guest's L1 table. The
# rule fires before the new table's allocation (whose refcount block read
# fails: nothing written, close has nothing to report) and before the
# header names it (close's write-back fails too). Failing for good only:
# the suite's time is short.
for event in l1_grow_alloc_table l1_grow_activate_table; do
    for once in off; do
        printf '[inject-error]\nevent = "%s"\nerrno = "5"\nonce = "%s"\n' "$event" "$once" \
            >"$TMP/rule.conf"
        what="$event once=$once write -b"
        compare_io "$what" "$TMP/fresh.qcow2" --cache writethrough -c "write -b 0 64k" \
            "blkdebug:$TMP/rule.conf:IMG"
        check_consistent "$TMP/ours.qcow2" "$what"
    done
done
# A new refcount block (026's second part, smaller): 512-byte clusters
# need one per 128 KiB of the file.
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=512 "$TMP/small.qcow2" 1G
printf '[inject-error]\nevent = "refblock_alloc_write"\nerrno = "28"\nonce = "on"\n' >"$TMP/rule.conf"
compare_io "refblock_alloc_write once=on write" "$TMP/small.qcow2" --cache writethrough \
    -c "write 0 1M" "blkdebug:$TMP/rule.conf:IMG"
check_consistent "$TMP/ours.qcow2" "refblock_alloc_write once=on"

# Zero writes over clusters that read as zeros already (unallocated zero,
# allocated zero) change no L2 entry, so l2_update failing for good fails
# none of them (iotest 179's cache optimisation).
cp "$TMP/fresh.qcow2" "$TMP/zeros.qcow2"
"$QEMU_IO" -c "write 64k 64k" -c "write -z -u 64k 8k" -c "write -z 72k 8k" "$TMP/zeros.qcow2" >/dev/null
printf '[inject-error]\nevent = "l2_update"\nerrno = "5"\nimmediately = "on"\nonce = "off"\n' >"$TMP/rule.conf"
for cmd in "write -z -u 64k 8k" "write -z 64k 8k" "write -z 72k 8k" "write -z -u 72k 8k"; do
    compare_io "l2_update failing, $cmd over zeros" "$TMP/zeros.qcow2" -c "$cmd" "blkdebug:$TMP/rule.conf:IMG"
done
done_testing
