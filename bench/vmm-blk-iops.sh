#!/usr/bin/env bash
# virtio-blk 4 KiB random reads inside the test guest (four in flight, from
# CPL 3), cowvisor vs QEMU 7.2 + KVM on the same image: raw over virtio-mmio
# (QEMU microvm) and modern virtio-pci (QEMU pc), and the same data as qcow2
# over virtio-pci. The guest prints
# "bench-blk: start" and "bench-blk: end"; the host times those lines.
# This host is shared and noisy, so each pair runs BENCH_ROUNDS times
# (default 5), alternating which VMM goes first, and the medians are compared.
#   bench/vmm-blk-iops.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowvisor="$build/src/tools/cowvisor/cowvisor"
guest="$build/guest/guest.elf"
reads=${BENCH_READS:-20000}
rounds=${BENCH_ROUNDS:-5}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c 128M /dev/urandom >"$dir/disk.raw"
qemu-img convert -f raw -O qcow2 "$dir/disk.raw" "$dir/disk.qcow2"
cat "$dir/disk.raw" "$dir/disk.qcow2" >/dev/null     # page cache warm for both

iops() {  # command...: reads per second between the guest's markers
    python3 - "$reads" "$@" <<'PY'
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
append="bench-blk=$reads"
run_cowvisor() {  # transport format
    iops "$cowvisor" --kernel "$guest" --memory 256M --append "$append" \
        --disk "file=$dir/disk.$2,format=$2,transport=$1"
}
run_qemu() {  # transport format
    if [[ $1 == mmio ]]; then
        iops qemu-system-x86_64 -M microvm -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -global virtio-mmio.force-legacy=false \
            -drive "if=none,id=d,file=$dir/disk.$2,format=$2" -device virtio-blk-device,drive=d \
            -kernel "$guest" -append "microvm $append"
    else
        iops qemu-system-x86_64 -M pc -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 \
            -drive "if=none,id=d,file=$dir/disk.$2,format=$2" -device virtio-blk-pci,drive=d,disable-legacy=on \
            -kernel "$guest" -append "$append"
    fi
}
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for config in "mmio raw" "pci raw" "pci qcow2"; do
    c_all="" q_all=""
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2)); then
            q_all+=" $(run_qemu $config)"; c_all+=" $(run_cowvisor $config)"
        else
            c_all+=" $(run_cowvisor $config)"; q_all+=" $(run_qemu $config)"
        fi
    done
    c=$(echo $c_all | median) q=$(echo $q_all | median)
    printf '%-9s cowvisor %8s IOPS   qemu %8s IOPS   ratio (cowvisor / qemu) %s   (medians of %d; cowvisor:%s; qemu:%s)\n' \
        "$config" "$c" "$q" "$(python3 -c "print(f'{$c / $q:.2f}')")" "$rounds" "$c_all" "$q_all"
done
