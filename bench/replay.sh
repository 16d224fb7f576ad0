#!/usr/bin/env bash
# Record/replay (issue 13): the log's size and the cost of recording.
#  1. The engine alone (bench/replay_log_bench, no guest, no KVM): an idle
#     and a busy exit stream recorded and replayed: bytes per exit, rates.
#     Then the VMM's whole per-exit step on a bare machine (bench/
#     replay_exit_bench: bus dispatch alone, + recording, + replaying): the
#     ns each adds to an exit, which a KVM exit (its round trip is not in it)
#     pays on top. Then the header's disk hash of a 1 GiB image (XXH3
#     streamed, log version 3, against version 2's byte-wise hash).
#  2. The test guest's "replay" mode (PIT at 100 Hz, 200 ticks: 2 guest
#     seconds of timer interrupts, RTC and PIT reads) recorded and replayed
#     by QEMU 7.2 under TCG (-icount rr=record/replay: QEMU needs TCG) and,
#     with /dev/kvm, by cowvisor on KVM: log bytes, bytes per guest second,
#     the ratio of the two logs, wall time of record and replay.
#  3. With /dev/kvm: an exit-heavy guest (200000 port writes): cowvisor
#     without recording, --record and --replay; QEMU with KVM (no recording
#     possible there) and QEMU TCG record. Ratios: cowvisor record/plain
#     (target <= 1.2), replay/record (target <= 1), QEMU TCG record/cowvisor record.
#  4. Time travel (no KVM needed): a bare machine's full snapshot, a diff after
#     1% of the pages changed, and a replay's travel to it (restore + log
#     scan), with RAM written all over and untouched; beside it QEMU 7.2's
#     savevm and -loadvm of an untouched guest of the same size (its record/
#     replay snapshots are savevm snapshots), each minus QEMU's start-up.
#   bench/replay.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowvisor="$build/src/tools/cowvisor/cowvisor"
guest="$build/guest/guest.elf"
QEMU=${QEMU_SYSTEM:-qemu-system-x86_64}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

echo "-- 1. the log engine alone (1000000 exits per profile)"
"$build/bench/replay_log_bench" 1000000 "$dir"
"$build/bench/replay_exit_bench" 1000000 "$dir"
# The log's header hashes every disk image: a 1 GiB one, as versions 3 and 2 do.
head -c 1G /dev/urandom >"$dir/disk.img"
"$build/bench/replay_hash_bench" "$dir/disk.img"
rm -f "$dir/disk.img"

wall() {  # command...: seconds, median of 5 runs (status ignored)
    python3 - "$@" <<'PY'
import statistics, subprocess, sys, time
t = []
for _ in range(5):
    t0 = time.perf_counter()
    subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t.append(time.perf_counter() - t0)
print("%.3f" % statistics.median(t))
PY
}
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b else 'n/a')" "$1" "$2"; }

travel() {  # section 4, before the KVM-only parts
    echo "-- 4. time travel: snapshots and the travel to one (512 MiB of RAM)"
    "$build/bench/replay_travel_bench" 512 "$dir"
    "$build/bench/replay_travel_bench" 512 "$dir" untouched
    "$build/bench/replay_disk_travel_bench" 256 "$dir"
    if command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; then
        # QEMU's replay snapshots revert the image in place (loadvm), losing what came after.
        qemu-img create -q -f qcow2 "$dir/qd.qcow2" 256M
        qemu-io -c "write -P 1 0 256M" "$dir/qd.qcow2" >/dev/null
        qemu-img snapshot -c exit-1 "$dir/qd.qcow2"
        echo "qemu-img snapshot -a of a 256 MiB overlay (in place): $(wall qemu-img snapshot -a exit-1 "$dir/qd.qcow2")s"
        rm -f "$dir/qd.qcow2"
    fi
    if command -v "$QEMU" >/dev/null && command -v qemu-img >/dev/null; then
        qemu-img create -q -f qcow2 "$dir/vm.qcow2" 64M
        local q=("$QEMU" -M pc -m 512 -nodefaults -display none -S -drive "file=$dir/vm.qcow2,if=virtio")
        local base save load
        base=$(wall bash -c "echo quit | ${q[*]} -monitor stdio")
        save=$(wall bash -c "printf 'savevm tt\\nquit\\n' | ${q[*]} -monitor stdio")
        load=$(wall bash -c "echo quit | ${q[*]} -loadvm tt -monitor stdio")
        echo "qemu untouched RAM 512 MiB: savevm $(python3 -c "print('%.3f' % ($save - $base))")s" \
             " -loadvm $(python3 -c "print('%.3f' % ($load - $base))")s (start-up ${base}s subtracted)"
    else
        echo "qemu: $QEMU or qemu-img not installed"
    fi
}
travel

