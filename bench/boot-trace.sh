#!/usr/bin/env bash
# "How much slower does a VM boot from a compressed image?" A boot-like trace
# replayed in one process through the block layer: sequential 128 KiB reads
# of the first 64 MiB, then 4 KiB reads at random offsets, one at a time
# (cowio vs qemu-io, the same -c commands). Images: raw, qcow2, and
# zlib- and zstd-compressed qcow2 holding the same compressible data (what an
# OS image looks like), page cache warm. Two traces: the random reads over
# the whole disk, and within the 64 MiB read first (a boot's working set).
# QEMU runs with aio=threads and aio=io_uring; the faster is compared. Every
# case runs BENCH_ROUNDS times (default 3), alternating, and medians count.
# Besides wall and CPU seconds, runq: the seconds the tool's main thread (the
# one replaying the trace) was runnable but waited for a CPU. On a shared host it is most of the gap
# between wall and CPU time (the trace blocks on nothing else: the page cache
# is warm), so it tells a busy host from a slow tool.
#   bench/boot-trace.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowio="$build/src/tools/cowio/cowio"
size_mb=${BENCH_SIZE_MB:-256}
rounds=${BENCH_ROUNDS:-3}
random_reads=${BENCH_RANDOM_READS:-20000}
dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# Data that compresses like an OS image (the same bytes every run).
python3 "$(dirname "$0")/os_like_data.py" "$dir/disk.raw" "$size_mb"
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
qemu-img convert -f raw -O qcow2 -c -o compression_type=zlib "$dir/disk.raw" "$dir/zlib.qcow2"
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$dir/disk.raw" "$dir/zstd.qcow2"
cat "$dir"/*.raw "$dir"/*.qcow2 >/dev/null

for span in disk boot; do   # where the random reads fall
    python3 - "$dir/trace-$span" "$size_mb" "$random_reads" "$span" <<'PY'
import random, sys
path, size_mb, n, span = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
random.seed(2)
blocks = (size_mb if span == "disk" else 64) << 8
with open(path, "w") as f:
    for off in range(0, 64 << 20, 128 << 10):
        f.write(f"read -q {off} 131072\n")
    for _ in range(n):
        f.write(f"read -q {random.randrange(blocks) * 4096} 4096\n")
PY
done

seconds() {  # trace, then the command: "wall cpu runq" seconds of replaying the trace; runq is
    # the time its main thread (which runs the trace) was runnable but waited for a CPU
    # (/proc schedstat, sampled every 5 ms): on a shared host, most of the gap between wall
    # and CPU time
    local trace=$1; shift
    python3 - "$trace" "$@" <<'PY'
import resource, subprocess, sys, time
with open(sys.argv[1]) as f:
    commands = [a for line in f.read().splitlines() for a in ("-c", line)]
cmd = sys.argv[2:-1] + commands + sys.argv[-1:]
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wait = 0     # the main thread's run-queue wait so far (ns)
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/task/{p.pid}/schedstat") as f:
            wait = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        pass        # it is ending
    time.sleep(0.005)
t = time.perf_counter() - t0
stderr = p.stderr.read()
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode or stderr:
    sys.exit(f"{sys.argv[2]} failed: {stderr.decode()[:500]}")
cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
print(f"{t:.3f} {cpu:.3f} {wait / 1e9:.3f}")
PY
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

images=(disk.raw disk.qcow2 zlib.qcow2 zstd.qcow2)
tools=(cowio qemu-threads qemu-io_uring)
echo "boot-like trace: 64 MiB in 128 KiB reads, then $random_reads random 4 KiB reads; ${size_mb} MiB images," \
     "$(nproc) cores, medians of $rounds; wall seconds, and CPU seconds (user + system, all threads:" \
     "steadier than wall time on a shared host)"
for span in disk boot; do
    echo "random reads over the $span ($([[ $span == disk ]] && echo "${size_mb} MiB" || echo "first 64 MiB"))"
    declare -A wall=() cpu=() runq=()
    loads=""
    for ((r = 0; r < rounds; r++)); do
        for image in "${images[@]}"; do
            order=("${tools[@]}")
            ((r % 2)) && order=(qemu-io_uring qemu-threads cowio)
            fmt=${image#*.}
            for tool in "${order[@]}"; do
                case $tool in
                cowio) t=$(seconds "$dir/trace-$span" "$cowio" -f "$fmt" "$dir/$image") ;;
                qemu-*) t=$(seconds "$dir/trace-$span" qemu-io -f "$fmt" -i "${tool#qemu-}" -t writeback "$dir/$image") ;;
                esac
                read -r w c q <<<"$t"
                wall[$tool $image]+=" $w" cpu[$tool $image]+=" $c" runq[$tool $image]+=" $q"
            done
        done
        loads+=" $(cut -d' ' -f1 /proc/loadavg)"
    done
    echo "  load average (1 min) at each round's end:$loads"
    for metric in wall cpu runq; do
        declare -n runs=$metric
        declare -A med=()
        for key in "${!runs[@]}"; do
            med[$key]=$(echo "${runs[$key]}" | median)
        done
        best_qemu() {  # image: "seconds mode" of QEMU's faster AIO mode
            python3 -c "import sys; t, u = float(sys.argv[1]), float(sys.argv[2]); print(f'{t} threads' if t <= u else f'{u} io_uring')" \
                "${med[qemu-threads $1]}" "${med[qemu-io_uring $1]}"
        }
        read -r q_raw _ <<<"$(best_qemu disk.raw)"
        for image in "${images[@]}"; do
            read -r q best <<<"$(best_qemu "$image")"
            printf '  %-4s %-11s cowio %7.3fs (%sx raw)   qemu-io %7.3fs (aio=%s; %sx raw)   qemu/cowio %sx   cowio runs:%s\n' \
                "$metric" "$image" "${med[cowio $image]}" "$(ratio "${med[cowio $image]}" "${med[cowio disk.raw]}")" \
                "$q" "$best" "$(ratio "$q" "$q_raw")" "$(ratio "$q" "${med[cowio $image]}")" "${runs[cowio $image]}"
        done
        unset -n runs
        unset med
    done
    unset wall cpu runq
done
