#!/usr/bin/env bash
# qcow2 I/O: cowimg bench against qemu-img bench on the same files, in one
# run, page cache warm. Prints each case's seconds and the speed-up ratio
# (qemu time / cowimg time: above 1 means cowvisor is faster).
#   bench/qcow2-io.sh [build-dir]      (default: build; `make bench` runs it)
set -euo pipefail
build=${1:-build}
cowimg="$build/src/tools/cowimg/cowimg"
size_mb=${BENCH_SIZE_MB:-256}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# Data that compresses like an OS image (the same bytes every run).
python3 "$(dirname "$0")/os_like_data.py" "$dir/data.raw" "$size_mb"
qemu-img convert -f raw -O qcow2 -c "$dir/data.raw" "$dir/zlib.qcow2"
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$dir/data.raw" "$dir/zstd.qcow2"
qemu-img convert -f raw -O qcow2 "$dir/data.raw" "$dir/full.qcow2"
cp "$dir/data.raw" "$dir/full.raw"

seconds() { # best of 3 runs of a bench command ("Run completed in X seconds.")
    for _ in 1 2 3; do
        "$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'
    done | sort -g | head -1
}

# case name, then the bench arguments shared by both tools
bench_case() {
    local name=$1; shift
    local fmt=$1; shift
    "$cowimg" bench -f "$fmt" "$@" >/dev/null   # warm the page cache
    local q c
    q=$(seconds qemu-img bench -f "$fmt" "$@")
    c=$(seconds "$cowimg" bench -f "$fmt" "$@")
    python3 -c "import sys; q, c = float(sys.argv[2]), float(sys.argv[3]); print(f'{sys.argv[1]:<44} qemu-img {q:8.3f}s  cowimg {c:8.3f}s  ratio {q / c:6.2f}x')" "$name" "$q" "$c"
}

count4k=$((size_mb * 256))
echo "qcow2 I/O, ${size_mb} MiB images, $(nproc) cores"
bench_case "4k sequential read, zlib-compressed, QD1" qcow2 -c "$count4k" -s 4k -d 1 "$dir/zlib.qcow2"
bench_case "4k sequential read, zstd-compressed, QD1" qcow2 -c "$count4k" -s 4k -d 1 "$dir/zstd.qcow2"
bench_case "4k read, allocated, QD1" qcow2 -c "$count4k" -s 4k -d 1 "$dir/full.qcow2"
bench_case "4k read, allocated, QD16" qcow2 -c "$count4k" -s 4k -d 16 "$dir/full.qcow2"
bench_case "4k write, allocated, QD1" qcow2 -w -c "$count4k" -s 4k -d 1 "$dir/full.qcow2"
bench_case "4k write, allocated, QD16" qcow2 -w -c "$count4k" -s 4k -d 16 "$dir/full.qcow2"
bench_case "1M sequential read, allocated qcow2, QD1" qcow2 -c "$((size_mb * 8))" -s 1M -d 1 "$dir/full.qcow2"
bench_case "1M sequential read, raw, QD1" raw -c "$((size_mb * 8))" -s 1M -d 1 "$dir/full.raw"
q=$(seconds "$cowimg" bench -f qcow2 -c "$((size_mb * 8))" -s 1M -d 1 "$dir/full.qcow2")
r=$(seconds "$cowimg" bench -f raw -c "$((size_mb * 8))" -s 1M -d 1 "$dir/full.raw")
python3 -c "import sys; q, r = float(sys.argv[1]), float(sys.argv[2]); print(f'cowimg 1M reads: qcow2 {q:.3f}s vs raw {r:.3f}s: qcow2 takes {100 * (q / r - 1):+.1f}% vs raw')" "$q" "$r"
