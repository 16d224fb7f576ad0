#!/usr/bin/env bash
# What crash safety costs a writer: fdatasync calls (counted with strace)
# and wall time for the same qemu-io command sequence through cowio and
# through qemu-io, on fresh qcow2 images with the same options, writeback
# cache. Sequences: sequential 64 KiB writes + flush, random 4 KiB
# allocating writes with a flush every 64, and discards + flush.
#   bench/qcow2-write-syncs.sh [build dir]      (default build)
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
cowio=$PWD/$build/src/tools/cowio/cowio
work=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0    # sanitized builds: LSan cannot run under ptrace
command -v strace >/dev/null || { echo "SKIPPED: strace is missing"; exit 0; }

seq_cmds() { for i in $(seq 0 1023); do echo "write -P 1 $((i * 65536)) 64k"; done; echo flush; }
rand_cmds() {
    RANDOM=7
    for i in $(seq 1 2048); do
        echo "write -P 2 $(( (RANDOM * 32768 + RANDOM) % 262144 * 4096 )) 4k"
        (( i % 64 )) || echo flush
    done
}
discard_cmds() { echo "write -P 3 0 64M"; echo flush; for i in $(seq 0 1023); do echo "discard $((i * 65536)) 64k"; done; echo flush; }

run_one() {     # tool sequence -> "syncs seconds"
    local tool=$1 seq=$2 img=$work/img.qcow2
    qemu-img create -q -f qcow2 "$img" 1G
    "${seq}_cmds" >"$work/cmds"
    local t0 t1
    t0=$(date +%s.%N)
    strace -f -c -e trace=fdatasync,fsync -o "$work/strace" "$tool" -t writeback "$img" <"$work/cmds" >/dev/null
    t1=$(date +%s.%N)
    local syncs
    syncs=$(awk '/fdatasync|fsync/ {n += $4} END {print n + 0}' "$work/strace")
    echo "$syncs $(echo "$t1 - $t0" | bc)"
}

printf '%-10s %14s %14s %10s %10s %8s\n' sequence "cowio syncs" "qemu-io syncs" "cowio s" "qemu-io s" ratio
for s in seq rand discard; do
    read -r cs ct < <(run_one "$cowio" "$s")
    read -r qs qt < <(run_one qemu-io "$s")
    printf '%-10s %14s %14s %10.2f %10.2f %8.2f\n' "$s" "$cs" "$qs" "$ct" "$qt" "$(echo "$ct / $qt" | bc -l)"
done