echo "-- 2. the test guest's replay mode, 2 guest seconds"
qemu_pc=(-M pc -nodefaults -display none -device isa-debug-exit,iobase=0xf4,iosize=4 -m 64 -no-reboot
         -kernel "$guest" -append "replay ticks=200")
qemu_bytes=
if command -v "$QEMU" >/dev/null; then
    rec=$(wall "$QEMU" "${qemu_pc[@]}" -serial "file:$dir/q.out" -icount "shift=auto,rr=record,rrfile=$dir/q.rr")
    rep=$(wall "$QEMU" "${qemu_pc[@]}" -serial "file:$dir/q2.out" -icount "shift=auto,rr=replay,rrfile=$dir/q.rr")
    qemu_bytes=$(stat -c %s "$dir/q.rr")
    cmp -s "$dir/q.out" "$dir/q2.out" && same=same || same=DIFFERENT
    echo "qemu TCG rr:   log $qemu_bytes bytes ($((qemu_bytes / 2)) bytes/guest s)  record ${rec}s  replay ${rep}s  output $same"
else
    echo "qemu: $QEMU not installed"
fi
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "cowvisor: skipped, /dev/kvm is not available (record/replay runs on KVM)"
    echo "-- 3. skipped: /dev/kvm is not available"
    exit 0
fi
args=(--kernel "$guest" --memory 64M --append "replay ticks=200")
rec=$(wall "$cowvisor" "${args[@]}" --record "$dir/c.log")
rep=$(wall "$cowvisor" "${args[@]}" --replay "$dir/c.log")
bytes=$(stat -c %s "$dir/c.log")
events=$("$cowvisor" "${args[@]}" --replay "$dir/c.log" 2>&1 >/dev/null | sed -n 's/.*replayed \([0-9]*\) events.*/\1/p')
echo "cowvisor KVM:  log $bytes bytes ($((bytes / 2)) bytes/guest s, $events events)  record ${rec}s  replay ${rep}s"
[[ -n $qemu_bytes ]] && echo "log size cowvisor/qemu: $(ratio "$bytes" "$qemu_bytes")"

echo "-- 3. an exit-heavy guest: 200000 port writes"
source "$(dirname "$0")/pvh_elf.bash"
pvh_elf "$dir/exits.elf" <<'ASM'
    movl $200000, %ecx
1:  outb %al, $0x80
    decl %ecx
    jnz 1b
    movb $0, %al
    outb %al, $0xf4
2:  hlt
    jmp 2b
ASM
ex=(--kernel "$dir/exits.elf" --memory 64M)
plain=$(wall "$cowvisor" "${ex[@]}")
crec=$(wall "$cowvisor" "${ex[@]}" --record "$dir/e.log")
crep=$(wall "$cowvisor" "${ex[@]}" --replay "$dir/e.log")
qkvm=$(wall "$QEMU" -M microvm -accel kvm -m 64M -display none -nodefaults -no-reboot \
       -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$dir/exits.elf")
qrec=$(wall "$QEMU" -M pc -nodefaults -display none -m 64 -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 \
       -kernel "$dir/exits.elf" -icount "shift=auto,rr=record,rrfile=$dir/e.rr")
echo "cowvisor: plain ${plain}s  record ${crec}s  replay ${crep}s  log $(stat -c %s "$dir/e.log") bytes"
echo "qemu: KVM ${qkvm}s (no recording on KVM)  TCG record ${qrec}s"
echo "cowvisor record/plain: $(ratio "$crec" "$plain") (target <= 1.2)"
echo "cowvisor replay/record: $(ratio "$crep" "$crec") (target <= 1)"
echo "qemu TCG record / cowvisor KVM record: $(ratio "$qrec" "$crec")"
echo "cowvisor record / qemu KVM plain: $(ratio "$crec" "$qkvm")"
