#!/usr/bin/env bash
# Boots the project's test guest in cowvisor: serial output, debug-exit
# status, virtio-blk/rng/console over both transports, data on the host disk
# images, and clear errors for bad command lines.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi

run() {  # run OUTFILE args...: cowvisor bounded in time; sets $status
    local out=$1; shift
    timeout 60 "$COWVISOR" "$@" >"$out" 2>"$out.err"
    status=$?
}

# 1. hello + exit code through the debug-exit port: (5 << 1) | 1 = 11.
run "$TMP/exit.out" --kernel "$GUEST" --memory 64M --append "exit=5"
check_eq "debug-exit status is (5 << 1) | 1" 11 "$status"
check "serial shows the guest's hello" grep -q "cowvisor test guest: hello" "$TMP/exit.out"
check "guest sees our command line" grep -q "command line: 'exit=5'" "$TMP/exit.out"

# SMP: every vCPU thread runs guest code (the guest starts the APs with
# INIT/SIPI through its local APIC and counts them).
for n in 1 3; do
    run "$TMP/smp$n.out" --kernel "$GUEST" --cpus $n --memory 64M --append "smp exit=0"
    check_eq "--cpus $n: status" 1 "$status"
    check "--cpus $n: the guest counts $n running CPUs" grep -Eq "CPUs up: $n([^0-9]|$)" "$TMP/smp$n.out"
done

# Reset through the i8042 reboots the guest (the CMOS keeps its boot count);
# with --no-reboot a reset ends the VM with status 0, like QEMU's -no-reboot.
run "$TMP/reset.out" --kernel "$GUEST" --cpus 4 --memory 64M --append "reset exit=3"
check_eq "reset: the rebooted guest exits with (3 << 1) | 1" 7 "$status"
check "reset: the guest booted twice" grep -q "boot number 2" "$TMP/reset.out"
run "$TMP/noreboot.out" --kernel "$GUEST" --memory 64M --append "reset exit=3" --no-reboot
check_eq "--no-reboot: reset ends the VM with status 0" 0 "$status"
check_eq "--no-reboot: no second boot" 0 "$(grep -c 'boot number 2' "$TMP/noreboot.out")"
run "$TMP/off.out" --kernel "$GUEST" --memory 64M --append "poweroff"
check_eq "power off: status 0" 0 "$status"
check "power off: the guest asked for it" grep -q "powering off" "$TMP/off.out"

# 2. Devices over both transports on two raw disks.
truncate -s 8M "$TMP/mmio.img" "$TMP/pci.img"
run "$TMP/dev.out" --kernel "$GUEST" --cpus 2 --memory 128M \
    --disk "file=$TMP/mmio.img,format=raw,transport=mmio,serial=MMIOSER" \
    --disk "file=$TMP/pci.img,format=raw,transport=pci,serial=PCISER" \
    --device virtio-rng,transport=mmio --device virtio-rng,transport=pci \
    --device virtio-console,transport=mmio --device virtio-console,transport=pci
check_eq "all guest checks passed (status 1 = debug-exit 0)" 1 "$status"
check_eq "no guest check failed" 0 "$(grep -c '^FAIL' "$TMP/dev.out")"
check_eq "guest found 6 virtio devices" 1 "$(grep -c 'found 6 virtio device' "$TMP/dev.out")"
for t in mmio pci; do
    check_eq "virtio-blk checks passed over $t" 13 "$(grep -c "^PASS: virtio-blk.*($t)" "$TMP/dev.out")"
    check "virtio-rng passed over $t" grep -q "^PASS: virtio-rng returns random bytes ($t)" "$TMP/dev.out"
    check "virtio-console output over $t reached the console" grep -q "^virtio-console ($t): hello" "$TMP/dev.out"
done
check "serial number over mmio" grep -q "virtio-blk (mmio): serial 'MMIOSER'" "$TMP/dev.out"
check "serial number over pci" grep -q "virtio-blk (pci): serial 'PCISER'" "$TMP/dev.out"

