#!/usr/bin/env bash
# The host side of guest disk I/O, measured without KVM (the in-guest
# figures are bench/vmm-blk-iops.sh's and need /dev/kvm): cowvisor's
# virtio-blk device driven by a fake driver over guest memory
# (bench/blk_device_bench.c: four requests in flight, kick, wait for the
# interrupt) against `qemu-img bench` doing the same requests through QEMU's
# block layer alone (no device: QEMU's side of the comparison is favoured),
# aio=threads and aio=io_uring, the faster counted. Workloads: 4 KiB reads,
# 4 KiB writes with a flush after every 64, 1 MiB reads and writes; offsets
# advance by the request size and wrap, as qemu-img bench does. Raw and
# qcow2 images of the same compressible data, page cache warm, writeback
# cache; every write run on a fresh, synced copy of the image. qemu-img's
# own run time counts, and the CPU of its start-up (a one-request run) is
# taken off its CPU time. Each case runs
# BENCH_ROUNDS times (default 5), alternating, and medians count: requests
# per second (wall) and CPU microseconds per request (user + system, all
# threads), steadier on a shared host. BENCH_WORKLOADS picks workloads by
# name (e.g. "write-4096"; default: all four).
#   bench/blk-device.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
tool="$build/bench/blk_device_bench"
rounds=${BENCH_ROUNDS:-5}
[[ -x $tool ]] || { echo "$0: $tool is missing (build it first: ninja -C $build)" >&2; exit 1; }
dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/os_like_data.py" "$dir/disk.raw" 128
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
cat "$dir/disk.raw" "$dir/disk.qcow2" >/dev/null
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
calc() { python3 -c "print(f'{$1:.2f}')"; }

measure() {  # command...: "wall cpu" of the run itself
    python3 - "$@" <<'PY'
import re, resource, subprocess, sys, time
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode:
    sys.exit(f"{sys.argv[1]} failed: {p.stderr[:500]}")
cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
m = re.match(r"\d+ ([\d.]+) ([\d.]+)", p.stdout)
if m:   # blk_device_bench times its own loop (no image open, no exit)
    print(m.group(1), m.group(2))
else:   # qemu-img bench times its run; its CPU includes start-up (see startup_cpu)
    t = re.search(r"Run completed in ([\d.]+) seconds", p.stdout)
    print(t.group(1) if t else f"{wall:.3f}", f"{cpu:.3f}")
PY
}
startup_cpu() {  # qemu-img bench arguments: CPU seconds of a one-request run (start, open, exit)
    local s=""
    for _ in 1 2 3; do s+=" $(measure qemu-img bench -c 1 "$@" | cut -d' ' -f2)"; done
    echo $s | median
}

echo "virtio-blk device path (no KVM) vs qemu-img bench; 128 MiB images, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), medians of $rounds"
for workload in "read 4096 40000 0" "write 4096 20000 64" "read 1048576 512 0" "write 1048576 512 0"; do
    read -r op size count flush <<<"$workload"
    [[ -z ${BENCH_WORKLOADS:-} || " $BENCH_WORKLOADS " == *" $op-$size "* ]] || continue
    for image in disk.raw disk.qcow2; do
        fmt=${image#*.}
        declare -A rate=() us=() start=()
        for aio in threads io_uring; do
            start[$aio]=$(startup_cpu -f "$fmt" -t writeback -i "$aio" "$dir/$image")
        done
        for ((r = 0; r < rounds; r++)); do
            order="cow threads io_uring"
            ((r % 2)) && order="io_uring threads cow"
            for who in $order; do
                target=$dir/$image
                if [[ $op == write ]]; then
                    cp "$dir/$image" "$dir/run.$fmt"
                    sync "$dir/run.$fmt"     # the copy's dirty pages are nobody's flush
                    target=$dir/run.$fmt
                fi
                if [[ $who == cow ]]; then
                    read -r wall cpu <<<"$(measure "$tool" "$fmt" "$target" "$op" "$size" "$count" 4 "$flush")"
                else
                    args=(-f "$fmt" -t writeback -i "$who" -d 4 -c "$count" -s "$size")
                    [[ $op == write ]] && args+=(-w)
                    ((flush)) && args+=(--flush-interval="$flush")
                    read -r wall cpu <<<"$(measure qemu-img bench "${args[@]}" "$target")"
                    cpu=$(calc "max($cpu - ${start[$who]}, 0)")
                fi
                rate[$who]+=" $(calc "$count / $wall")" us[$who]+=" $(calc "$cpu * 1e6 / $count")"
            done
        done
        for who in cow threads io_uring; do
            rate[$who]=$(echo ${rate[$who]} | median) us[$who]=$(echo ${us[$who]} | median)
        done
        best=threads
        [[ $(calc "${rate[io_uring]} > ${rate[threads]}") == 1.00 ]] && best=io_uring
        printf '%-5s %7s B %-11s cowvisor %9s req/s %7s us CPU/req   qemu-img (aio=%s) %9s req/s %7s us CPU/req   ratio %sx req/s, %sx less CPU\n' \
            "$op" "$size" "$image" "${rate[cow]}" "${us[cow]}" "$best" "${rate[$best]}" "${us[$best]}" \
            "$(calc "${rate[cow]} / ${rate[$best]}")" "$(calc "${us[$best]} / ${us[cow]}")"
        unset rate us start
    done
done
