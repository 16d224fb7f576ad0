#!/usr/bin/env bash
# Start-up: exec of the VMM to the guest's first instructions. The guest is
# a PVH ELF whose third instruction writes a byte to COM1; the time from
# spawning the VMM to reading that byte from its stdout bounds exec to first
# instruction from above. Exec to exit is shown too: on this machine tearing
# down a KVM VM with an irqchip and PIT alone takes 10-30 ms. Median of 20
# runs, cowvisor vs QEMU 7.2 microvm + KVM on the same ELF (target: <= 10 ms
# for cowvisor).
#   bench/vmm-startup.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowvisor="$build/src/tools/cowvisor/cowvisor"
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/pvh_elf.bash"
pvh_elf "$dir/tiny.elf" <<'ASM'
    movb $'!', %al
    movw $0x3f8, %dx
    outb %al, %dx
    movb $0, %al
    outb %al, $0xf4
1:  hlt
    jmp 1b
ASM

median_ms() {  # command...: "first-byte-ms exit-ms" medians of 20 runs
    python3 - "$@" <<'PY'
import statistics, subprocess, sys, time
first, done = [], []
for _ in range(20):
    t = time.perf_counter()
    p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    byte = p.stdout.read(1)
    first.append((time.perf_counter() - t) * 1000)
    p.stdout.read()
    rc = p.wait()
    done.append((time.perf_counter() - t) * 1000)
    if byte != b"!" or rc != 1:
        sys.exit(f"unexpected output {byte!r} / exit status {rc} from {sys.argv[1]}")
print(f"{statistics.median(first):.1f} {statistics.median(done):.1f}")
PY
}
read -r c cx < <(median_ms "$cowvisor" --kernel "$dir/tiny.elf")
read -r q qx < <(median_ms qemu-system-x86_64 -M microvm -accel kvm -m 512M -display none -nodefaults \
    -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$dir/tiny.elf")
printf '%-10s exec->first guest output %7s ms   exec->exit %7s ms   (512 MiB)\n' cowvisor "$c" "$cx" qemu "$q" "$qx"
python3 -c "print(f'speed-up to first instruction (qemu / cowvisor): {$q / $c:.1f}x; target <= 10 ms: ' + ('met' if $c <= 10 else 'NOT met'))"
