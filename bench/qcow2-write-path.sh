#!/usr/bin/env bash
# The qcow2 write path against raw and against qemu-img: `cowimg bench -w`
# and `qemu-img bench -w` (aio=threads and aio=io_uring, the faster counted)
# on the same files, page cache (cache=writeback). Workloads, depth 16:
#   4k-flush   4 KiB writes scattered over the image (step 1 MiB + 4 KiB,
#              wrapping), a flush every 64;
#   1m-seq     1 MiB sequential writes.
# Images: raw, an allocated qcow2 (the data written in place) and an empty
# qcow2 (every write allocates). Each run gets a fresh, synced copy. Every
# case runs BENCH_ROUNDS times (default 5), the tools alternating; medians
# count. "qcow2/raw": cowimg's qcow2 time over its raw time; "vs qemu":
# QEMU's fastest mode's time over cowimg's (above 1: cowimg is faster).
#   bench/qcow2-write-path.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowimg="$build/src/tools/cowimg/cowimg"
size_mb=${BENCH_SIZE_MB:-256}
rounds=${BENCH_ROUNDS:-5}
source "$(dirname "$0")/lib.sh"
scratch_dir
python3 "$(dirname "$0")/os_like_data.py" "$dir/disk.raw" "$size_mb"
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
qemu-img create -q -f qcow2 "$dir/empty.qcow2" "${size_mb}M"
fresh() {  # image: a synced copy to write into
    cp "$dir/$1" "$dir/w.${1#*.}"
    sync "$dir/w.${1#*.}"
    echo "$dir/w.${1#*.}"
}

declare -A workloads=(
    [4k-flush]="-c 20000 -s 4k -S 1052672 --flush-interval 64"
    [1m-seq]="-c 2048 -s 1M"
)
images=(disk.raw disk.qcow2 empty.qcow2)
tools=(cowimg qemu-threads qemu-io_uring)
echo "qcow2 write path, depth 16, ${size_mb} MiB images, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), medians of $rounds"
for w in 4k-flush 1m-seq; do
    read -ra args <<<"${workloads[$w]}"
    declare -A all=()
    for ((r = 0; r < rounds; r++)); do
        order=("${tools[@]}")
        ((r % 2)) && order=(qemu-io_uring qemu-threads cowimg)
        for image in "${images[@]}"; do
            fmt=${image#*.}
            for tool in "${order[@]}"; do
                img=$(fresh "$image")
                case $tool in
                cowimg) all[$tool $image]+=" $(seconds "$cowimg" bench -w -f "$fmt" -d 16 "${args[@]}" "$img")" ;;
                qemu-*) all[$tool $image]+=" $(seconds qemu-img bench -w -f "$fmt" -d 16 -i "${tool#qemu-}" "${args[@]}" "$img")" ;;
                esac
            done
        done
    done
    declare -A med=()
    medians all med
    echo "$w (${workloads[$w]})"
    for image in "${images[@]}"; do
        read -r q best <<<"$(fastest "${med[qemu-threads $image]}" threads "${med[qemu-io_uring $image]}" io_uring)"
        printf '  %-12s cowimg %7.3fs (%sx raw)   qemu-img %7.3fs (aio=%s)   vs qemu %sx   cowimg runs:%s\n' \
            "$image" "${med[cowimg $image]}" "$(ratio "${med[cowimg $image]}" "${med[cowimg disk.raw]}")" \
            "$q" "$best" "$(ratio "$q" "${med[cowimg $image]}")" "${all[cowimg $image]}"
    done
    unset all med
done
