#!/usr/bin/env bash
# A whole-cluster write over a zero-allocated cluster (QEMU's ZERO_ALLOC)
# goes in place; a partial write to the same cluster meanwhile must not see
# the zero flag still set, or it zeroes the whole host cluster over the
# first write's data (found by review: 0x62 then zeros, neither order).
# blkdebug holds write A just before its data write; B is issued and given
# time to run into the cluster's allocation path, A time to finish. QEMU makes B wait for A;
# so must we. Either order of the two writes is right, zeros are not.
. "$TESTS_DIR/lib.sh"

"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k "$TMP/base.qcow2" 1M
"$QEMU_IO" -c "write -q -P 0x44 0 4k" -c "write -q -z 0 4k" "$TMP/base.qcow2"
check "cluster 0 is zero-allocated" sh -c "'$QEMU_IMG' map --output=json '$TMP/base.qcow2' | grep -q '\"start\": 0, \"length\": 4096, .*\"zero\": true, \"data\": false, .*\"offset\"'"
for i in 1 2 3; do
    cp "$TMP/base.qcow2" "$TMP/t.qcow2"
    timeout 60 "$COWIO" -c "break write_aio a" -c "aio_write -q -P 0x61 0 4k" -c "wait_break a" \
        -c "break cluster_alloc_space b" -c "aio_write -q -P 0x62 0 512" -c "sleep 300" \
        -c "resume a" -c "sleep 300" -c "wait_break b" -c "resume b" -c "aio_flush" \
        "blkdebug::$TMP/t.qcow2" >"$TMP/out" 2>&1
    rc=$?   # wait_break b fails when B never stops there (it waited for A, as in QEMU)
    check "run $i: cowio ends (no hang)" test $rc -ne 124
    first=$("$QEMU_IO" -c "read -P 0x62 0 512" "$TMP/t.qcow2")
    rest_a=$("$QEMU_IO" -c "read -P 0x61 512 3584" "$TMP/t.qcow2")
    all_a=$("$QEMU_IO" -c "read -P 0x61 0 4k" "$TMP/t.qcow2")
    ok_order=no
    if ! grep -q "verification failed" <<<"$first$rest_a" || ! grep -q "verification failed" <<<"$all_a"; then
        ok_order=yes
    fi
    check "run $i: the cluster holds one order of the two writes (B over A, or A over B)" test $ok_order = yes
    check "run $i: qemu-img check: clean" "$QEMU_IMG" check -q "$TMP/t.qcow2"
done
done_testing
