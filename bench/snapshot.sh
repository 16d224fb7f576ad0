#!/usr/bin/env bash
# Internal snapshot create and delete on a large preallocated image: cowimg
# snapshot -c / -d against qemu-img snapshot -c / -d, on fresh copies of the
# same image, in alternating order. Every allocated cluster's refcount rises
# (and falls), so the time is what the refcount updates cost (and how often
# they reach the file).
#   bench/snapshot.sh [build-dir]
#   BENCH_SIZE (default 2G), BENCH_CLUSTER (default 4k), BENCH_ROUNDS (default 3)
set -euo pipefail
build=${1:-build}
cowimg="$build/src/tools/cowimg/cowimg"
size=${BENCH_SIZE:-2G}
cluster=${BENCH_CLUSTER:-4k}
rounds=${BENCH_ROUNDS:-3}
source "$(dirname "$0")/lib.sh"
scratch_dir

qemu-img create -q -f qcow2 -o "cluster_size=$cluster,preallocation=metadata" "$dir/base.qcow2" "$size"

seconds() {  # command...: "wall cpu" seconds of it (CPU: user + system, steadier on a shared host)
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
t = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{t:.3f} {r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime:.3f}")
PY
}
declare -A wall=() cpu=()
for ((r = 0; r < rounds; r++)); do
    order=(cowimg qemu-img)
    ((r % 2)) && order=(qemu-img cowimg)
    for tool in "${order[@]}"; do
        cp "$dir/base.qcow2" "$dir/$tool.qcow2"
        bin=$cowimg
        [[ $tool == qemu-img ]] && bin=qemu-img
        for op in -c -d; do
            t=$(seconds "$bin" snapshot "$op" snap "$dir/$tool.qcow2")
            wall[$tool $op]+=" ${t% *}" cpu[$tool $op]+=" ${t#* }"
            # The numbers mean nothing unless the result is a clean image.
            qemu-img check -q "$dir/$tool.qcow2"
        done
    done
done
echo "snapshot -c, then -d, on a $size qcow2, $cluster clusters, preallocation=metadata; $(nproc) cores," \
     "load $(cut -d' ' -f1 /proc/loadavg); medians of $rounds (wall includes the syncs' I/O waits)"
for metric in wall cpu; do
    declare -n runs=$metric
    declare -A med=()
    medians runs med
    for op in -c -d; do
        printf '  %-4s %s cowimg %7.3fs (runs:%s)   qemu-img %7.3fs (runs:%s)   cowimg/qemu-img %sx\n' \
            "$metric" "$op" "${med[cowimg $op]}" "${runs[cowimg $op]}" "${med[qemu-img $op]}" \
            "${runs[qemu-img $op]}" "$(ratio "${med[cowimg $op]}" "${med[qemu-img $op]}")"
    done
    unset -n runs
    unset med
done
