#!/usr/bin/env bash
# Queue-thread poll mode (--disk queue-threads=on,poll-max-ns=N, QEMU's
# iothread poll-max-ns) measured without KVM: bench/blk_device_bench drives
# cowvisor's virtio-blk device (the library's queue path) with a fake driver
# over guest memory, four requests in flight, 4 KiB reads of a warm image.
# Cases: served on the kicking thread (no queue thread), a queue thread
# without polling (poll-max-ns=0), and polling up to 10 us and 50 us. The
# fake driver runs on the host beside the queue thread, so a spinning queue
# thread competes with it for the cores (in a VM the vCPU thread does); on a
# host with idle cores the spin replaces a wake-up per kick. Every case runs
# BENCH_ROUNDS times (default 5), alternating; medians of wall seconds and
# CPU microseconds per request; "vs poll off": poll-max-ns=0's wall over
# the case's (above 1: faster).
#   bench/blk-poll.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
tool="$build/bench/blk_device_bench"
rounds=${BENCH_ROUNDS:-5}
count=${BENCH_COUNT:-20000}
[[ -x $tool ]] || { echo "$0: $tool is missing (build it first: ninja -C $build bench/blk_device_bench)" >&2; exit 1; }
source "$(dirname "$0")/lib.sh"
scratch_dir
python3 "$(dirname "$0")/os_like_data.py" "$dir/disk.raw" 128
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
cat "$dir/disk.raw" "$dir/disk.qcow2" >/dev/null

cases=(kicking queue-threads=0 queue-threads=10000 queue-threads=50000)
echo "virtio-blk queue poll mode, 4 KiB reads x $count, depth 4, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), medians of $rounds"
for fmt in raw qcow2; do
    declare -A wall=() cpu=()
    for ((r = 0; r < rounds; r++)); do
        order=("${cases[@]}")
        ((r % 2)) && order=(queue-threads=50000 queue-threads=10000 queue-threads=0 kicking)
        for c in "${order[@]}"; do
            arg=()
            [[ $c != kicking ]] && arg=("$c")
            read -r n w u <<<"$("$tool" "$fmt" "$dir/disk.$fmt" read 4096 "$count" 4 0 "${arg[@]}")"
            wall[$c]+=" $w"
            cpu[$c]+=" $(python3 -c "import sys; print(f'{float(sys.argv[1]) * 1e6 / int(sys.argv[2]):.1f}')" "$u" "$n")"
        done
    done
    declare -A wmed=() cmed=()
    medians wall wmed
    medians cpu cmed
    echo "$fmt"
    for c in "${cases[@]}"; do
        printf '  %-22s wall %7.3fs   cpu %6.1f us/request   vs poll off %sx   runs:%s\n' "$c" "${wmed[$c]}" \
            "${cmed[$c]}" "$(ratio "${wmed[queue-threads=0]}" "${wmed[$c]}")" "${wall[$c]}"
    done
    unset wall cpu wmed cmed
done
