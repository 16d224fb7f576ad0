#!/usr/bin/env bash
# The cost of dirty bitmap tracking on writes: cowimg bench against
# qemu-img bench (-t none -i io_uring, QEMU's fastest I/O path) on the same
# allocated qcow2 image, with no bitmap and with two enabled persistent
# bitmaps (64 KiB and 512 B granules: each write sets bits in both, and both
# are stored on close). Prints seconds, the speed-up ratio (qemu time /
# cowimg time: above 1 means cowvisor is faster) and each tool's overhead.
#   bench/bitmap-writes.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowimg="$build/src/tools/cowimg/cowimg"
size_mb=${BENCH_SIZE_MB:-256}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

qemu-img create -q -f qcow2 -o preallocation=metadata "$dir/plain.qcow2" "${size_mb}M"
qemu-io -c "write -P 1 0 ${size_mb}M" "$dir/plain.qcow2" >/dev/null
cp "$dir/plain.qcow2" "$dir/bitmaps.qcow2"
qemu-img bitmap --add -g 64k "$dir/bitmaps.qcow2" coarse
qemu-img bitmap --add -g 512 "$dir/bitmaps.qcow2" fine

seconds() { # best of 3 runs of a bench command ("Run completed in X seconds.")
    for _ in 1 2 3; do
        "$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'
    done | sort -g | head -1
}

declare -A t
count=$((size_mb * 256))
for img in plain bitmaps; do
    for depth in 1 16; do
        args=(-f qcow2 -w -c "$count" -s 4k -d "$depth" -S 4k -t none)
        t[q,$img,$depth]=$(seconds qemu-img bench -i io_uring "${args[@]}" "$dir/$img.qcow2")
        t[c,$img,$depth]=$(seconds "$cowimg" bench -i io_uring "${args[@]}" "$dir/$img.qcow2")
    done
done
echo "4k sequential writes over ${size_mb} MiB, O_DIRECT, $(nproc) cores"
for depth in 1 16; do
    for img in plain bitmaps; do
        python3 -c "import sys; q, c = float(sys.argv[2]), float(sys.argv[3]); print(f'{sys.argv[1]:<34} qemu-img {q:8.3f}s  cowimg {c:8.3f}s  ratio {q / c:6.2f}x')" \
            "QD$depth, $img" "${t[q,$img,$depth]}" "${t[c,$img,$depth]}"
    done
    python3 -c "import sys; qp, qb, cp, cb = map(float, sys.argv[1:]); print(f'QD$depth bitmap overhead: qemu-img {100 * (qb / qp - 1):+.1f}%  cowimg {100 * (cb / cp - 1):+.1f}%')" \
        "${t[q,plain,$depth]}" "${t[q,bitmaps,$depth]}" "${t[c,plain,$depth]}" "${t[c,bitmaps,$depth]}"
done
# Neither tool may have left the image inconsistent.
qemu-img check -q "$dir/bitmaps.qcow2"
