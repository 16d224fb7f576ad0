#!/usr/bin/env bash
# cowimg under host I/O errors (the LD_PRELOAD shim of tests/block): convert,
# commit and rebase report every failure with a message and a non-zero exit,
# never crash, and never leave a corrupt image behind (leaks are allowed).
. "$TESTS_DIR/lib.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0:detect_leaks=0"
shim="$BUILD_DIR/tests/block/libfault_inject.so"

"$QEMU_IMG" create -q -f qcow2 "$TMP/base.qcow2" 2M
"$QEMU_IO" -c 'write -P 0x11 0 2M' "$TMP/base.qcow2" >/dev/null
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 "$TMP/top.qcow2"
"$QEMU_IO" -c 'write -P 0x22 100k 300k' -c 'write -z 1M 64k' "$TMP/top.qcow2" >/dev/null
"$QEMU_IMG" create -q -f qcow2 "$TMP/new.qcow2" 2M
"$QEMU_IO" -c 'write -P 0x33 0 1M' "$TMP/new.qcow2" >/dev/null
cp "$TMP/base.qcow2" "$TMP/base.orig"; cp "$TMP/top.qcow2" "$TMP/top.orig"

crashes=0; silent=0; corrupt=0
# dirty IMAGE: its header's dirty bit is set (a v3 image whose next open
# repairs its refcounts: what QEMU leaves after a failed emptying of the
# committed image, make_completely_empty).
dirty() {
    python3 -c "import struct, sys
h = open(sys.argv[1], 'rb').read(80)
sys.exit(0 if struct.unpack('>I', h[4:8])[0] >= 3 and struct.unpack('>Q', h[72:80])[0] & 1 else 1)" "$1"
}
# verdict NAME STATUS OUTPUT IMAGE...: counts crashes, unreported failures, corruption.
verdict() {
    local name=$1 status=$2 out=$3; shift 3
    if (( status >= 128 )) || grep -q 'Sanitizer' <<<"$out"; then
        crashes=$((crashes + 1)); diag "$name: status $status" "$out"
    elif (( status != 0 )) && ! grep -q "Input/output error" <<<"$out"; then
        silent=$((silent + 1)); diag "$name: failed without naming the error" "$out"
    fi
    local img
    for img in "$@"; do
        local rc
        "$QEMU_IMG" check -q "$img" >/dev/null 2>&1; rc=$?
        if (( rc == 2 )) && dirty "$img"; then
            # QEMU's open repairs it (a read-write open of a dirty image);
            # what that leaves must be sound.
            "$QEMU_IO" -c 'read 0 512' "$img" >/dev/null 2>&1
            "$QEMU_IMG" check -q "$img" >/dev/null 2>&1; rc=$?
        fi
        if (( rc == 2 )); then
            corrupt=$((corrupt + 1)); diag "$name left $img corrupt"
        fi
    done
}

for n in 0 1 2 3 5 8 13 21 34 55 89 144; do
    rm -f "$TMP/out.qcow2"
    out=$(LD_PRELOAD="$shim" FAULT_PWRITE_AFTER=$n "$COWIMG" convert -m 4 -W -c -O qcow2 \
          "$TMP/top.qcow2" "$TMP/out.qcow2" 2>&1)
    status=$?
    # A target whose creation failed is garbage, as with qemu-img: only the
    # reporting counts; a convert that succeeded must have written it all.
    verdict "convert, pwrite fault after $n" $status "$out"
    if (( status == 0 )) && ! "$QEMU_IMG" compare -q "$TMP/top.qcow2" "$TMP/out.qcow2"; then
        corrupt=$((corrupt + 1)); diag "convert, pwrite fault after $n: succeeded with wrong data"
    fi

    cp "$TMP/base.orig" "$TMP/base.qcow2"; cp "$TMP/top.orig" "$TMP/top.qcow2"
    out=$(LD_PRELOAD="$shim" FAULT_PWRITE_AFTER=$n "$COWIMG" commit "$TMP/top.qcow2" 2>&1)
    verdict "commit, pwrite fault after $n" $? "$out" "$TMP/base.qcow2" "$TMP/top.qcow2"

    cp "$TMP/base.orig" "$TMP/base.qcow2"; cp "$TMP/top.orig" "$TMP/top.qcow2"
    out=$(LD_PRELOAD="$shim" FAULT_PWRITE_AFTER=$n "$COWIMG" rebase -b new.qcow2 -F qcow2 \
          "$TMP/top.qcow2" 2>&1)
    verdict "rebase, pwrite fault after $n" $? "$out" "$TMP/top.qcow2"
done
for n in 0 2 5 10 40; do
    out=$(LD_PRELOAD="$shim" FAULT_PREAD_AFTER=$n "$COWIMG" convert -O raw "$TMP/top.qcow2" \
          "$TMP/out.raw" 2>&1)
    verdict "convert, pread fault after $n" $? "$out"
    # Equal images: any failure must be the I/O error.
    out=$(LD_PRELOAD="$shim" FAULT_PREAD_AFTER=$n "$COWIMG" compare "$TMP/top.qcow2" \
          "$TMP/top.orig" 2>&1)
    verdict "compare, pread fault after $n" $? "$out"
done
check_eq "no crash on I/O errors" 0 "$crashes"
check_eq "every failure names the I/O error" 0 "$silent"
check_eq "no image left corrupt" 0 "$corrupt"

# A read error in compare is exit status 2 (open) or 4 (read), never "differ".
out=$(LD_PRELOAD="$shim" FAULT_PREAD_AFTER=20 "$COWIMG" compare "$TMP/top.qcow2" "$TMP/top.qcow2" 2>&1)
status=$?
check "compare with a read error does not claim a difference" test "$status" -ne 1 -a "$status" -ne 0

done_testing
