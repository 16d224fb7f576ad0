#!/usr/bin/env bash
# A kill at any write of an image's creation (cowimg create, and convert,
# which creates its target then fills it) leaves either no qcow2 image or a
# consistent one, never a header that names structures not yet written.
# The kill is simulated at every write in turn by an LD_PRELOAD shim.
. "$TESTS_DIR/lib.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0:detect_leaks=0"
shim="$BUILD_DIR/tests/block/libfault_inject.so"

truncate -s 3M "$TMP/src.raw"
"$QEMU_IO" -f raw -c 'write -P 0x41 0 1M' -c 'write -P 0x42 2M 512k' "$TMP/src.raw" >/dev/null

# run_killed_at N command...: true when the shim ended the command.
run_killed_at() {
    local n=$1; shift
    LD_PRELOAD="$shim" FAULT_EXIT_BEFORE_PWRITE=$n "$@" >/dev/null 2>&1
    [[ $? -eq 137 ]]
}

# A target left behind is fine when it is no qcow2 image (the header never
# landed) or when qemu-img check finds no corruption (leaks are allowed).
judge() {
    [[ -e "$1" ]] || return 0
    local fmt
    fmt=$("$QEMU_IMG" info -U --output=json "$1" 2>/dev/null |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])' 2>/dev/null)
    [[ "$fmt" != qcow2 ]] && return 0
    "$QEMU_IMG" check -q "$1" >/dev/null 2>&1
    local rc=$?
    [[ $rc -eq 0 || $rc -eq 3 ]]
}

# Every write of the creation itself, then a sample of the filling (each
# run costs a sanitized process start): STRIDE > 1 samples.
for cmd in "create -f qcow2 -o cluster_size=4k DST 3M" "convert -O qcow2 $TMP/src.raw DST" \
           "convert -c -O qcow2 $TMP/src.raw DST"; do
    kills=0; bad=0
    for n in $(seq 0 12) $(seq 13 "${STRIDE:-5}" 200); do
        rm -f "$TMP/dst.qcow2"
        # shellcheck disable=SC2086
        run_killed_at "$n" "$COWIMG" ${cmd//DST/$TMP/dst.qcow2} || break
        kills=$((kills + 1))
        judge "$TMP/dst.qcow2" || { bad=$((bad + 1)); diag "killed before write $n: corrupt"; }
    done
    check_eq "cowimg ${cmd%% *} killed at each of its $kills writes: no corrupt image left" 0 "$bad"
    (( kills > 2 )) && ok "the shim did kill it ($kills points)" || not_ok "the shim did kill it ($kills points)"
done
done_testing
