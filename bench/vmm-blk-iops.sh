#!/usr/bin/env bash
# virtio-blk 4 KiB random reads inside the test guest (four in flight, from
# CPL 3), cowvisor vs QEMU 7.2 + KVM on the same raw image: virtio-mmio
# (QEMU microvm) and modern virtio-pci (QEMU pc). The guest prints
# "bench-blk: start" and "bench-blk: end"; the host times those lines.
#   bench/vmm-blk-iops.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowvisor="$build/src/tools/cowvisor/cowvisor"
guest="$build/guest/guest.elf"
reads=${BENCH_READS:-40000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c 128M /dev/urandom >"$dir/disk.raw"
cat "$dir/disk.raw" >/dev/null     # page cache warm for both

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
for t in mmio pci; do
    c=$(iops "$cowvisor" --kernel "$guest" --memory 256M --append "$append" \
        --disk "file=$dir/disk.raw,format=raw,transport=$t")
    if [[ $t == mmio ]]; then
        q=$(iops qemu-system-x86_64 -M microvm -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -global virtio-mmio.force-legacy=false \
            -drive "if=none,id=d,file=$dir/disk.raw,format=raw" -device virtio-blk-device,drive=d \
            -kernel "$guest" -append "microvm $append")
    else
        q=$(iops qemu-system-x86_64 -M pc -accel kvm -m 256M -display none -nodefaults -no-reboot \
            -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 \
            -drive "if=none,id=d,file=$dir/disk.raw,format=raw" -device virtio-blk-pci,drive=d,disable-legacy=on \
            -kernel "$guest" -append "$append")
    fi
    printf '%-5s cowvisor %8s IOPS   qemu %8s IOPS   ratio (cowvisor / qemu) %s\n' "$t" "$c" "$q" \
        "$(python3 -c "print(f'{$c / $q:.2f}')")"
done
