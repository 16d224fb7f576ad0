#!/usr/bin/env bash
# The test guest is a plain PVH ELF: QEMU boots it too (microvm with
# virtio-mmio, pc with modern virtio-pci), and its device checks pass there,
# which cross-checks the guest driver that tests our devices.
source "$TESTS_DIR/lib.sh"
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
QEMU=${QEMU_SYSTEM:-qemu-system-x86_64}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
if ! command -v "$QEMU" >/dev/null; then
    echo "1..0 # SKIP $QEMU is not installed"
    exit 0
fi
common=(-accel kvm -m 128M -display none -no-reboot -nodefaults -serial stdio
        -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$GUEST")
truncate -s 8M "$TMP/a.img" "$TMP/b.img"

timeout 60 "$QEMU" -M microvm "${common[@]}" -append "exit=7" >"$TMP/q0.out" 2>&1
check_eq "QEMU microvm: debug-exit status (7 << 1) | 1" 15 "$?"
check "QEMU microvm: hello on serial" grep -q "cowvisor test guest: hello" "$TMP/q0.out"

timeout 60 "$QEMU" -M microvm -smp 3 "${common[@]}" -append "smp exit=0" >"$TMP/smp.out" 2>&1
check "QEMU microvm: the guest starts 3 CPUs" grep -q "CPUs up: 3" "$TMP/smp.out"

timeout 60 "$QEMU" -M microvm "${common[@]}" -append microvm -global virtio-mmio.force-legacy=false \
    -drive if=none,id=d1,file="$TMP/a.img",format=raw -device virtio-blk-device,drive=d1,serial=QSER \
    -device virtio-rng-device >"$TMP/q1.out" 2>&1
check_eq "QEMU microvm + virtio-mmio: guest checks pass" 1 "$?"
check_eq "QEMU microvm: 13 virtio-blk checks passed" 13 "$(grep -c '^PASS: virtio-blk.*(mmio)' "$TMP/q1.out")"
check "QEMU microvm: serial read" grep -q "serial 'QSER'" "$TMP/q1.out"

timeout 60 "$QEMU" -M pc "${common[@]}" \
    -drive if=none,id=d2,file="$TMP/b.img",format=raw -device virtio-blk-pci,drive=d2,disable-legacy=on \
    -device virtio-rng-pci,disable-legacy=on -device virtio-serial-pci,disable-legacy=on >"$TMP/q2.out" 2>&1
check_eq "QEMU pc + virtio-pci: guest checks pass" 1 "$?"
check_eq "QEMU pc: 13 virtio-blk checks passed" 13 "$(grep -c '^PASS: virtio-blk.*(pci)' "$TMP/q2.out")"
check "QEMU pc: virtio-rng passed" grep -q "^PASS: virtio-rng" "$TMP/q2.out"
done_testing