# The guest's pattern (word i = seed * 2654435761 + i) must be on the host
# image at sector 64 (disk 0, seed 0x1234) and 72 (disk 1, seed 0x1235), and
# its write-zeroes range (8 sectors after the first 8) must read as zeros.
pattern_ok() {  # image sector seed
    python3 - "$@" <<'PY'
import struct, sys
img, sector, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
with open(img, "rb") as f:
    f.seek(sector * 512)
    data = f.read(16 * 512)
want = b"".join(struct.pack("<I", (seed * 2654435761 + i) & 0xffffffff) for i in range(8 * 128))
sys.exit(0 if data[:4096] == want and data[4096:8192] == bytes(4096) else 1)
PY
}
check "mmio disk holds the guest's pattern and zeroed range" pattern_ok "$TMP/mmio.img" 64 0x1234
check "pci disk holds the guest's pattern and zeroed range" pattern_ok "$TMP/pci.img" 72 0x1235

# Hostile guest: the guest breaks one disk's ring (descriptor loop, buffer
# outside guest memory); that device enters NEEDS_RESET with one log line
# each time, the VMM and the other disk go on, a reset brings it back.
for bad in mmio pci; do
    good=$([[ $bad == mmio ]] && echo pci || echo mmio)
    run "$TMP/hostile.$bad" --kernel "$GUEST" --memory 64M --append "hostile=$bad" \
        --disk "file=$TMP/mmio.img,format=raw,transport=$bad" --disk "file=$TMP/pci.img,format=raw,transport=$good"
    check_eq "hostile ring over $bad: the guest's checks pass" 1 "$status"
    check_eq "hostile ring over $bad: 7 checks passed" 7 "$(grep -c '^PASS: hostile' "$TMP/hostile.$bad")"
    check_eq "hostile ring over $bad: one log line per violation" 2 "$(grep -c 'device needs reset' "$TMP/hostile.$bad.err")"
    check_eq "hostile ring over $bad: the log names the broken device" 2 \
        "$(grep -c "^error: virtio-blk@$bad:.*device needs reset" "$TMP/hostile.$bad.err")"
    check_eq "hostile ring over $bad: the broken device is the $bad one" 5 \
        "$(grep -c "^PASS: hostile: .*($bad)" "$TMP/hostile.$bad")"
done

# 3. A read-only disk: the guest's writes fail, the image stays untouched.
truncate -s 8M "$TMP/ro.img"
run "$TMP/ro.out" --kernel "$GUEST" --memory 64M --disk "file=$TMP/ro.img,readonly=on,transport=mmio"
check "writes to a read-only disk fail in the guest" grep -q "^FAIL: virtio-blk write pattern (mmio)" "$TMP/ro.out"
check "read-only image stays all zeros" cmp -s "$TMP/ro.img" <(head -c 8M /dev/zero)

# 4. Bad command lines fail with a message, never a crash.
run "$TMP/e1.out" --kernel "$TMP/nonexistent"
check_eq "missing kernel: status 255" 255 "$status"
check "missing kernel: message names the file" grep -q "nonexistent" "$TMP/e1.out.err"
run "$TMP/e2.out" --kernel "$GUEST" --disk "file=$TMP/mmio.img,transport=isa"
check_eq "bad transport: status 255" 255 "$status"
check "bad transport: message" grep -q "transport must be pci or mmio" "$TMP/e2.out.err"
run "$TMP/e3.out" --kernel "$GUEST" --disk "file=$TMP/mmio.img,bogus=1"
check "unknown --disk option is named" grep -q "bogus" "$TMP/e3.out.err"
run "$TMP/e4.out" --kernel /etc/hostname
check_eq "a kernel that is neither ELF nor bzImage: status 255" 255 "$status"
run "$TMP/e5.out" --kernel "$GUEST" --cpus 0
check_eq "--cpus 0 is refused" 255 "$status"

# 5. No arguments: the built-in guest on temporary disks, all checks pass.
run "$TMP/noargs.out"
check_eq "no arguments: built-in guest passes (status 1)" 1 "$status"
check_eq "no arguments: no failed check" 0 "$(grep -c '^FAIL' "$TMP/noargs.out")"

# 6. --console file:PATH takes the serial output.
run "$TMP/cons.out" --kernel "$GUEST" --memory 64M --append "exit=0" --console "file:$TMP/console.txt"
check_eq "console to file: status" 1 "$status"
check "console to file: hello in the file" grep -q "cowvisor test guest: hello" "$TMP/console.txt"
done_testing
