#!/usr/bin/env bash
# NBD serving: qemu-img bench as the client against cownbd and qemu-nbd
# exporting copies of the same images over UNIX sockets, in one run. Prints
# each case's seconds (best of 3) and the ratio qemu-nbd time / cownbd time
# (above 1 means cownbd is faster). Not part of the test suite.
#   bench/nbd.sh [build-dir]      (default: build; BENCH_SIZE_MB=256)
set -euo pipefail
build=${1:-build}
cownbd=${COWNBD:-$build/src/tools/cownbd/cownbd}
size_mb=${BENCH_SIZE_MB:-256}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cownbd-bench.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

head -c $((size_mb * 1024 * 1024)) /dev/urandom >"$dir/data.raw"
qemu-img convert -f raw -O qcow2 "$dir/data.raw" "$dir/full.qcow2"
for s in q c; do
    cp "$dir/full.qcow2" "$dir/$s.qcow2"
    qemu-img create -q -f qcow2 "$dir/$s-empty.qcow2" "${size_mb}M"
    cp "$dir/data.raw" "$dir/$s.raw"
done

# start SERVER-NAME PROGRAM FORMAT IMAGE: a persistent server on $dir/NAME.sock
start() {
    "$2" --fork --pid-file "$dir/$1.pid" -t -e 0 -f "$3" -k "$dir/$1.sock" "$4"
    pids+=("$(cat "$dir/$1.pid")")
}
start q-qcow2 qemu-nbd qcow2 "$dir/q.qcow2"
start c-qcow2 "$cownbd" qcow2 "$dir/c.qcow2"
start q-empty qemu-nbd qcow2 "$dir/q-empty.qcow2"
start c-empty "$cownbd" qcow2 "$dir/c-empty.qcow2"
start q-raw qemu-nbd raw "$dir/q.raw"
start c-raw "$cownbd" raw "$dir/c.raw"

seconds() { # best of 3 runs of a bench command
    for _ in 1 2 3; do
        "$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'
    done | sort -g | head -1
}

# bench_case NAME EXPORT bench-args...: EXPORT is qcow2, empty or raw
bench_case() {
    local name=$1 exp=$2; shift 2
    local q c
    q=$(seconds qemu-img bench -f raw "$@" "nbd+unix:///?socket=$dir/q-$exp.sock")
    c=$(seconds qemu-img bench -f raw "$@" "nbd+unix:///?socket=$dir/c-$exp.sock")
    python3 -c "import sys; q, c = float(sys.argv[2]), float(sys.argv[3]); print(f'{sys.argv[1]:<42} qemu-nbd {q:8.3f}s  cownbd {c:8.3f}s  ratio {q / c:6.2f}x')" "$name" "$q" "$c"
}

count4k=$((size_mb * 256))
echo "NBD over UNIX sockets, ${size_mb} MiB images, $(nproc) cores"
bench_case "4k sequential read, qcow2, QD1" qcow2 -c "$count4k" -s 4k -d 1
bench_case "4k sequential read, qcow2, QD16" qcow2 -c "$count4k" -s 4k -d 16
bench_case "64k read, qcow2, QD16 (4 passes)" qcow2 -c "$((size_mb * 64))" -s 64k -d 16
bench_case "1M sequential read, qcow2, QD4" qcow2 -c "$((size_mb * 4))" -s 1M -d 4
bench_case "1M sequential read, raw, QD4" raw -c "$((size_mb * 4))" -s 1M -d 4
bench_case "1M read of unallocated qcow2 (holes), QD4" empty -c "$((size_mb * 4))" -s 1M -d 4
bench_case "4k write, allocated qcow2, QD16" qcow2 -w -c "$count4k" -s 4k -d 16
bench_case "64k write, raw, QD16 (4 passes)" raw -w -c "$((size_mb * 64))" -s 64k -d 16
