#!/usr/bin/env bash
# virtio-blk 4 KiB random reads inside the test guest (four in flight, from
# CPL 3), cowvisor vs QEMU 7.2 + KVM on the same image: raw over virtio-mmio
# (QEMU microvm), then raw, qcow2, and zlib- and zstd-compressed qcow2
# holding the same compressible data over modern virtio-pci, against QEMU in
# its default configuration (aio=threads, no iothread) and in its fastest
# (an iothread for the device, aio=io_uring, the same cache mode). The guest
# prints "bench-blk: start" and "bench-blk: end"; the host times those lines.
# This host is shared and noisy, so each case runs BENCH_ROUNDS times
# (default 5), alternating which VMM goes first, and the medians are compared.
# Then writes and sequential throughput over virtio-pci, same configurations:
# 4 KiB random writes with a flush after every 64 (raw, qcow2), and 1 MiB
# sequential reads (raw, qcow2, zstd qcow2) and writes (raw, qcow2); every
# write run starts from a fresh copy of the image, so that no VMM finds the
# clusters another one allocated.
#   bench/vmm-blk-iops.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowvisor="$build/src/tools/cowvisor/cowvisor"
guest="$build/guest/guest.elf"
reads=${BENCH_READS:-20000}
rounds=${BENCH_ROUNDS:-5}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "SKIP: /dev/kvm is not available: the in-guest benchmarks (random reads, random writes," \
         "sequential 1 MiB reads and writes) need KVM; nothing was measured"
    exit 0
fi
for f in "$cowvisor" "$guest"; do
    [[ -e $f ]] || { echo "$0: $f is missing (build it first: ninja -C $build)" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "$0: qemu-system-x86_64 is not installed" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
# Data that compresses like an OS image (the same bytes every run).
python3 "$(dirname "$0")/os_like_data.py" "$dir/disk.raw" 128
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
qemu-img convert -f raw -O qcow2 -c -o compression_type=zlib "$dir/disk.raw" "$dir/zlib.qcow2"
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$dir/disk.raw" "$dir/zstd.qcow2"
cat "$dir"/disk.raw "$dir"/*.qcow2 >/dev/null     # page cache warm for all

iops() {  # command...: requests per second between the guest's markers ($ops of them)
    python3 - "$ops" "$@" <<'PY'
import subprocess, sys, time
reads, cmd = int(sys.argv[1]), sys.argv[2:]
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
start = end = None
for line in p.stdout:
    if b"bench-blk: start" in line:
        start = time.perf_counter()
    elif b"bench-blk: end" in line:
        end = time.perf_counter()
        break
p.wait(timeout=120)
if start is None or end is None:
    sys.exit("the guest did not run the benchmark")
print(f"{reads / (end - start):.0f}")
PY
}
ops=$reads append="bench-blk=$reads"
run_cowvisor() {  # transport image
    iops "$cowvisor" --kernel "$guest" --memory 256M --append "$append" \
        --disk "file=$dir/$2,format=${2#*.},transport=$1"
}
run_qemu() {  # transport image [fast]
    local fmt=${2#*.}
    if [[ $1 == mmio ]]; then
        iops qemu-system-x86_64 -M microvm -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -global virtio-mmio.force-legacy=false \
            -drive "if=none,id=d,file=$dir/$2,format=$fmt" -device virtio-blk-device,drive=d \
            -kernel "$guest" -append "microvm $append"
    elif [[ ${3:-} == fast ]]; then
        iops qemu-system-x86_64 -M pc -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -object iothread,id=io0 \
            -drive "if=none,id=d,file=$dir/$2,format=$fmt,aio=io_uring,cache=writeback" \
            -device virtio-blk-pci,drive=d,iothread=io0,disable-legacy=on -kernel "$guest" -append "$append"
    else
        iops qemu-system-x86_64 -M pc -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 \
            -drive "if=none,id=d,file=$dir/$2,format=$fmt" -device virtio-blk-pci,drive=d,disable-legacy=on \
            -kernel "$guest" -append "$append"
    fi
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
declare -A cow=()
for config in "mmio disk.raw" "pci disk.raw" "pci disk.qcow2" "pci zlib.qcow2" "pci zstd.qcow2"; do
    c_all="" q_all="" f_all=""
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2)); then
            q_all+=" $(run_qemu $config)"; [[ $config == pci* ]] && f_all+=" $(run_qemu $config fast)"
            c_all+=" $(run_cowvisor $config)"
        else
            c_all+=" $(run_cowvisor $config)"; q_all+=" $(run_qemu $config)"
            [[ $config == pci* ]] && f_all+=" $(run_qemu $config fast)"
        fi
    done
    c=$(echo $c_all | median) q=$(echo $q_all | median)
    cow[$config]=$c
    printf '%-15s cowvisor %8s IOPS   qemu default %8s IOPS (%sx)' "$config" "$c" "$q" "$(ratio "$c" "$q")"
    if [[ -n $f_all ]]; then
        f=$(echo $f_all | median)
        printf '   qemu iothread+io_uring %8s IOPS (%sx)' "$f" "$(ratio "$c" "$f")"
    fi
    printf '   (medians of %d; cowvisor:%s; qemu:%s%s)\n' "$rounds" "$c_all" "$q_all" "${f_all:+; fast:$f_all}"
done
for image in zlib.qcow2 zstd.qcow2; do
    echo "cowvisor on $image: $(ratio "${cow[pci disk.raw]}" "${cow[pci $image]}")x slower than raw, $(ratio "${cow[pci disk.qcow2]}" "${cow[pci $image]}")x slower than plain qcow2"
done

# Writes and sequential throughput: each run on a fresh copy of the image.
mbps() { python3 -c "import sys; print(f'{float(sys.argv[1]) * int(sys.argv[2]) / 1e6:.0f}')" "$1" "$size"; }
fresh() {  # image: a copy to write to, named like it (its format is its suffix)
    cp "$dir/$1" "$dir/run.${1#*.}"
    echo "run.${1#*.}"
}
writes=${BENCH_WRITES:-20000} mib=${BENCH_MIB:-512}
for workload in "bench-blk-write $writes 4096 disk.raw disk.qcow2" \
                "bench-blk-seqread $mib 1048576 disk.raw disk.qcow2 zstd.qcow2" \
                "bench-blk-seqwrite $mib 1048576 disk.raw disk.qcow2"; do
    read -r key ops size images <<<"$workload"
    append="$key=$ops"
    for image in $images; do
        c_all="" q_all="" f_all=""
        for ((r = 0; r < rounds; r++)); do
            for vmm in $( ((r % 2)) && echo "qemu fast cow" || echo "cow qemu fast"); do
                run=$(fresh "$image")
                case $vmm in
                cow) c_all+=" $(run_cowvisor pci "$run")" ;;
                qemu) q_all+=" $(run_qemu pci "$run")" ;;
                fast) f_all+=" $(run_qemu pci "$run" fast)" ;;
                esac
            done
        done
        c=$(echo $c_all | median) q=$(echo $q_all | median) f=$(echo $f_all | median)
        printf '%-19s %-11s cowvisor %7s req/s (%s MB/s)   qemu default %7s (%sx)   qemu iothread+io_uring %7s (%sx)' \
            "$key" "$image" "$c" "$(mbps "$c")" "$q" "$(ratio "$c" "$q")" "$f" "$(ratio "$c" "$f")"
        printf '   (medians of %d; cowvisor:%s; qemu:%s; fast:%s)\n' "$rounds" "$c_all" "$q_all" "$f_all"
    done
done
