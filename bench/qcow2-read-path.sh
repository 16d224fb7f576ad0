#!/usr/bin/env bash
# The cost of qcow2 on the read path: 4 KiB and 1 MiB sequential reads at depth 16 through
# `cowimg bench` on raw and on an allocated qcow2 holding the same data, and
# `qemu-img bench` on both in each of its AIO modes (threads, io_uring, and
# with O_DIRECT native Linux AIO) with the same cache mode. Page cache warm (cache=writeback), then O_DIRECT
# (cache=none), where the reads go to the disk. The host is shared and noisy:
# every case runs BENCH_ROUNDS times (default 5), the tools alternating, and
# medians are compared.
#   bench/qcow2-read-path.sh [build-dir]      (default: build)
# Ratios: "qcow2/raw" is cowimg's qcow2 time over its raw time (1.00: qcow2
# costs nothing); "vs qemu" is QEMU's fastest mode's time over cowimg's (above
# 1 means cowimg is faster).
set -euo pipefail
build=${1:-build}
cowimg="$build/src/tools/cowimg/cowimg"
size_mb=${BENCH_SIZE_MB:-256}
rounds=${BENCH_ROUNDS:-5}
count=${BENCH_COUNT:-65536}         # 4 KiB reads
count_1m=${BENCH_COUNT_1M:-2048}    # 1 MiB reads (the image read 8 times over)
source "$(dirname "$0")/lib.sh"
scratch_dir
head -c "${size_mb}M" /dev/urandom >"$dir/disk.raw"
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
cat "$dir/disk.raw" "$dir/disk.qcow2" >/dev/null

# One cache mode: every tool and format once per round, the order alternating.
run_mode() {  # cache mode (writeback|none), request size, count
    local t=$1 args=(-c "$3" -d 16 -s "$2" -t "$1")
    declare -A all=()
    local runs=("cowimg raw" "cowimg qcow2" "qemu-threads raw" "qemu-threads qcow2"
                "qemu-io_uring raw" "qemu-io_uring qcow2")
    local modes=(threads io_uring)
    if [[ $t == none ]]; then   # native AIO needs O_DIRECT
        runs+=("qemu-native raw" "qemu-native qcow2")
        modes+=(native)
    fi
    for ((r = 0; r < rounds; r++)); do
        local order=("${runs[@]}")
        if ((r % 2)); then
            order=(); for ((i = ${#runs[@]} - 1; i >= 0; i--)); do order+=("${runs[i]}"); done
        fi
        for run in "${order[@]}"; do
            local tool=${run% *} fmt=${run#* }
            case $tool in
            cowimg) all[$run]+=" $(seconds "$cowimg" bench -f "$fmt" "${args[@]}" "$dir/disk.$fmt")" ;;
            qemu-*) all[$run]+=" $(seconds qemu-img bench -f "$fmt" -i "${tool#qemu-}" "${args[@]}" "$dir/disk.$fmt")" ;;
            esac
        done
    done
    declare -A med=()
    for run in "${runs[@]}"; do
        med[$run]=$(echo "${all[$run]}" | median)
        printf '  %-20s median %7.3fs   runs:%s\n' "$run" "${med[$run]}" "${all[$run]}"
    done
    for fmt in raw qcow2; do
        local q best each="" pairs=()
        for mode in "${modes[@]}"; do
            each+=" $mode $(ratio "${med["qemu-$mode $fmt"]}" "${med["cowimg $fmt"]}")x"
            pairs+=("${med["qemu-$mode $fmt"]}" "$mode")
        done
        read -r q best <<<"$(fastest "${pairs[@]}")"
        printf '  %-5s cowimg vs qemu-img (aio=%s, fastest): %sx   (each:%s)\n' "$fmt" "$best" \
            "$(ratio "$q" "${med["cowimg $fmt"]}")" "$each"
    done
    printf '  cowimg qcow2/raw: %sx   qemu-img qcow2/raw (threads): %sx\n' \
        "$(ratio "${med["cowimg qcow2"]}" "${med["cowimg raw"]}")" \
        "$(ratio "${med["qemu-threads qcow2"]}" "${med["qemu-threads raw"]}")"
}

echo "sequential reads, depth 16, ${size_mb} MiB image, $(nproc) cores, medians of $rounds"
for t in writeback none; do
    echo "4 KiB x $count, cache=$t"
    run_mode "$t" 4k "$count"
    echo "1 MiB x $count_1m, cache=$t"
    run_mode "$t" 1M "$count_1m"
done
