#!/usr/bin/env bash
# Live migration, cowvisor against QEMU 7.2 on the same test guest and the
# same loopback link (not part of the test suite): pre-copy of an idle
# guest and of one holding 256 MiB of data, and post-copy; total time and
# downtime as each reports them in query-migrate, with ratios (QEMU / cowvisor:
# > 1 means cowvisor is faster). Needs /dev/kvm: without it (nested machines
# whose kvm module does not bind, CI) it says so and exits 0 with no numbers.
# Usage: bench/migration.sh [build-dir]   (a release build gives real numbers)
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
source bench/lib.sh
COWVISOR=${COWVISOR:-$build/src/tools/cowvisor/cowvisor}
GUEST=${GUEST:-$build/guest/guest.elf}
QEMU=${QEMU:-qemu-system-x86_64}
QMP="python3 tests/vmstate/qmp.py"
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "bench/migration.sh: SKIPPED, /dev/kvm is not available here (no numbers measured)"
    exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/migration-bench.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

wait_for() {  # wait_for FILE TEXT
    for _ in $(seq 600); do grep -qF "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "timed out waiting for '$2' in $1" >&2; return 1
}

CAPS='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "postcopy-ram", "state": true}]}}'
PARAMS='{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 10000000000}}'

# vm NAME KIND APPEND [extra args]: starts cowvisor or QEMU with a QMP socket.
vm() {
    local name=$1 kind=$2 append=$3; shift 3
    if [[ $kind == cowvisor ]]; then
        "$COWVISOR" --kernel "$GUEST" --memory 1G --append "$append" --console "file:$dir/$name.out" \
            --qmp "unix:$dir/$name.sock,server,nowait" "$@" 2>/dev/null &
    else
        "$QEMU" -accel kvm -machine q35 -m 1G -nodefaults -display none -kernel "$GUEST" -append "$append" \
            -serial "file:$dir/$name.out" -qmp "unix:$dir/$name.sock,server,nowait" "$@" 2>/dev/null &
    fi
    pids+=($!)
}

# one KIND MODE APPEND: prints "total-time downtime" in ms.
one() {
    local kind=$1 mode=$2 append=$3 inc
    rm -f "$dir"/*.sock "$dir"/*.out "$dir/mig"
    inc=(--incoming "unix:$dir/mig")
    [[ $kind == qemu ]] && inc=(-incoming "unix:$dir/mig")
    vm dst "$kind" "$append" "${inc[@]}"
    vm src "$kind" "$append"
    wait_for "$dir/src.out" "counter 20 "
    $QMP "$dir/dst.sock" qmp_capabilities "$CAPS" >/dev/null
    local cmds=(qmp_capabilities "$CAPS" "$PARAMS" "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"unix:$dir/mig\"}}")
    [[ $mode == postcopy ]] && cmds+=(migrate-start-postcopy)
    migrate_until_done "$dir/src.sock" "${cmds[@]}"
    $QMP "$dir/src.sock" qmp_capabilities quit >/dev/null || true
    $QMP "$dir/dst.sock" qmp_capabilities quit >/dev/null || true
    wait
    pids=()
}

printf '%-28s %12s %12s %12s %12s %8s\n' case "cowvisor ms" "down ms" "qemu ms" "down ms" ratio
for c in "idle precopy:counter spin=1000" "256MiB precopy:counter pattern_mb=256 spin=1000" \
         "256MiB postcopy:counter pattern_mb=256 spin=1000"; do
    label=${c%%:*} append=${c#*:}
    mode=precopy
    [[ $label == *postcopy ]] && mode=postcopy
    read -r ct cd < <(one cowvisor "$mode" "$append")
    read -r qt qd < <(one qemu "$mode" "$append")
    printf '%-28s %12s %12s %12s %12s %8s\n' "$label" "$ct" "$cd" "$qt" "$qd" \
        "$(awk -v a="$qt" -v b="$ct" 'BEGIN { print (b > 0) ? a / b : 0 }')"
done
