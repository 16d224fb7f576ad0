#!/usr/bin/env bash
# I/O errors from the host file (injected by an LD_PRELOAD shim) at every
# point of a sequence of guest writes: cowio reports them and exits, never
# crashes, and the image never becomes corrupt (leaks are allowed; repair
# removes them). Read errors give a message too.
source "$TESTS_DIR/lib.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0:detect_leaks=0"
shim="$BUILD_DIR/tests/block/libfault_inject.so"

qemu-img create -q -f qcow2 "$TMP/base.qcow2" 4M
qemu-io -f qcow2 -c "write -P 0x11 0 4M" "$TMP/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 "$TMP/top.qcow2"
cp "$TMP/top.qcow2" "$TMP/top.orig"

commands=(-c "write -P 0x22 1000 100k" -c "write -z 200k 64k" -c "write -c 512k 4k"
          -c "discard 300k 40k" -c "write -P 0x33 3M 8k" -c "flush")

# How many pwrites the whole sequence makes when nothing fails.
cp "$TMP/top.orig" "$TMP/top.qcow2"
crashes=0; corrupt=0; silent=0
for n in $(seq 0 2 120); do
    cp "$TMP/top.orig" "$TMP/top.qcow2"
    out=$(LD_PRELOAD="$shim" FAULT_PWRITE_AFTER=$n "$COWIO" "${commands[@]}" "$TMP/top.qcow2" 2>&1)
    status=$?
    if (( status >= 128 )); then
        crashes=$((crashes + 1)); diag "pwrite fault after $n: status $status" "$out"
    fi
    if ! grep -q "Input/output error" <<<"$out" && ! grep -q "^wrote" <<<"$out"; then
        silent=$((silent + 1)); diag "pwrite fault after $n: no message" "$out"
    fi
    qemu-img check "$TMP/top.qcow2" >"$TMP/check.out" 2>&1
    if (( $? == 2 )); then
        corrupt=$((corrupt + 1)); diag "pwrite fault after $n left corruption:"; sed 's/^/# /' "$TMP/check.out"
    fi
done
check_eq "no crash on write errors" 0 "$crashes"
check_eq "every write error is reported" 0 "$silent"
check_eq "no corruption after write errors" 0 "$corrupt"

out=$(LD_PRELOAD="$shim" FAULT_PREAD_AFTER=3 "$COWIO" -c "read -P 0x11 0 4M" "$TMP/base.qcow2" 2>&1)
status=$?
check "read error is reported" grep -q "Input/output error" <<<"$out"
check_eq "read error is a clean failure (no signal)" 1 "$(( status > 0 && status < 128 ))"

out=$(LD_PRELOAD="$shim" FAULT_FSYNC=1 "$COWIO" -c "write 0 4k" -c "flush" "$TMP/base.qcow2" 2>&1)
check "sync error is reported (qemu-io fails the write already)" grep -q "failed: Input/output error" <<<"$out"
done_testing
