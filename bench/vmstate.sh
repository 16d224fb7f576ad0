#!/usr/bin/env bash
# VM snapshots, cowvisor against QEMU 7.2 on the same test guest in one run
# (not part of the test suite):
#  1. restore from files to the guest's first output, 128 MiB and 1 GiB
#     guests (target <= 10 ms: lazy MAP_PRIVATE memory, so it must not grow
#     with guest memory);
#  2. savevm and loadvm of an idle 1 GiB guest on a qcow2 disk through QMP's
#     human-monitor-command, cowvisor vs qemu-system-x86_64 -accel kvm,
#     with ratios (QEMU time / cowvisor time: > 1 means cowvisor is faster).
# Usage: bench/vmstate.sh [build-dir]   (a release build gives real numbers)
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
COWVISOR=${COWVISOR:-$build/src/tools/cowvisor/cowvisor}
COWIMG=${COWIMG:-$build/src/tools/cowimg/cowimg}
GUEST=${GUEST:-$build/guest/guest.elf}
QEMU=${QEMU:-qemu-system-x86_64}
HELPER="python3 bench/vmstate_qmp.py"
dir=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-bench.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

wait_for() {  # wait_for FILE TEXT
    for _ in $(seq 600); do grep -qF "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "timed out waiting for '$2' in $1" >&2; return 1
}

echo "== restore from files to the first guest output (best of 5)"
# The third guest has 256 MiB of data in its memory file: restore maps it,
# so only the guest's own page faults (before its first output) grow.
for cfg in 128M:1 1G:1 1G:256; do
    mem=${cfg%:*} pattern=${cfg#*:}
    args=(--kernel "$GUEST" --memory "$mem" --append "counter pattern_mb=$pattern spin=1000")
    "$COWVISOR" "${args[@]}" --console "file:$dir/boot-$cfg.out" --qmp "unix:$dir/q.sock,server,nowait" \
        2>/dev/null &
    pids+=($!)
    wait_for "$dir/boot-$cfg.out" "counter 100 "
    python3 tests/vmstate/qmp.py "$dir/q.sock" qmp_capabilities \
        "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": {\"directory\": \"$dir/snap-$cfg\"}}" quit \
        >/dev/null
    wait
    best=; best_inner=
    for _ in 1 2 3 4 5; do
        sync
        read -r ms inner < <(CONSOLE=$dir/restore.out COWVISOR_LOG=info $HELPER first-output "$COWVISOR" \
             "${args[@]}" --restore "$dir/snap-$cfg" --console "file:$dir/restore.out")
        best=$(awk -v a="$ms" -v b="${best:-1e9}" 'BEGIN { print (a < b) ? a : b }')
        best_inner=$(awk -v a="$inner" -v b="${best_inner:-1e9}" 'BEGIN { print (a < b) ? a : b }')
    done
    printf '%-50s %8.2f ms  (exec to first guest output; main() to vCPU start %.2f ms)\n' \
        "cowvisor --restore, $mem guest, $pattern MiB of data" "$best" "$best_inner"
done

echo "== savevm / loadvm of an idle 1 GiB guest (qcow2 disk, virtio-blk-pci)"
declare -A T
measure() {  # measure NAME VMM-ARGS...: boots, then savevm + loadvm 5 times (best of each)
    local name=$1; shift
    "$COWIMG" create -f qcow2 "$dir/$name.qcow2" 64M >/dev/null
    rm -f "$dir/$name.sock" "$dir/$name.out"
    "$@" 2>"$dir/$name.err" &
    pids+=($!)
    wait_for "$dir/$name.out" "idle"
    sleep 0.5
    $HELPER hmp "$dir/$name.sock" "savevm s1" "loadvm s1" "savevm s1" "loadvm s1" "savevm s1" "loadvm s1" \
        "savevm s1" "loadvm s1" "savevm s1" "loadvm s1" >"$dir/$name.times"
    wait
    T[$name-save]=$(awk -F'\t' '$1 == "savevm s1" && (m == "" || $2 < m) { m = $2 } END { print m }' "$dir/$name.times")
    T[$name-load]=$(awk -F'\t' '$1 == "loadvm s1" && (m == "" || $2 < m) { m = $2 } END { print m }' "$dir/$name.times")
    for op in save load; do
        printf '%-50s %8.1f ms  %s\n' "$name ${op}vm" "${T[$name-$op]}" \
            "$(awk -F'\t' -v c="${op}vm s1" '$1 == c { print $3; exit }' "$dir/$name.times")"
    done
    qemu-img snapshot -l -U "$dir/$name.qcow2" | tail -n +2 | sed 's/^/    /'
}
measure cowvisor "$COWVISOR" --kernel "$GUEST" --memory 1G --append idle \
    --disk "file=$dir/cowvisor.qcow2,transport=pci" --console "file:$dir/cowvisor.out" \
    --qmp "unix:$dir/cowvisor.sock,server,nowait"
measure qemu "$QEMU" -accel kvm -machine q35 -m 1G -nodefaults -display none -kernel "$GUEST" -append idle \
    -serial "file:$dir/qemu.out" -drive "file=$dir/qemu.qcow2,if=none,id=d0,format=qcow2" \
    -device virtio-blk-pci,drive=d0 -qmp "unix:$dir/qemu.sock,server,nowait"
for op in save load; do
    printf '%-50s %8.2fx\n' "${op}vm ratio (QEMU / cowvisor)" \
        "$(awk -v a="${T[qemu-$op]}" -v b="${T[cowvisor-$op]}" 'BEGIN { print (b > 0) ? a / b : 0 }')"
done
