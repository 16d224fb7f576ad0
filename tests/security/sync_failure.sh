#!/usr/bin/env bash
# One failed fdatasync (a disk reporting a lost writeback once) at each point
# of a short write sequence: whatever cowio reported as written and then
# flushed successfully reads back after reopening, and qemu-img check finds
# no corruption. (A failed sync used to leave the L1 table in memory ahead of
# the disk: later writes succeeded and vanished on reopen.) A failed sync
# fails every later flush too (the kernel reports a writeback error once, so
# a retry would pass over lost writes): a write may then be lost, but never
# silently: cowio must report a failure (exit status 1).
. "$TESTS_DIR/lib.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0:detect_leaks=0"
shim="$BUILD_DIR/tests/block/libfault_inject.so"

"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k "$TMP/orig.qcow2" 64M
bad=0; tried=0; lost_reported=0
for n in $(seq 0 16); do
    cp "$TMP/orig.qcow2" "$TMP/f.qcow2"
    out=$(LD_PRELOAD="$shim" FAULT_FSYNC_NTH=$n "$COWIO" -t writeback \
          -c "write -P 0xaa 0 64k" -c "write -P 0xbb 33554432 64k" -c "write -P 0xcc 65536 8k" \
          -c "write -P 0xdd 50331648 4k" -c "write -P 0xbe 33619968 4k" \
          -c "write -P 0xde 50397184 4k" -c flush -c flush "$TMP/f.qcow2" 2>&1)
    cowio_rc=$?
    tried=$((tried + 1))
    "$QEMU_IMG" check -q "$TMP/f.qcow2" >/dev/null 2>&1; rc=$?
    if [[ $rc -ne 0 && $rc -ne 3 ]]; then
        bad=$((bad + 1)); diag "sync $n failed: image corrupt" "$out"; continue
    fi
    for w in "0xaa 0 64k" "0xbb 33554432 64k" "0xcc 65536 8k" "0xdd 50331648 4k" \
             "0xbe 33619968 4k" "0xde 50397184 4k"; do
        set -- $w
        grep -q "^wrote .* at offset $2$" <<<"$out" || continue
        r=$("$QEMU_IO" -r -c "read -P $1 $2 $3" "$TMP/f.qcow2" 2>&1)
        if ! grep -q "^read" <<<"$r" || grep -q "verification failed" <<<"$r"; then
            if [[ $cowio_rc -eq 0 ]]; then
                bad=$((bad + 1)); diag "sync $n failed: write '$w' was reported done and flushed, then lost" "$out"
            else
                lost_reported=$((lost_reported + 1))
            fi
        fi
    done
done
check_eq "a failed sync at each of $tried points: no corruption, no write lost unreported" 0 "$bad"
diag "writes lost after a failed sync, with cowio reporting the failure: $lost_reported"
done_testing
