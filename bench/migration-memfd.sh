#!/usr/bin/env bash
# Same-host migration of an idle guest's 4 GiB of RAM (guest RAM shared,
# not copied): cowvisor's memfd passing on bare machines (no KVM needed,
# bench/migration_memfd.c) against QEMU 7.2's x-ignore-shared with a
# shared memory-backend-file in /dev/shm, run with TCG and -S (QEMU, too,
# needs no KVM for this: the guest never runs). Prints QEMU's total-time
# and downtime from query-migrate next to cowvisor's (the source's
# total-time, wall time to the destination done) and the ratio.
# Usage: bench/migration-memfd.sh [build-dir] [GiB] [runs]
set -euo pipefail
build=${1:-build}
gib=${2:-4}
runs=${3:-3}
cd "$(dirname "$0")/.."
source bench/lib.sh
QEMU=${QEMU:-qemu-system-x86_64}
QMP="python3 tests/vmstate/qmp.py"
dir=$(mktemp -d "${TMPDIR:-/tmp}/memfd-bench.XXXXXX")
shm=/dev/shm/cowvisor-memfd-bench.$$
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir" "$shm"' EXIT

"$build/bench/migration_memfd" "$gib" "$runs" 2>/dev/null | tee "$dir/cowvisor.txt"

wait_sock() {
    for _ in $(seq 600); do [[ -S $1 ]] && return 0; sleep 0.05; done
    echo "no QMP socket $1" >&2; return 1
}

# qemu_one: prints "total-time downtime" in ms (run in this shell: pids are the trap's).
qemu_one() {
    rm -f "$dir"/*.sock "$dir/mig"
    local vm=("$QEMU" -accel tcg -machine pc,memory-backend=mem -m "${gib}G" -nodefaults -display none -S
              -object "memory-backend-file,id=mem,size=${gib}G,mem-path=$shm,share=on")
    "${vm[@]}" -qmp "unix:$dir/dst.sock,server,nowait" -incoming "unix:$dir/mig" 2>/dev/null &
    pids+=($!)
    "${vm[@]}" -qmp "unix:$dir/src.sock,server,nowait" 2>/dev/null &
    pids+=($!)
    wait_sock "$dir/dst.sock"
    wait_sock "$dir/src.sock"
    local caps='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "x-ignore-shared", "state": true}]}}'
    $QMP "$dir/dst.sock" qmp_capabilities "$caps" >/dev/null
    migrate_until_done "$dir/src.sock" qmp_capabilities "$caps" \
        "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"unix:$dir/mig\"}}" >"$dir/qemu.txt"
    $QMP "$dir/src.sock" qmp_capabilities quit >/dev/null || true
    $QMP "$dir/dst.sock" qmp_capabilities quit >/dev/null || true
    wait
    pids=()
}

echo "QEMU 7.2, x-ignore-shared, ${gib} GiB shared memory-backend-file, TCG, -S:"
printf '%4s %14s %12s\n' run "total-time ms" "downtime ms"
qsum=0
for i in $(seq "$runs"); do
    qemu_one
    read -r qt qd <"$dir/qemu.txt"
    printf '%4d %14s %12s\n' "$i" "$qt" "$qd"
    qsum=$((qsum + qt))
done
csum=$(awk '$1 ~ /^[0-9]+$/ { s += $4 } END { print s + 0 }' "$dir/cowvisor.txt")
awk -v q="$qsum" -v c="$csum" -v n="$runs" 'BEGIN { printf "mean total-time: QEMU %.1f ms, cowvisor %.1f ms, ratio QEMU/cowvisor %.1fx (> 1: cowvisor faster)\n", q / n, c / n, (c > 0) ? q / c : 0 }'
